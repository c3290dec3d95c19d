"""Benchmark of the randomized Hadamard transform (issue: RHT kernels near copy speed).

For each width: >= 256 MiB of bf16 rows per call (5× the L2, so no rotation is needed),
each backend's kernel writing a preallocated output, against a copy of the same bytes in
the same run.  A width without a cheap transform (e.g. 4544) is timed as the input
transform of a padded layer: rows of n read, rows of width_plan(n).padded written.
Then the decode latency: one row of 8192, 100 calls captured in a graph.

    python benchmarks/bench_rht.py [--json out.json] [--sizes 4096,11008] [--impls cuda,triton]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rig  # noqa: E402

import quipkern  # noqa: E402
from quipkern.formats import random_signs  # noqa: E402
from quipkern.ops import backend  # noqa: E402

SIZES = [256, 1024, 2048, 4096, 8192, 16384, 32768, 3072, 6144, 7168, 14336, 10240, 20480, 11008, 13824, 28672,
         4544, 4608, 18176, 18432]  # padded Falcon-7B widths next to their padded sizes
DATA_BYTES = 256 * 2**20


def bench_width(n: int, impls: list[str], dtype=torch.bfloat16) -> list[rig.Row]:
    plan = quipkern.width_plan(n)
    spec, P = plan.spec, plan.padded
    rows = max(1, DATA_BYTES // (n * dtype.itemsize))
    x = torch.randn(rows, n, device="cuda").to(dtype)
    out = torch.empty(rows, P, device="cuda", dtype=dtype)
    q = spec.q_matrix()
    q = q.cuda() if q is not None else None
    si, so = random_signs(P, seed=1).cuda(), random_signs(P, seed=2).cuda()
    nbytes = (n + P) * rows * dtype.itemsize
    t_copy = rig.copy_time(x.numel() * dtype.itemsize)
    label = f"{rows}x{n}" + (f"->{P}" if P != n else "") + f" m={spec.m}"
    result = []
    for impl in impls:
        if impl not in backend.available("rht"):
            continue
        fn = backend.implementation("rht", impl)
        t = rig.time_graph(lambda a, o: fn(a, q, si, so, 1.0, False, P, P, out=o), [(x, out)])
        result.append(rig.Row("rht", impl, label, t, nbytes, copy_seconds=t_copy))
    return result


def bench_latency(n: int, impls: list[str]) -> list[rig.Row]:
    x = torch.randn(1, n, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(x)
    si = random_signs(n, seed=1).cuda()
    result = []
    for impl in impls:
        if impl not in backend.available("rht"):
            continue
        fn = backend.implementation("rht", impl)
        t = rig.time_graph(lambda a, o: fn(a, None, si, None, 1.0, False, n, n, out=o), [(x, out)] * 100)
        result.append(rig.Row("rht-latency", impl, f"1x{n}", t, 4 * n))
    return result


def main(argv=None) -> list[rig.Row]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--impls", default="cuda,triton")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_rht: needs a CUDA GPU; on a CPU machine run the tests instead (bash tests/run.sh)")
    impls = args.impls.split(",")
    rows = []
    for n in map(int, args.sizes.split(",")):
        rows += bench_width(n, impls)
        rig.print_table(rows[-len(impls):])
        sys.stdout.flush()
    rows += bench_latency(8192, impls)
    print()
    rig.print_table(rows)
    if args.json:
        rig.write_json(args.json, rows, "python benchmarks/bench_rht.py " + " ".join(argv or sys.argv[1:]))
    return rows


if __name__ == "__main__":
    main()
