"""The CUDA base-3 GEMV alone (torch.ops.quipkern._linear_ternary_base3_gemv_cuda) at
every M the kernel takes, against bf16 F.linear in the same run: the rig's CUDA-graph
replay over weights rotated past L2.  For A/B runs of the kernel (the layer's dispatch
sends M = 9..16 to Triton where N > 4096, so bench.py does not time the CUDA kernel there).
    python benchmarks/probe/base3_gemv.py [--m 1,8,16] [--shapes 8192x8192,...]"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rig  # noqa: E402

from quipkern.formats import pack_ternary_base3  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", default="1,8,16")
    ap.add_argument("--shapes", default="8192x8192,28672x8192,4096x4096,14336x4096")
    args = ap.parse_args()
    for shape in args.shapes.split(","):
        N, K = map(int, shape.split("x"))
        packed0 = pack_ternary_base3(torch.randint(-1, 2, (N, K), device="cuda"))
        sets = rig.rotations(packed0.numel())
        weights = [packed0] + [torch.randint(0, 243, packed0.shape, dtype=torch.uint8, device="cuda")
                               for _ in range(sets - 1)]
        scale = torch.rand(N, device="cuda")
        for M in map(int, args.m.split(",")):
            x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
            out = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
            t = rig.time_graph(lambda w: torch.ops.quipkern._linear_ternary_base3_gemv_cuda(x, w, scale, None, out, K),
                               [(w,) for w in weights])
            b = rig.bf16_linear_time(M, N, K)
            print(f"base3-cuda M={M:<3d} {N}x{K}: {t * 1e6:8.2f} us   bf16 {b * 1e6:8.2f} us   {b / t:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
