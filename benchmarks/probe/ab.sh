#!/usr/bin/env bash
# A/B of GEMV versions in one GPU session: the probe (benchmarks/probe/stream_probe.cu)
# built against each version, checked against a float64 host reference, then timed.
#   bash benchmarks/probe/ab.sh name=file.cu name=patch:benchmarks/pending/x.patch[+y.patch] ...
# (default: this checkout's kernel only); a file outside csrc/ (e.g. main's, from
# `git show main:csrc/linear_2bit.cu > /tmp/main.cu`) takes this checkout's csrc/*.cuh.
# Patches (several joined by +, applied in that order) are applied to a copy of this
# checkout's csrc/ kernel sources and headers; the rest of a patch (bindings, Python) is
# ignored.  A spec named twice (e.g. main=/tmp/main.cu new=csrc/linear_2bit.cu main2=/tmp/main.cu,
# to alternate) is compiled once.  Output: one table per version; ab_table.py puts them side by side.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
vers=${*:-current=$root/csrc/linear_2bit.cu}
dirs=()
declare -A first  # spec -> the name it is built under
trap 'rm -rf "${dirs[@]}"' EXIT
for v in $vers; do
  name=${v%%=*}; spec=${v#*=}
  [ -n "${first[$spec]:-}" ] && continue
  first[$spec]=$name
  inc=csrc/include
  if [[ $spec == patch:* ]]; then
    dir=$(mktemp -d)
    dirs+=("$dir")
    mkdir -p "$dir/csrc" && cp -r csrc/linear_2bit.cu csrc/*.cuh csrc/include "$dir/csrc/" 2>/dev/null
    failed=0
    IFS=+ read -ra patches <<< "${spec#patch:}"
    for p in "${patches[@]}"; do
      (cd "$dir" && git apply --include='csrc/linear_2bit.cu' --include='csrc/*.cuh' --include='csrc/include/*' \
        "$root/$p") || failed=1
    done
    [ $failed = 0 ] || { echo "$name: patch failed" > "/tmp/probe_$name.log"; rm -f "/tmp/probe_$name"; continue; }
    src=$dir/csrc/linear_2bit.cu
    inc=$dir/csrc/include
  else
    src=$(realpath "$spec")
  fi
  nvcc -std=c++17 -O3 "-I$inc" -Icsrc/include -Icsrc -gencode=arch=compute_90a,code=sm_90a "-DQK_GEMV_SOURCE=\"$src\"" \
    benchmarks/probe/stream_probe.cu -o "/tmp/probe_$name" > "/tmp/probe_$name.log" 2>&1 &
done
wait
for v in $vers; do
  name=${v%%=*}; bin=${first[${v#*=}]}
  # a rerun of an earlier spec says so: ab_table.py counts the two as one version
  if [ "$bin" = "$name" ]; then echo "== $name =="; else echo "== $name (build of $bin) =="; fi
  if [ -x "/tmp/probe_$bin" ]; then "/tmp/probe_$bin"; else cat "/tmp/probe_$bin.log"; fi
done
