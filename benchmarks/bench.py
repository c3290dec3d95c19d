"""quipkern's benchmark suite: what each format gains over bf16 on this GPU.

For every Llama layer shape and batch size M: bf16 F.linear, then each quipkern format
through its public op (the backend dispatch picks the kernel, as for a user), with both
transforms where the format has them; and the activation transform alone.  Weights are
rotated over >= 3x the L2 cache and every call is replayed from a CUDA graph (the rig,
benchmarks/rig.py).  Printed as a table and written as JSON + CSV (+ a PNG of speedup
against M per format, when matplotlib is installed), optionally followed by the
end-to-end decode of benchmarks/decode.py.

    python benchmarks/bench.py [--ops 2bit,ternary-2bit,rht] [--models llama2-7b,llama3-8b]
        [--shapes 4096x4096,...] [--m 1,4,16,64,512,4096] [--dtype bfloat16] [--out DIR] [--decode]
    python benchmarks/bench.py --plot-only DIR     (redraw the PNG from DIR/bench.json)

Columns: us (median per call), GB/s (weight bytes as stored / time), "x bf16 BW" (that
over the bf16 F.linear's 2-byte-per-weight bandwidth at the same M: at M = 1 the fraction
of the bf16 GEMV's bandwidth), and the speedup over bf16 at the same shape and M.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rig  # noqa: E402

MODELS = {  # (N, K) of the distinct Linear layers of each model
    "llama2-7b": [(4096, 4096), (11008, 4096), (4096, 11008)],
    "llama2-13b": [(5120, 5120), (13824, 5120), (5120, 13824)],
    "llama2-70b": [(8192, 8192), (1024, 8192), (28672, 8192), (8192, 28672)],
    "llama3-8b": [(4096, 4096), (1024, 4096), (14336, 4096), (4096, 14336)],
    "llama3-70b": [(8192, 8192), (1024, 8192), (28672, 8192), (8192, 28672)],
}
OPS = ("2bit", "2bit-notransform", "ternary-2bit", "ternary-base3", "ternary-a8", "rht")
DEFAULT_OPS = ("2bit", "ternary-2bit", "rht")
DEFAULT_M = (1, 4, 16, 64, 512, 4096)
GROUP = 128  # 2-bit group size (--group; 0: one scale per row)


def shapes_of(models: list[str]) -> list[tuple[int, int]]:
    seen = []
    for m in models:
        if m not in MODELS:
            raise SystemExit(f"bench: unknown model {m!r}; known: {', '.join(MODELS)}")
        for s in MODELS[m]:
            if s not in seen:
                seen.append(s)
    return seen


def _weights(op: str, N: int, K: int, count: int, device="cuda"):
    """`count` random weight sets of format `op` (as the layer would store them) and the
    transform arguments; returns (sets, stored bytes per set, fn(x, *set) -> y)."""
    import quipkern
    from quipkern.formats import pack_ternary_2bit, pack_ternary_base3, random_signs
    from quipkern.formats.ternary import base3_row_bytes

    transform = op == "2bit"
    pk, pn = quipkern.width_plan(K, (GROUP or 64) if op.startswith("2bit") else 64, transform), quipkern.width_plan(N)
    Kp, Np = pk.padded, (pn.padded if transform else N)
    tr = dict(transform_in=transform, transform_out=transform, in_features=K, out_features=N)
    if transform:
        for side, plan in (("in", pk), ("out", pn)):
            q = plan.spec.q_matrix()
            tr[f"q_{side}"] = None if q is None else q.to(device)
            tr[f"signs_{side}"] = random_signs(plan.padded, seed=len(side)).to(device)
    sets = []
    if op.startswith("2bit"):
        G = Kp // GROUP if GROUP else 1
        nbytes = Np * Kp // 4 + Np * G * 2
        for _ in range(count):
            sets.append((torch.randint(-2**31, 2**31 - 1, (Np, Kp // 16), dtype=torch.int32, device=device),
                         (torch.rand(Np, G, device=device) * 0.01 + 0.001).half()))
        fn = lambda x, p, s: quipkern.linear_2bit(x, p, s, None, None, **tr)  # noqa: E731
    else:
        base3 = op == "ternary-base3"
        Kp = K if base3 else Kp
        for _ in range(count):
            trits = torch.randint(-1, 2, (N, Kp), device=device, dtype=torch.int64)
            packed = pack_ternary_base3(trits.cpu()).to(device) if base3 else pack_ternary_2bit(trits)
            sets.append((packed, torch.rand(N, device=device) * 0.01 + 0.001))
        nbytes = N * (base3_row_bytes(Kp) if base3 else Kp // 4) + 4 * N  # packed + fp32 row scales
        if op == "ternary-a8":  # W1.58A8: per-token int8 x, int8 tensor cores, exact int32 sums
            fn = lambda x, p, s: quipkern.linear_ternary_a8(x, p, s, None, in_features=K,  # noqa: E731
                                                            out_features=N, act_bits=8)
        else:
            fn = lambda x, p, s: quipkern.linear_ternary(x, p, s, None, in_features=K, out_features=N,  # noqa: E731
                                                         K=Kp)
    return sets, nbytes, fn


def bench_linear(op: str, N: int, K: int, Ms, dtype, bf16_times: dict) -> list[rig.Row]:
    from quipkern.ops import backend

    rows = []
    sets, nbytes, fn = _weights(op, N, K, 1)
    sets += _weights(op, N, K, rig.rotations(nbytes) - 1)[0]  # rotated over >= 3x L2
    for M in Ms:
        x = torch.randn(M, K, device="cuda", dtype=dtype)
        if (M, N, K) not in bf16_times:
            bf16_times[(M, N, K)] = rig.bf16_linear_time(M, N, K)
            rows.append(rig.Row("linear", "bf16", f"M={M} {N}x{K}", bf16_times[(M, N, K)], 2 * N * K,
                                bf16_seconds=bf16_times[(M, N, K)], extra=dict(M=M, N=N, K=K, op="bf16")))
        t_bf16 = bf16_times[(M, N, K)]
        t = rig.time_graph(lambda p, s: fn(x, p, s), sets)
        opname = "linear_2bit" if op.startswith("2bit") else "linear_ternary"
        impl = backend.choose(opname, "cuda", *_dispatch_args(op, x, sets[0], N, K))
        chosen = next((b for b in backend.available(opname) if backend.implementation(opname, b) is impl.fn), "?")
        row = rig.Row("linear", op, f"M={M} {N}x{K}", t, nbytes, bf16_seconds=t_bf16,
                      extra=dict(M=M, N=N, K=K, op=op, backend=chosen,
                                 frac_bf16_bw=(nbytes / t) / (2 * N * K / t_bf16)))
        rows.append(row)
    del sets
    return rows


def _dispatch_args(op, x, weight_set, N, K):
    """Arguments as the op hands them to the dispatcher (to report the chosen backend)."""
    packed, s = weight_set
    if op.startswith("2bit"):
        return (x, packed, s, None, None, None, None, None, None, False, False, K, N)
    return (x, packed, s, None, None, None, None, None, False, False, K, N, K)


def bench_rht(K: int, Ms, dtype) -> list[rig.Row]:
    import quipkern
    from quipkern.formats import random_signs

    plan = quipkern.width_plan(K)
    q = plan.spec.q_matrix()
    q = None if q is None else q.cuda()
    si = random_signs(plan.padded, seed=1).cuda()
    rows = []
    for M in Ms:
        sets = [(torch.randn(M, K, device="cuda", dtype=dtype),)
                for _ in range(rig.rotations(M * K * dtype.itemsize))]
        t = rig.time_graph(lambda a: quipkern.rht(a, q, si, None, 1.0, False, plan.padded), sets)
        nbytes = M * (K + plan.padded) * dtype.itemsize
        rows.append(rig.Row("rht", "rht", f"M={M} {K}", t, nbytes, copy_seconds=None,
                            extra=dict(M=M, N=0, K=K, op="rht", m=plan.spec.m)))
    return rows


def print_rows(rows):
    print(f"{'op':<18}{'shape':<22}{'us':>10}{'GB/s':>9}{'x bf16 BW':>11}{'vs bf16':>9}  backend")
    for r in rows:
        fb = r.extra.get("frac_bf16_bw")
        fb = f"{fb:.2f}" if fb is not None else "-"
        sp = f"{r.speedup_bf16:.2f}x" if r.speedup_bf16 is not None else "-"
        print(f"{r.impl:<18}{r.shape:<22}{r.seconds * 1e6:>10.2f}{r.gbps:>9.0f}{fb:>11}{sp:>9}  "
              f"{r.extra.get('backend', '')}", flush=True)


def write_outputs(out_dir: str, rows, command: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    rig.write_json(os.path.join(out_dir, "bench.json"), rows, command)
    with open(os.path.join(out_dir, "bench.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "M", "N", "K", "us", "gbps", "frac_bf16_bw", "speedup_bf16", "backend"])
        for r in rows:
            e = r.extra
            w.writerow([r.impl, e.get("M"), e.get("N"), e.get("K"), f"{r.seconds * 1e6:.3f}", f"{r.gbps:.1f}",
                        "" if e.get("frac_bf16_bw") is None else f"{e['frac_bf16_bw']:.4f}",
                        "" if r.speedup_bf16 is None else f"{r.speedup_bf16:.4f}", e.get("backend", "")])


def plot(out_dir: str) -> str | None:
    """speedup vs M per format (geometric mean over shapes) -> out_dir/bench.png."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed; no plot (pip install matplotlib, then --plot-only DIR)")
        return None
    with open(os.path.join(out_dir, "bench.json")) as f:
        data = json.load(f)
    series: dict[str, dict[int, list[float]]] = {}
    for r in data["rows"]:
        op, sp = r["extra"].get("op"), r.get("speedup_bf16")
        if op in (None, "rht") or sp is None:
            continue
        series.setdefault(op, {}).setdefault(r["extra"]["M"], []).append(sp)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for op, by_m in series.items():
        ms = sorted(by_m)
        gm = [float(torch.tensor(by_m[m]).log().mean().exp()) for m in ms]
        ax.plot(ms, gm, marker="o", label=op)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size M (rows of x)")
    ax.set_ylabel("speedup over bf16 F.linear (geo-mean over shapes)")
    env = data["env"]
    ax.set_title(f"quipkern on {env['gpu']} ({env['date'][:10]}, {env['commit']})", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    path = os.path.join(out_dir, "bench.png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default=",".join(DEFAULT_OPS), help=f"any of {', '.join(OPS)}")
    ap.add_argument("--models", default="llama2-7b,llama2-13b,llama2-70b,llama3-8b")
    ap.add_argument("--shapes", help="NxK,... instead of --models")
    ap.add_argument("--m", default=",".join(map(str, DEFAULT_M)))
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    ap.add_argument("--group", default="128", choices=["64", "128", "row"],
                    help="2-bit group size (row: one scale per row, 2.0 bits/weight)")
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--decode", action="store_true", help="also run benchmarks/decode.py (end-to-end)")
    ap.add_argument("--decode-args", default="", help="arguments for decode.py, e.g. '--layers 4 --batch 1'")
    ap.add_argument("--plot-only", metavar="DIR")
    args = ap.parse_args(argv)
    if args.plot_only:
        print(plot(args.plot_only))
        return
    global GROUP
    GROUP = 0 if args.group == "row" else int(args.group)
    ops = args.ops.split(",")
    for op in ops:
        if op not in OPS:
            raise SystemExit(f"bench: unknown op {op!r}; choose from {', '.join(OPS)}")
    if not torch.cuda.is_available():
        raise SystemExit(
            "bench: no CUDA GPU here, and timings need one.  On this machine run the correctness suite "
            "instead: bash tests/run.sh (Triton kernels run in its interpreter, CUDA tests are skipped).")
    shapes = ([tuple(map(int, s.split("x"))) for s in args.shapes.split(",")] if args.shapes
              else shapes_of(args.models.split(",")))
    Ms = [int(m) for m in args.m.split(",")]
    dtype = getattr(torch, args.dtype)
    rows, bf16_times = [], {}
    todo = [(op, s) for op in ops if op != "rht" for s in shapes]
    ks = sorted({k for _, k in shapes}) if "rht" in ops else []
    total = len(todo) + len(ks)
    for i, (op, (N, K)) in enumerate(todo):
        print(f"[{i + 1}/{total}] {op} {N}x{K}", file=sys.stderr, flush=True)
        new = bench_linear(op, N, K, Ms, dtype, bf16_times)
        print_rows(new)
        rows += new
    for j, K in enumerate(ks):
        print(f"[{len(todo) + j + 1}/{total}] rht {K}", file=sys.stderr, flush=True)
        new = bench_rht(K, Ms, dtype)
        print_rows(new)
        rows += new
    command = "python benchmarks/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_outputs(args.out, rows, command)
    png = plot(args.out)
    print(f"wrote {args.out}/bench.json, bench.csv" + (f", {os.path.basename(png)}" if png else ""))
    if args.decode:
        import decode

        decode.main(args.decode_args.split() + ["--json", os.path.join(args.out, "decode.json")])


if __name__ == "__main__":
    main()
