"""The parts of a prefill (M >= 17) 2-bit layer call, each timed alone by the suite's rig
(graph replay, weights rotated over >= 3x L2), beside the whole call and bf16 F.linear:
for a layer that is slower than its parts suggest.  (H100, session 15: the whole is the sum of
its parts, within 1-4 %; benchmarks/NOTES.md.)

    python benchmarks/probe/prefill_parts.py --shapes 8192x8192,28672x8192 --m 4096
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench  # noqa: E402
import rig  # noqa: E402


def parts(N: int, K: int, M: int, dtype=torch.bfloat16) -> dict:
    import quipkern
    from quipkern.formats import random_signs

    sets, nbytes, fn = bench._weights("2bit", N, K, rig.rotations(N * K // 4))
    pk, pn = quipkern.width_plan(K, bench.GROUP, True), quipkern.width_plan(N)
    x = torch.randn(M, K, device="cuda", dtype=dtype)
    out = {"whole": rig.time_graph(lambda p, s: fn(x, p, s), sets)}
    out["dequantize"] = rig.time_graph(lambda p, s: quipkern.dequantize_2bit(p, s, None, dtype), sets)
    w = [(torch.randn(N, K, device="cuda", dtype=dtype),) for _ in range(rig.rotations(2 * N * K))]
    out["bf16 F.linear"] = rig.time_graph(lambda wt: torch.nn.functional.linear(x, wt), w)
    y = torch.empty(M, N, device="cuda", dtype=dtype)
    out["mm out="] = rig.time_graph(lambda wt: torch.mm(x, wt.t(), out=y), w)
    del w
    for side, plan, width in (("T_in", pk, K), ("T_out", pn, N)):
        q = plan.spec.q_matrix()
        q = None if q is None else q.cuda()
        s = random_signs(plan.padded, seed=1).cuda()
        xs = [(torch.randn(M, width, device="cuda", dtype=dtype),) for _ in range(rig.rotations(2 * M * width, 1))]
        out[f"{side} rht {width}"] = rig.time_graph(
            lambda a: quipkern.rht(a, q, s, None, 1.0, side == "T_out"), xs)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default="8192x8192")
    ap.add_argument("--m", type=int, default=4096)
    a = ap.parse_args(argv)
    for shape in a.shapes.split(","):
        N, K = map(int, shape.split("x"))
        res = parts(N, K, a.m)
        summed = sum(v for k, v in res.items() if k == "dequantize" or " rht " in k)
        print(f"== {N}x{K} M={a.m}: " + ", ".join(f"{k} {v * 1e6:.1f}" for k, v in res.items())
              + f"; dequantize + mm + transforms {(summed + res['mm out=']) * 1e6:.1f} µs", flush=True)


if __name__ == "__main__":
    main()
