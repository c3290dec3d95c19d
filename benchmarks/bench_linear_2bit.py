"""Benchmark of the fused 2-bit layer y = S_out·T_outᵀ·(Ŵ·(T_in·S_in·x)) (issue: fused RHT +
2-bit dequant-matmul).

For each Llama shape (N × K) and batch M: bf16 F.linear, then each quipkern backend with
both transforms ("layer") and without them ("matmul"), weights (packed + fp16 group-128
scales) rotated over >= 3× L2, CUDA-graph replay, all in one run.  Effective bandwidth
counts the 2-bit weight bytes (codes + scales); "x bf16 BW" is that bandwidth over the
bf16 GEMV's (2 bytes/weight) in the same run.  A shape with a width that has no cheap
transform (4544 = 71·64) runs padded (docs/FORMATS.md): its bytes are those of the
padded weight, its speedup is against bf16 at the unpadded shape.

    python benchmarks/bench_linear_2bit.py [--json out.json] [--m 1,16,4096] [--shapes 8192x8192]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rig  # noqa: E402

import quipkern  # noqa: E402
from quipkern.formats import random_signs  # noqa: E402
from quipkern.ops import backend  # noqa: E402

SHAPES = [(8192, 8192), (28672, 8192), (8192, 28672), (4096, 4096), (14336, 4096),
          (4544, 4544), (4608, 4608)]  # Falcon-7B's padded width next to its padded size
GROUP = 128


def weight_sets(N, K, count):
    sets = []
    for _ in range(count):
        packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, device="cuda")
        scales = (torch.rand(N, K // GROUP, device="cuda") * 0.01 + 0.001).half()
        sets.append((packed, scales))
    return sets


def bench_shape(N0, K0, Ms, impls):
    pk, pn = quipkern.width_plan(K0, GROUP), quipkern.width_plan(N0)
    tk, tn, N, K = pk.spec, pn.spec, pn.padded, pk.padded
    wbytes = N * K // 4 + N * (K // GROUP) * 2
    sets = weight_sets(N, K, rig.rotations(wbytes))
    q_in = tk.q_matrix().cuda() if tk.m > 1 else None
    q_out = tn.q_matrix().cuda() if tn.m > 1 else None
    s_in, s_out = random_signs(K, seed=1).cuda(), random_signs(N, seed=2).cuda()
    label = f"{N0}x{K0}" + (f" (pad {N}x{K})" if (N, K) != (N0, K0) else "")
    rows = []
    for M in Ms:
        x = torch.randn(M, K0, device="cuda", dtype=torch.bfloat16)
        t_bf16 = rig.bf16_linear_time(M, N0, K0)
        bf16_bw = 2 * N0 * K0 / t_bf16
        rows.append(rig.Row("linear", "bf16", f"M={M} {N0}x{K0}", t_bf16, 2 * N0 * K0, bf16_seconds=t_bf16))
        for impl in impls:
            name, variant = impl.split(":")
            if name not in backend.available("linear_2bit"):
                continue
            fn = backend.implementation("linear_2bit", name)
            layer = variant == "layer"
            if not layer and (N, K) != (N0, K0):
                continue  # a padded shape is only a layer
            out = torch.empty(M, N0, device="cuda", dtype=torch.bfloat16)
            args = lambda p, s: (x, p, s, None, None, q_in if layer else None, s_in if layer else None,  # noqa: E731
                                 q_out if layer else None, s_out if layer else None, layer, layer, K0, N0)
            why = backend.why_not("linear_2bit", name, *args(*sets[0]))
            if why:
                continue
            t = rig.time_graph(lambda p, s: fn(*args(p, s), out=out), sets)
            row = rig.Row("linear_2bit", impl, f"M={M} {label}", t, wbytes, bf16_seconds=t_bf16)
            row.extra["frac_bf16_bw"] = (wbytes / t) / bf16_bw
            rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--m", default="1,16,4096")
    ap.add_argument("--shapes", default=",".join(f"{n}x{k}" for n, k in SHAPES))
    ap.add_argument("--impls", default="cuda:layer,cuda:matmul,triton:layer,triton:matmul")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_linear_2bit: needs a CUDA GPU; on a CPU machine run the tests instead (bash tests/run.sh)")
    Ms = [int(m) for m in args.m.split(",")]
    rows = []
    for shape in args.shapes.split(","):
        N, K = map(int, shape.split("x"))
        new = bench_shape(N, K, Ms, args.impls.split(","))
        rig.print_table(new)
        for r in new:
            if "frac_bf16_bw" in r.extra:
                print(f"   {r.impl:<16}{r.shape:<22} bandwidth {r.extra['frac_bf16_bw']:.2f} of bf16 GEMV's")
        sys.stdout.flush()
        rows += new
    op_module = importlib.import_module("quipkern.ops.linear_2bit")
    print(f"(dequant + cuBLAS from M >= {op_module.DEQUANT_GEMM_MIN_M} in the triton backend)")
    if args.json:
        rig.write_json(args.json, rows, "python benchmarks/bench_linear_2bit.py " + " ".join(argv or sys.argv[1:]))
    return rows


if __name__ == "__main__":
    main()
