#!/usr/bin/env bash
# Everything quipkern needs on a GPU machine, in one call: build the extension, build
# and run the CMake example, run the tests (GPU ones included), compute-sanitizer on a
# few kernels, and the benchmarks.  Logs and JSON go to $OUT (default /tmp/quipkern-out).
#   bash benchmarks/device_run.sh [stages...]     stages, run in the order given: apply build test sanitize bench suite decode demo profile sass source ab
#   (suite: bench.py over the issues' five shapes at M = 1, 16, 4096, every format and the transform -> $OUT/suite/;
#   decode: the compiled end-to-end decode at batch 1 -> $OUT/decode.json; SUITE_ARGS / DECODE_ARGS override)
#   (default: build test sanitize bench).  BENCHES, BENCH_ARGS, PYTEST_ARGS (default: tests; split on spaces), PYTEST_K (one -k
#   expression, spaces allowed, e.g. "not compile and not backward"), TEST_WORKERS, TEST_TIMEOUT, PROFILE_ARGS,
#   AB_ARGS (versions for ab.sh, e.g. "v6=csrc/linear_2bit.cu v8=patch:benchmarks/pending/gemv_v8.patch"),
#   PATCHES (for `apply`: patches from benchmarks/pending/ to apply to this copy first) adjust them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/quipkern-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
STAGES=${*:-build test sanitize bench}
LOG="$OUT/log.txt"
status=0
step() { echo "== $* ==" | tee -a "$LOG"; }

