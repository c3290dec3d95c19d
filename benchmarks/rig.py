"""The measuring rig every quipkern benchmark uses (GPU only).

time_graph(fn, arg_sets): captures one CUDA graph that calls fn on the argument sets in
turn (cycling through them until the graph holds at least MIN_CALLS calls), so that
consecutive calls read different buffers (the sets together are made >= 3× the L2 cache
by `rotations`), replays it many times, and returns the median time per call.  Graph
replay removes the CPU launch overhead that small kernels would otherwise measure; the
MIN_CALLS calls a graph spread the replay's own start-up (a few µs) so that it is not
charged to a layer whose weights fill the rotation in one or three sets (before session
8 a 28672×8192 GEMV was timed in a graph of 3 calls: ~48 µs against 39 by Nsight).

Baselines measured in the same run: a device-to-device copy of the same bytes
(`copy_time`, the bandwidth ceiling) and bf16 torch.nn.functional.linear on the same
shapes (`bf16_linear_time`, the speed users compare against).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
from typing import Callable, Sequence

import torch

L2_FACTOR = 3  # rotated data must be >= this many times the L2 cache
MIN_CALLS = 24  # calls in one timed graph (the sets repeated in turn)


def l2_bytes() -> int:
    return torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size


def rotations(bytes_per_set: int, factor: int = L2_FACTOR) -> int:
    """How many buffer sets of this size make the data >= factor × L2."""
    return max(1, math.ceil(factor * l2_bytes() / max(1, bytes_per_set)))


def time_graph(fn: Callable, arg_sets: Sequence[tuple], replays: int = 30, warmup: int = 3,
               min_calls: int = MIN_CALLS) -> float:
    """Median seconds per call of fn over the rotated argument sets, by graph replay
    (at least min_calls calls a graph: the sets in turn, repeated)."""
    calls = list(arg_sets) * math.ceil(max(1, min_calls) / len(arg_sets))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):  # compile / autotune / allocate outside the capture
            for args in arg_sets:
                fn(*args)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for args in calls:
            fn(*args)
    t0 = torch.cuda.Event(enable_timing=True)
    t0.record()
    for _ in range(warmup):
        graph.replay()
    t1 = torch.cuda.Event(enable_timing=True)
    t1.record()
    t1.synchronize()
    if t0.elapsed_time(t1) / warmup > 20.0:  # long graphs (prefill shapes): fewer replays keep the suite short
        replays = min(replays, 7)
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3 / len(calls))
    del graph
    return statistics.median(times)


def copy_time(nbytes: int) -> float:
    """Median seconds to copy nbytes device-to-device (reads nbytes, writes nbytes)."""
    n = max(1, nbytes // 2)
    sets = [(torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_(),
             torch.empty(n, dtype=torch.bfloat16, device="cuda")) for _ in range(rotations(4 * n))]
    return time_graph(lambda src, dst: dst.copy_(src), sets)


def bf16_linear_time(M: int, N: int, K: int) -> float:
    """Median seconds of bf16 F.linear(x (M, K), W (N, K)), weights rotated over >= 3× L2."""
    x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
    sets = [(x, torch.randn(N, K, dtype=torch.bfloat16, device="cuda") * 0.02)
            for _ in range(rotations(2 * N * K))]
    return time_graph(lambda a, w: torch.nn.functional.linear(a, w), sets)


@dataclasses.dataclass
class Row:
    bench: str
    impl: str
    shape: str
    seconds: float
    bytes: int  # bytes the call must move at least (inputs read once, outputs written once)
    copy_seconds: float | None = None  # a copy of the same bytes, same run
    bf16_seconds: float | None = None  # bf16 F.linear on the same shape, same run
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def gbps(self) -> float:
        return self.bytes / self.seconds / 1e9

    @property
    def frac_copy(self) -> float | None:
        return None if self.copy_seconds is None else self.copy_seconds / self.seconds

    @property
    def speedup_bf16(self) -> float | None:
        return None if self.bf16_seconds is None else self.bf16_seconds / self.seconds

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(us=self.seconds * 1e6, gbps=self.gbps, frac_copy=self.frac_copy, speedup_bf16=self.speedup_bf16)
        return d


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "gpu": props.name,
        "sms": props.multi_processor_count,
        "l2_mb": props.L2_cache_size / 2**20,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "host": platform.node(),
        # programmatic dependent launch of the CUDA kernels (csrc/launch.cuh): on unless "0"
        "quipkern_pdl": os.environ.get("QUIPKERN_PDL", "1"),
    }


def print_table(rows: Sequence[Row]) -> None:
    print(f"{'bench':<14}{'impl':<10}{'shape':<22}{'us':>10}{'GB/s':>9}{'x copy':>8}{'vs bf16':>9}")
    for r in rows:
        fc = f"{r.frac_copy:.2f}" if r.frac_copy is not None else "-"
        sp = f"{r.speedup_bf16:.2f}x" if r.speedup_bf16 is not None else "-"
        print(f"{r.bench:<14}{r.impl:<10}{r.shape:<22}{r.seconds * 1e6:>10.2f}{r.gbps:>9.0f}{fc:>8}{sp:>9}")


def write_json(path: str, rows: Sequence[Row], command: str) -> None:
    with open(path, "w") as f:
        json.dump({"env": environment(), "command": command, "rows": [r.as_dict() for r in rows]}, f, indent=1)
