#!/usr/bin/env bash
# The test command (README): sets up its own environment, builds quipkern, runs pytest.
#   bash tests/run.sh [pytest args...]
# Environment: QUIPKERN_VENV (default .venv in the repo); QUIPKERN_PYTHON (default python3)
# creates it.  Without a GPU, Triton kernels run in Triton's interpreter (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${QUIPKERN_VENV:-.venv}
PY=${QUIPKERN_PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # 2.13.0 is the CPU build this project's machines keep on disk (no multi-GB download)
  "${PIP[@]}" "torch==2.13.0"
fi
"${PIP[@]}" "triton>=3.1" numpy pytest hypothesis pytest-benchmark ninja pybind11 setuptools wheel
# --no-build-isolation: setup.py must see the torch installed above
"${PIP[@]}" --no-build-isolation --no-deps -e .
exec "$VENV/bin/python" -m pytest -q tests "$@"