stage_apply() {
  step "apply pending patches: ${PATCHES:-none}"
  # the device copy has no .git; git apply works on plain files
  for p in ${PATCHES:-}; do git apply "$p" 2>&1 | tee -a "$LOG" || { echo "PATCH FAILED: $p" | tee -a "$LOG"; exit 1; }; done
}
stage_build() {
  step "GPU"; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee -a "$LOG"
  step "build quipkern._C"
  t0=$(date +%s)
  # the same install a user makes (editable, so the tests import this checkout)
  CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} QUIPKERN_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} \
    $PY -m pip install -v --no-build-isolation --no-deps --no-index -e . >>"$LOG" 2>&1 ||
    { echo "BUILD FAILED" | tee -a "$LOG"; tail -40 "$LOG"; exit 1; }
  $PY -c "import quipkern._C, quipkern; print('installed', quipkern.__file__)" | tee -a "$LOG"
  echo "built in $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
  grep -E "registers|spill" "$LOG" | sort | uniq -c | sort -rn | head -20 > "$OUT/ptxas.txt" || true
  step "CMake example"
  (cmake -S . -B build/cmake -DCMAKE_CUDA_ARCHITECTURES=90a >>"$LOG" 2>&1 &&
   cmake --build build/cmake -j 16 >>"$LOG" 2>&1 && ./build/cmake/quipkern_rht_example) 2>&1 | tee -a "$LOG" || status=1
}
stage_test() {
  step "pytest"
  $PY -c "import quipkern, quipkern._ext as e; print('cuda ext:', e.AVAILABLE, e.LOAD_ERROR)" | tee -a "$LOG"
  # parallel workers when pytest-xdist is there: Triton compiles dominate on the GPU
  xdist=""; $PY -c "import xdist" 2>/dev/null && xdist="-n ${TEST_WORKERS:-8}"
  # the whole output in $OUT/pytest.txt; -v names every test as it ends, so a run that a
  # time limit kills still says which ones failed (the summary comes only at the end)
  kexpr=(); [ -n "${PYTEST_K:-}" ] && kexpr=(-k "$PYTEST_K")  # one argument: PYTEST_ARGS is split on spaces
  timeout ${TEST_TIMEOUT:-3000} $PY -m pytest -v -rfE $xdist -p no:cacheprovider --durations=15 "${kexpr[@]}" \
    ${PYTEST_ARGS:-tests} > "$OUT/pytest.txt" 2>&1 || status=1
  grep -E "FAILED|ERROR" "$OUT/pytest.txt" | head -40 | tee -a "$LOG"
  tail -25 "$OUT/pytest.txt" | tee -a "$LOG"
}
stage_sanitize() {
  step "compute-sanitizer memcheck"
  compute-sanitizer --tool memcheck --error-exitcode 7 $PY benchmarks/sanitize.py 2>&1 | tail -15 | tee -a "$LOG" || status=1
}
stage_bench() {
  step "benchmarks"
  for b in ${BENCHES:-linear_2bit rht}; do
    $PY benchmarks/bench_$b.py --json "$OUT/bench_$b.json" ${BENCH_ARGS:-} 2>&1 | tee -a "$LOG" || status=1
  done
}
stage_suite() {
  step "suite: the issues' shapes (benchmarks/bench.py) -> suite/"
  $PY benchmarks/bench.py ${SUITE_ARGS:---ops 2bit,2bit-notransform,ternary-2bit,ternary-base3,ternary-a8,rht \
    --shapes 4096x4096,8192x8192,28672x8192,8192x28672,14336x4096 --m 1,16,4096} --out "$OUT/suite" \
    > "$OUT/suite.txt" 2>&1 || status=1
  grep -E "M=" "$OUT/suite.txt" | tee -a "$LOG"
}
stage_decode() {
  step "end-to-end decode (benchmarks/decode.py) -> decode.json"
  $PY benchmarks/decode.py ${DECODE_ARGS:---batch 1} --json "$OUT/decode.json" 2>&1 | tee -a "$LOG" || status=1
}
stage_profile() {
  step "Nsight Compute on the decode kernels (benchmarks/profile_kernels.py)"
  # clocks left alone (device notes); PROFILE_ARGS picks kernels and shapes
  ncu --clock-control none --section SpeedOfLight --section SchedulerStats --section WarpStateStats \
    --section Occupancy --section MemoryWorkloadAnalysis --kernel-name regex:"gemv|rht" --launch-count 4 \
    $PY benchmarks/profile_kernels.py ${PROFILE_ARGS:---calls 2} > "$OUT/ncu.txt" 2>&1 || status=1
  grep -E "gemv_2bit_kernel|rht_main_kernel|Duration|DRAM Throughput|Issued Warp|No Eligible" "$OUT/ncu.txt" | tee -a "$LOG"
}
stage_sass() {
  step "SASS of the GEMV kernels (cuobjdump, sm_90a) -> gemv_sass.txt"
  so=$($PY -c "import quipkern._C as c; print(c.__file__)")
  cuobjdump -arch sm_90a -sass "$so" | awk '/Function :/{keep = /gemv_2bit(_x16)?_kernel/} keep' > "$OUT/gemv_sass.txt" || status=1
  grep -c "^        /\*[0-9a-f]*\*/" "$OUT/gemv_sass.txt" | tee -a "$LOG"
}
stage_source() {
  # SOURCE_KERNEL (a kernel-name regex, default gemv) and SOURCE_WHAT (profile_kernels.py --what)
  k=${SOURCE_KERNEL:-gemv}
  step "Nsight Compute, full set with per-instruction samples, one $k call -> ${k}_source.csv"
  # one profiled call (the third, on a fresh weight set); the SASS view with stall samples per line
  ncu --clock-control none --set full --import-source yes --kernel-name regex:$k --launch-skip 2 --launch-count 1 \
    -f -o /tmp/${k}_full $PY benchmarks/profile_kernels.py --what ${SOURCE_WHAT:-gemv} ${PROFILE_ARGS:---calls 3} > /tmp/ncu_full.log 2>&1 || { status=1; tail -20 /tmp/ncu_full.log; }
  ncu -i /tmp/${k}_full.ncu-rep --page details > "$OUT/${k}_details.txt" 2>&1 || status=1
  ncu -i /tmp/${k}_full.ncu-rep --page source --csv --print-source sass > "$OUT/${k}_source.csv" 2>&1 || status=1
  grep -E "Duration|DRAM Throughput|Issued Warp|No Eligible|Executed Ipc" "$OUT/${k}_details.txt" | tee -a "$LOG"
}
stage_ab() {
  step "GEMV versions side by side, each checked then timed (benchmarks/probe/ab.sh) -> probe.txt"
  bash benchmarks/probe/ab.sh ${AB_ARGS:-} > "$OUT/probe.txt" 2>&1 || status=1
  grep -E "^==|FAILED|WRONG|failed|gemv" "$OUT/probe.txt" >> "$LOG"
  local bad="FAILED|WRONG|failed|error"
  grep -E "$bad" "$OUT/probe.txt" | head -20
  $PY benchmarks/probe/ab_table.py "$OUT/probe.txt" | tee "$OUT/ab_table.txt" | tee -a "$LOG"
  ! grep -qE "$bad" "$OUT/probe.txt" || status=1
}
stage_demo() {
  step "demo (main job) on the GPU"
  # the model package is not installed there: a float16 copy of its folder travels in
  # .carry/minilm (made here by benchmarks/make_demo_carry.py; carry [".carry/minilm"])
  dir=${DEMO_MODEL_DIR:-.carry/minilm}
  HF_HUB_OFFLINE=1 $PY -m quipkern.demo ${DEMO_ARGS:-} --model-dir "$dir" --json "$OUT/demo.json" 2>&1 | tail -16 | tee -a "$LOG" || status=1
}
for s in $STAGES; do "stage_$s"; done
exit $status
