"""The whole prefill 2-bit layer under different fold rules, timed in alternation
(A B C A B C ...) by the suite's rig, so that drift and the first-timed bias fall on every
rule alike: for deciding a dispatch rule.

    python benchmarks/probe/fold_ab.py --shapes 8192x28672 --m 4096 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench  # noqa: E402
import rig  # noqa: E402

# rule name -> (FOLD_SIDES, FOLD_MIN_M, FOLD_HADAMARD_N_PER_ROW)
RULES = {
    "no fold": ((), 1 << 30, 0),
    "default": None,
    "q out": (("out",), 1, 0),
    "q in": (("in",), 1, 0),
    "hadamard_in": (("hadamard_in",), 1 << 30, 1 << 30),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default="8192x28672")
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--rules", default="no fold,default,q in")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    op = importlib.import_module("quipkern.ops.linear_2bit")
    default = (op.FOLD_SIDES, op.FOLD_MIN_M, op.FOLD_HADAMARD_N_PER_ROW)
    rules = a.rules.split(",")
    for shape in a.shapes.split(","):
        N, K = map(int, shape.split("x"))
        sets, _, fn = bench._weights("2bit", N, K, rig.rotations(N * K // 4))
        x = torch.randn(a.m, K, device="cuda", dtype=torch.bfloat16)
        w = [(torch.randn(N, K, device="cuda", dtype=torch.bfloat16),) for _ in range(rig.rotations(2 * N * K))]
        times = {r: [] for r in rules + ["bf16 F.linear"]}
        rig.time_graph(lambda p, s: fn(x, p, s), sets)  # warm-up, discarded
        for _ in range(a.rounds):
            for r in rules:
                op.FOLD_SIDES, op.FOLD_MIN_M, op.FOLD_HADAMARD_N_PER_ROW = RULES[r] or default
                times[r].append(rig.time_graph(lambda p, s: fn(x, p, s), sets))
            times["bf16 F.linear"].append(rig.time_graph(lambda wt: torch.nn.functional.linear(x, wt), w))
        op.FOLD_SIDES, op.FOLD_MIN_M, op.FOLD_HADAMARD_N_PER_ROW = default
        bf = statistics.median(times["bf16 F.linear"])
        print(f"== {N}x{K} M={a.m}, {a.rounds} rounds, µs (median; each round's): " + "; ".join(
            f"{r} {statistics.median(t) * 1e6:.1f} ({' '.join(f'{v * 1e6:.0f}' for v in t)}, {bf / statistics.median(t):.3f}x)"
            for r, t in times.items()), flush=True)
        del w


if __name__ == "__main__":
    main()
