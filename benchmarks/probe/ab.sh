#!/usr/bin/env bash
# A/B of GEMV versions in one GPU session: the probe (benchmarks/probe/stream_probe.cu)
# built against each version, checked against a float64 host reference, then timed.
#   bash benchmarks/probe/ab.sh name=file.cu name=patch:benchmarks/pending/x.patch ...
# (default: this checkout's kernel only).  A patch is applied to a copy of this
# checkout's csrc/linear_2bit.cu.  Output: one table per version.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
vers=${*:-current=$root/csrc/linear_2bit.cu}
for v in $vers; do
  name=${v%%=*}; spec=${v#*=}
  if [[ $spec == patch:* ]]; then
    dir=$(mktemp -d)
    mkdir -p "$dir/csrc" && cp csrc/linear_2bit.cu "$dir/csrc/"
    (cd "$dir" && git apply --include=csrc/linear_2bit.cu "$root/${spec#patch:}") || { echo "$name: patch failed"; continue; }
    src=$dir/csrc/linear_2bit.cu
  else
    src=$(realpath "$spec")
  fi
  nvcc -std=c++17 -O3 -Icsrc/include -gencode=arch=compute_90a,code=sm_90a "-DQK_GEMV_SOURCE=\"$src\"" \
    benchmarks/probe/stream_probe.cu -o "/tmp/probe_$name" > "/tmp/probe_$name.log" 2>&1 &
done
wait
for v in $vers; do
  name=${v%%=*}
  echo "== $name =="
  if [ -x "/tmp/probe_$name" ]; then "/tmp/probe_$name"; else cat "/tmp/probe_$name.log"; fi
done
