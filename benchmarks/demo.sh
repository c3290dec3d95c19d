#!/usr/bin/env bash
# The main job (README): quantize all-MiniLM-L6-v2 four ways and compare its sentence
# embeddings with the float model's; on the GPU if there is one (with latencies), else
# on the CPU.  Sets up its own environment first (tests/env.sh).
#   bash benchmarks/demo.sh [--ranks 8,32,64] [--json out.json] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/env.sh
HF_HUB_OFFLINE=1 exec "$VENV_PY" -m quipkern.demo "$@"
