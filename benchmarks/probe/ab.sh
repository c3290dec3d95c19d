#!/usr/bin/env bash
# A/B of GEMV versions in one GPU session: the probe built against each source, run in turn.
#   bash benchmarks/probe/ab.sh name=file.cu ...   (default: this checkout's kernel only)
# Output: one table per version.
set -uo pipefail
cd "$(dirname "$0")/../.."
vers=${*:-current=$PWD/csrc/linear_2bit.cu}
for v in $vers; do
  name=${v%%=*}; src=$(realpath "${v#*=}")
  nvcc -std=c++17 -O3 -Icsrc/include -gencode=arch=compute_90a,code=sm_90a "-DQK_GEMV_SOURCE=\"$src\"" \
    benchmarks/probe/stream_probe.cu -o "/tmp/probe_$name" > "/tmp/probe_$name.log" 2>&1 &
done
wait
for v in $vers; do
  name=${v%%=*}
  echo "== $name =="
  if [ -x "/tmp/probe_$name" ]; then "/tmp/probe_$name"; else cat "/tmp/probe_$name.log"; fi
done
