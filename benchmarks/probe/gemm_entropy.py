"""Does cuBLAS's bf16 GEMM time depend on the weight's values?  F.linear(x, W) with the same
x and shapes for W = random bf16, the plain dequantized 2-bit weight (four levels a group),
and the folded weights the prefill path writes (hadamard_in: full-mantissa values), timed in
alternating rounds by the suite's rig.  (Session 17: folds that save transform time did not
always save layer time; a GPU near its power limit runs slower on busier bit patterns.)

    python benchmarks/probe/gemm_entropy.py --shapes 8192x8192 --m 4096 --rounds 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench  # noqa: E402
import rig  # noqa: E402


def main(argv=None):
    import quipkern
    from quipkern.formats import random_signs

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default="8192x8192")
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args(argv)
    for shape in a.shapes.split(","):
        N, K = map(int, shape.split("x"))
        n = rig.rotations(2 * N * K)
        sets, _, _ = bench._weights("2bit", N, K, n)
        s_in = random_signs(K, seed=3).cuda()
        x = torch.randn(a.m, K, device="cuda", dtype=torch.bfloat16)
        weights = {
            "random bf16": [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) for _ in range(n)],
            "dequantized 2-bit": [quipkern.dequantize_2bit(p, s, None, torch.bfloat16) for p, s in sets[:n]],
            "hadamard_in folded": [quipkern.dequantize_2bit(p, s, None, torch.bfloat16, None, None, True, s_in)
                                   for p, s in sets[:n]],
            "zeros": [torch.zeros(N, K, device="cuda", dtype=torch.bfloat16) for _ in range(n)],
        }
        times = {k: [] for k in weights}
        for _ in range(a.rounds):
            for k, ws in weights.items():
                times[k].append(rig.time_graph(lambda w: torch.nn.functional.linear(x, w), [(w,) for w in ws]))
        base = statistics.median(times["random bf16"])
        print(f"== F.linear {N}x{K} M={a.m}, µs (median of {a.rounds} alternating rounds; time / random's): " + "; ".join(
            f"{k} {statistics.median(t) * 1e6:.1f} ({statistics.median(t) / base:.3f})" for k, t in times.items()),
            flush=True)
        del weights


if __name__ == "__main__":
    main()
