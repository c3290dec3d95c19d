"""A few small calls of every CUDA and Triton kernel, run under compute-sanitizer by
benchmarks/device_run.sh: out-of-bounds accesses and races show up there.
SANITIZE_IMPLS="cuda" limits it to some backends (Triton's compiles are slow under memcheck)."""

import os

import torch

import quipkern
from quipkern.formats import random_signs
from quipkern.ops import backend

IMPLS = os.environ.get("SANITIZE_IMPLS", "cuda triton").split()

for impl in IMPLS:
    if impl not in backend.available("rht"):
        continue
    fn = backend.implementation("rht", impl)
    # 28672 · 140 rows: blocks that cover the GPU, the many-rows kernel (its Q stage with two
    # row tiles an item and the Hadamard-Q vote); 30720 (m = 60): four row tiles
    for n, rows in ((12, 7), (384, 5), (11008, 2), (32768, 1), (4096, 3), (6, 9), (28672, 140), (30720, 3)):
        spec = quipkern.transform_spec(n)
        q = spec.q_matrix()
        q = q.cuda() if q is not None else None
        for dtype in (torch.bfloat16, torch.float32):
            x = torch.randn(rows, n, device="cuda").to(dtype)
            fn(x, q, random_signs(n, seed=1).cuda(), random_signs(n, seed=2).cuda(), 1.0, True, n, n)
            fn(x, q, None, None, 1.0, False, n, n, out=x)  # in place
    # many rows: several waves of blocks, a partial last row tile, in place, a padded
    # width with a short output
    for n, rows in ((8192, 301), (384, 3001), (1536, 1001)):
        q = quipkern.transform_spec(n).q_matrix()
        q = q.cuda() if q is not None else None
        x = torch.randn(rows, n, device="cuda").to(torch.bfloat16)
        fn(x, q, random_signs(n, seed=1).cuda(), random_signs(n, seed=2).cuda(), 1.0, False, n, n)
        fn(x[:, : n - 40].contiguous(), q, None, None, 1.0, True, n, n - 24)
        fn(x, q, None, None, 1.0, False, n, n, out=x)
    # padded widths: reads stop at n, writes at n_out (docs/FORMATS.md)
    for n, rows in ((4544, 3), (777, 5), (2730, 2), (3, 4), (1000, 1)):
        plan = quipkern.width_plan(n)
        P, q = plan.padded, plan.spec.q_matrix()
        q = q.cuda() if q is not None else None
        for dtype in (torch.bfloat16, torch.float32):
            x = torch.randn(rows, n, device="cuda").to(dtype)
            y = fn(x, q, random_signs(P, seed=1).cuda(), None, 1.0, False, P, P)
            fn(y, q, None, random_signs(P, seed=2).cuda(), 1.0, True, P, n)
