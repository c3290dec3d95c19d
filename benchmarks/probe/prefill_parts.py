"""The parts of a prefill (M >= 17) 2-bit layer call, each timed alone by the suite's rig
(graph replay, weights rotated over >= 3x L2), beside the whole call and bf16 F.linear:
for a layer that is slower than its parts suggest.

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


def parts(N: int, K: int, M: int, dtype=torch.bfloat16, profile: bool = False, signs_cost: bool = False) -> dict:
    import importlib

    import quipkern
    from quipkern.formats import random_signs
    from quipkern.ops import backend
    op = importlib.import_module("quipkern.ops.linear_2bit")

    sets, nbytes, fn = bench._weights("2bit", N, K, rig.rotations(N * K // 4))
    pk, pn = quipkern.width_plan(K, bench.GROUP, True), quipkern.width_plan(N)
    x = torch.randn(M, K, device="cuda", dtype=dtype)
    rig.time_graph(lambda p, s: fn(x, p, s), sets)  # discarded: the first-timed call read ~2 % high (session 16)
    out = {"whole": rig.time_graph(lambda p, s: fn(x, p, s), sets)}
    if profile:  # the whole call's kernels, by torch.profiler (eager, after the warm-up above)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for p_, s_ in sets:
                fn(x, p_, s_)
            torch.cuda.synchronize()
        print(f"-- {N}x{K} M={M} whole call, {len(sets)} calls:")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8, max_name_column_width=70))
    saved = op.FOLD_MIN_M, op.FOLD_HADAMARD_N_PER_ROW
    op.FOLD_MIN_M, op.FOLD_HADAMARD_N_PER_ROW = 1 << 30, 0
    out["whole, no fold"] = rig.time_graph(lambda p, s: fn(x, p, s), sets)
    if pk.spec.q_matrix() is None:  # T_in is a pure Hadamard transform: it can fold whole
        op.FOLD_HADAMARD_N_PER_ROW = 1 << 30
        out["whole, hadamard_in"] = rig.time_graph(lambda p, s: fn(x, p, s), sets)
    op.FOLD_MIN_M, op.FOLD_HADAMARD_N_PER_ROW = saved
    out["dequantize"] = rig.time_graph(lambda p, s: quipkern.dequantize_2bit(p, s, None, dtype), sets)
    if pk.spec.q_matrix() is None and 256 <= pk.padded <= 32768:
        s_in = random_signs(pk.padded, seed=2).cuda()
        out["dequantize hadamard_in"] = rig.time_graph(
            lambda p, s: quipkern.dequantize_2bit(p, s, None, dtype, None, None, True, s_in), sets)
        if signs_cost:  # what the sign vector costs the folding kernel
            out["dequantize hadamard_in, no signs"] = rig.time_graph(
                lambda p, s: quipkern.dequantize_2bit(p, s, None, dtype, None, None, True, None), sets)
    qs = {side: plan.spec.q_matrix() for side, plan in (("in", pk), ("out", pn))}
    qs = {k: None if v is None else v.cuda() for k, v in qs.items()}
    side = op.fold_side(1 << 30, pn.padded, pk.padded, qs["in"], qs["out"], True, True)
    if side in ("in", "out"):
        fq = dict(q_out=qs["out"]) if side == "out" else dict(q_in=qs["in"])
        out[f"dequantize folding {side}"] = rig.time_graph(
            lambda p, s: quipkern.dequantize_2bit(p, s, None, dtype, **fq), sets)
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
        if signs_cost:
            out[f"{side} rht {width}, no signs"] = rig.time_graph(
                lambda a: quipkern.rht(a, q, None, None, 1.0, side == "T_out"), xs)
        if q is not None:  # Q = I_m, as after folding
            out[f"{side} rht {width} Q=I"] = rig.time_graph(
                lambda a: backend.dispatch("rht", "cuda", a, q.shape[0], s, None, 1.0, side == "T_out", width,
                                           width), xs)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default="8192x8192")
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--profile", action="store_true", help="also list the whole call's kernels (torch.profiler)")
    ap.add_argument("--signs-cost", action="store_true", help="also time the transforms without their sign vectors")
    a = ap.parse_args(argv)
    for shape in a.shapes.split(","):
        N, K = map(int, shape.split("x"))
        res = parts(N, K, a.m, profile=a.profile, signs_cost=a.signs_cost)
        summed = sum(v for k, v in res.items() if k in ("dequantize",) or k.endswith(f"rht {K}") or k.endswith(f"rht {N}"))
        print(f"== {N}x{K} M={a.m}: " + ", ".join(f"{k} {v * 1e6:.1f}" for k, v in res.items())
              + f"; dequantize + mm + transforms {(summed + res['mm out=']) * 1e6:.1f} µs", flush=True)


if __name__ == "__main__":
    main()
