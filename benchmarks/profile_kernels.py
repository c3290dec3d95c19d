"""A few calls of the decode kernels, for Nsight Compute to look at (not a benchmark).

    ncu --clock-control none --section SpeedOfLight --section WarpStateStats \\
        --kernel-name regex:gemv python benchmarks/profile_kernels.py --what gemv

Each call runs on a fresh weight set (so the profiled call reads HBM, not L2).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_linear_2bit import weight_sets  # noqa: E402  (the benchmark's weights: group-128 scales)

import quipkern  # noqa: E402
from quipkern.formats import base3_row_bytes, random_signs  # noqa: E402


def gemv(N, K, M, calls, dtype=torch.bfloat16):
    x = torch.randn(M, K, device="cuda", dtype=dtype)
    out = torch.empty(M, N, device="cuda", dtype=dtype)
    for packed, scales in weight_sets(N, K, calls):
        torch.ops.quipkern._linear_2bit_gemv_cuda(x, packed, scales, None, None, out)
    torch.cuda.synchronize()


def base3(N, K, M, calls, dtype=torch.bfloat16):
    """The CUDA base-3 ternary GEMV (bytes < 243: valid base-3 digits)."""
    x = torch.randn(M, K, device="cuda", dtype=dtype)
    out = torch.empty(M, N, device="cuda", dtype=dtype)
    scale = torch.rand(N, device="cuda")
    for _ in range(calls):
        packed = torch.randint(0, 243, (N, base3_row_bytes(K)), dtype=torch.uint8, device="cuda")
        torch.ops.quipkern._linear_ternary_base3_gemv_cuda(x, packed, scale, None, out, K)
    torch.cuda.synchronize()


def rht(n, M, calls, dtype=torch.bfloat16):
    spec = quipkern.width_plan(n).spec
    q = spec.q_matrix().cuda() if spec.m > 1 else None
    x = torch.randn(M, n, device="cuda", dtype=dtype)
    s = random_signs(n, seed=1).cuda()
    for _ in range(calls):
        quipkern.rht(x, q, s, None)
    torch.cuda.synchronize()


def hadamard(N, K, calls, dtype=torch.bfloat16):
    """dequantize_2bit with hadamard_in: the rht's main kernel reading 2-bit rows."""
    s = random_signs(K, seed=1).cuda()
    for packed, scales in weight_sets(N, K, calls):
        quipkern.dequantize_2bit(packed, scales, None, dtype, None, None, True, s)
    torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", default="gemv,rht")  # gemv, base3, rht, hadamard
    ap.add_argument("--shapes", default="8192x8192")
    ap.add_argument("--widths", default="11008,28672")
    ap.add_argument("--m", type=int, default=1)
    ap.add_argument("--calls", type=int, default=3)
    a = ap.parse_args()
    for what in a.what.split(","):
        if what == "gemv":
            for s in a.shapes.split(","):
                N, K = map(int, s.split("x"))
                gemv(N, K, a.m, a.calls)
        elif what == "base3":
            for s in a.shapes.split(","):
                N, K = map(int, s.split("x"))
                base3(N, K, a.m, a.calls)
        elif what == "hadamard":
            for s in a.shapes.split(","):
                N, K = map(int, s.split("x"))
                hadamard(N, K, a.calls)
        elif what == "rht":
            for n in a.widths.split(","):
                rht(int(n), a.m, a.calls)


if __name__ == "__main__":
    main()
