"""The probe's timings of several GEMV versions side by side (benchmarks/probe/ab.sh's output).

    python benchmarks/probe/ab_table.py probe.txt

One line a (kernel, M, shape): each version's time in µs, in the order the versions ran,
then every version's median against the first version's median.  A name that ab.sh ran
from an earlier name's build (its header says "(build of base)") counts as that version
timed again: alternate them so that the GPU's drift shows as the spread between a
version's own runs.
"""
import collections
import re
import statistics
import sys

HEAD = re.compile(r"== (?:.*: )?(\S+)(?: \(build of (\S+)\))? ==")
ROW = re.compile(r"gemv (\S+) (\S+)\s+M=(\d+)(?: (\w+))?\s+(\d+x\d+)\s+([\d.]+) us")


def main(path):
    times = collections.defaultdict(lambda: collections.defaultdict(list))
    cur = None
    for line in open(path):
        m = HEAD.match(line)
        if m:
            cur = m.group(2) or m.group(1)
            continue
        m = ROW.match(line)
        if m and cur:
            dtype, mode, M, fixed, shape, us = m.groups()
            key = (f"{dtype} {mode}{' ' + fixed if fixed else ''}", int(M), shape)
            times[key][cur].append(float(us))
    if not times:
        print("no timings found")
        return 1
    for (mode, M, shape), per in times.items():
        names = list(per)
        base = statistics.median(per[names[0]])
        cells = "  ".join(f"{n} " + "/".join(f"{u:.2f}" for u in per[n]) for n in names)
        ratios = "  ".join(f"{n} {statistics.median(per[n]) / base:.3f}" for n in names[1:])
        print(f"{mode:14s} M={M:<2d} {shape:12s} {cells}   vs {names[0]}: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