for impl in IMPLS:
    if impl not in backend.available("linear_2bit"):
        continue
    fn = backend.implementation("linear_2bit", impl)
    # N >= 8192 takes the GEMV's two-row-tile variant; M * K * 2 <= 32 KB its shared-memory x;
    # one scale a row at N = 13001-16001: persistent blocks of several row tiles
    for N, K, M, g, asym in ((40, 192, 1, 64, False), (300, 384, 5, 128, True), (1000, 1024, 16, 1024, False),
                             (33, 256, 3, 256, True), (8200, 1024, 1, 128, False), (8200, 1024, 3, 64, True),
                             (8200, 1024, 9, 128, False), (16001, 512, 1, 512, True), (13001, 1024, 1, 1024, False)):
        packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, device="cuda")
        scales = torch.rand(N, K // g, device="cuda").half()
        zeros = torch.rand(N, K // g, device="cuda").half() if asym else None
        x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
        bias = torch.randn(N, device="cuda", dtype=torch.bfloat16)
        fn(x, packed, scales, zeros, bias, None, None, None, None, False, False, K, N)
        if impl == "cuda" and M <= 8:  # the float-x kernel where the fixed-point one is the default
            out = torch.empty(M, N, device="cuda", dtype=x.dtype)
            torch.ops.quipkern._linear_2bit_gemv_cuda(x, packed, scales, zeros, bias, out, False, False)
    # both transforms at power-of-two widths (the GEMV then follows its T_in with a PDL launch)
    for N, K, M in ((512, 4096, 2), (200, 256, 7), (96, 8192, 1)):
        packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, device="cuda")
        scales = torch.rand(N, K // 128, device="cuda").half()
        qo = quipkern.transform_spec(N).q_matrix()
        x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
        fn(x, packed, scales, None, None, None, random_signs(K, seed=5).cuda(), None if qo is None else qo.cuda(),
           random_signs(N, seed=6).cuda(), True, True, K, N)
    # a padded layer: 1000 x 777 stored as 1008 x 832
    N0, K0, N, K = 1000, 777, 1008, 832
    qi, qo = quipkern.transform_spec(K).q_matrix().cuda(), quipkern.transform_spec(N).q_matrix().cuda()
    packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, device="cuda")
    scales = torch.rand(N, K // 64, device="cuda").half()
    for M in (1, 7):
        x = torch.randn(M, K0, device="cuda", dtype=torch.bfloat16)
        fn(x, packed, scales, None, None, qi, random_signs(K, seed=3).cuda(), qo, random_signs(N, seed=4).cuda(),
           True, True, K0, N0)
for impl in IMPLS:
    if impl not in backend.available("dequantize_2bit"):
        continue
    fn = backend.implementation("dequantize_2bit", impl)
    # partial strips of rows and a row length that is not a multiple of 64 words
    for N, K, g, asym in ((37, 192, 64, True), (130, 1024, 128, False), (5, 384, 384, True)):
        packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, device="cuda")
        scales = torch.rand(N, K // g, device="cuda").half()
        zeros = torch.rand(N, K // g, device="cuda").half() if asym else None
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            fn(packed, scales, zeros, dtype)
    # folding a transform's Q (m = 3, 12, 28 pad to 8, 16, 32 chunks): partial tiles and a
    # last 64-column run of a chunk (P = 192, 320), blocks that walk several tiles
    for N, K, g, asym, mo, mi in ((96, 1024, 64, False, 3, None), (37, 3840, 128, True, None, 12),
                                  (2, 320 * 28, 64, False, None, 28), (3 * 4100, 1024, 128, True, 3, None),
                                  (84, 192, 64, True, 28, None)):
        packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, device="cuda")
        scales = torch.rand(N, K // g, device="cuda").half()
        zeros = torch.rand(N, K // g, device="cuda").half() if asym else None
        rnd = lambda m: None if m is None else torch.linalg.qr(torch.randn(m, m, device="cuda"))[0].contiguous()  # noqa: E731
        q_out, q_in = rnd(mo), rnd(mi)
        for dtype in (torch.bfloat16, torch.float16):
            if backend.why_not("dequantize_2bit", impl, packed, scales, zeros, dtype, q_out, q_in) is None:
                fn(packed, scales, zeros, dtype, q_out, q_in)
    # folding all of T_in (hadamard_in): one to 32 rows a block, a partial last block, per-row scales
    for N, K, g, asym in ((37, 256, 64, True), (5, 32768, 128, False), (33, 2048, 2048, True), (1000, 8192, 128, False)):
        packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, device="cuda")
        scales = torch.rand(N, K // g, device="cuda").half()
        zeros = torch.rand(N, K // g, device="cuda").half() if asym else None
        signs = torch.randint(0, 256, (K // 8,), dtype=torch.uint8, device="cuda")
        for dtype in (torch.bfloat16, torch.float16):
            if backend.why_not("dequantize_2bit", impl, packed, scales, zeros, dtype, None, None, True, signs) is None:
                fn(packed, scales, zeros, dtype, None, None, True, signs)
if "cuda" in IMPLS and "cuda" in backend.available("linear_ternary"):
    from quipkern.formats import pack_ternary_base3

    fn = backend.implementation("linear_ternary", "cuda")
    # base-3 rows of partial chunks and blocks, partial row blocks, both NT variants; M = 1
    # with x in the ring (a partial last 8-column piece at K = 778) and, 4-byte aligned, not
    for N, K, M, off in ((37, 100, 1, 0), (16, 2570, 9, 0), (200, 400, 16, 0), (8, 80, 3, 0), (40, 778, 1, 0),
                         (24, 8200, 1, 0), (24, 778, 1, 2)):
        packed = pack_ternary_base3(torch.randint(-1, 2, (N, K))).cuda()
        scale = torch.rand(N, device="cuda")
        x = torch.randn(M, K + off, device="cuda", dtype=torch.bfloat16)[:, off:]
        fn(x, packed, scale, torch.randn(N, device="cuda", dtype=torch.bfloat16), None, None, None, None, False,
           False, K, N, K)
if "cuda" in IMPLS and "cuda" in backend.available("matmul_ternary_int8"):
    from quipkern.formats import pack_ternary_2bit

    fn = backend.implementation("matmul_ternary_int8", "cuda")
    # the W1.58A8 decode GEMV: one and two row tiles, one and two n8 tiles of q (M > 8),
    # partial chunks, a strided q, long rows (K = 11008 at M = 3 and 11), with and without
    # the layer's epilogue
    for N, K, M in ((37, 64, 1), (8200, 1024, 3), (300, 4096, 8), (20, 320, 5), (8200, 11008, 3), (77, 4160, 8),
                    (8200, 4096, 16), (77, 11008, 11), (33, 192, 9)):
        packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, device="cuda")
        q = torch.randint(-127, 128, (M, K + 64), dtype=torch.int8, device="cuda")[:, :K]
        fn(q, packed)
        out = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)  # with the layer's epilogue
        torch.ops.quipkern._ternary_int8_gemv_cuda(q, packed, out, torch.rand(M, device="cuda"), torch.rand(N, device="cuda"),
                                                   torch.randn(N, device="cuda").to(out.dtype))
    # the one-kernel A8 step (kA8): both tile variants, a strided x, per-row and per-tensor
    # scales, the ternary layer's fp32 row scales on the 2-bit GEMV
    for N, K, M, per_row in ((37, 64, 1, True), (8200, 1024, 3, False), (300, 2048, 8, True), (20, 320, 5, False),
                             (20011, 512, 2, True)):  # the last: persistent blocks
        packed = pack_ternary_2bit(torch.randint(-1, 2, (N, K))).cuda()
        x = torch.randn(M, K + 64, device="cuda", dtype=torch.bfloat16)[:, :K]
        scale = torch.rand(N if per_row else 1, device="cuda")
        out = torch.empty(M, N, device="cuda", dtype=x.dtype)
        torch.ops.quipkern._ternary_a8_gemv_cuda(x, packed, scale, torch.randn(N, device="cuda").to(x.dtype), out,
                                                 127, False)
        quipkern.linear_ternary(x, packed, scale, None, in_features=K, out_features=N)
torch.cuda.synchronize()
print("sanitize: all kernels ran")
