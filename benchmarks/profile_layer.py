"""Where one quipkern layer call spends its time: the kernels (and ops) of a few calls
under torch.profiler, sorted by device time — for a layer that is slower than its
kernels suggest (e.g. ternary-a8 at M = 4096: quantization, expansion, int8 GEMM and
epilogue are separate launches).  Weights and the call are those of bench.py.

    python benchmarks/profile_layer.py --op ternary-a8 --shape 8192x8192 --m 4096
    python benchmarks/profile_layer.py --op 2bit --shape 4096x11008 --m 1 --calls 20

Without a GPU it profiles the CPU path (keep the shape small).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def profile(op: str, N: int, K: int, M: int, calls: int, dtype, device: str, rows: int = 25) -> str:
    sets, _, fn = bench._weights(op, N, K, 1, device=device)
    packed, scale = sets[0]
    x = torch.randn(M, K, device=device, dtype=dtype)
    for _ in range(3):  # compile / autotune outside the profile
        fn(x, packed, scale)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(calls):
            fn(x, packed, scale)
        if device == "cuda":
            torch.cuda.synchronize()
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", default="ternary-a8", choices=[o for o in bench.OPS if o != "rht"])
    ap.add_argument("--shape", default="8192x8192", help="NxK")
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    N, K = map(int, a.shape.split("x"))
    table = profile(a.op, N, K, a.m, a.calls, getattr(torch, a.dtype), a.device)
    print(f"{a.op} M={a.m} {N}x{K} {a.dtype} on {a.device}, {a.calls} calls")
    print(table)
    return table


if __name__ == "__main__":
    main()
