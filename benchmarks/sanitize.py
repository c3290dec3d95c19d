"""A few small calls of every CUDA and Triton kernel, run under compute-sanitizer by
benchmarks/device_run.sh: out-of-bounds accesses and races show up there."""

import torch

import quipkern
from quipkern.formats import random_signs
from quipkern.ops import backend

for impl in ("cuda", "triton"):
    if impl not in backend.available("rht"):
        continue
    fn = backend.implementation("rht", impl)
    for n, rows in ((12, 7), (384, 5), (11008, 2), (32768, 1), (4096, 3), (6, 9)):
        spec = quipkern.transform_spec(n)
        q = spec.q_matrix()
        q = q.cuda() if q is not None else None
        for dtype in (torch.bfloat16, torch.float32):
            x = torch.randn(rows, n, device="cuda").to(dtype)
            fn(x, q, random_signs(n, seed=1).cuda(), random_signs(n, seed=2).cuda(), 1.0, True)
            fn(x, q, None, None, 1.0, False, out=x)  # in place
torch.cuda.synchronize()
print("sanitize: all kernels ran")
