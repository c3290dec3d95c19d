#!/usr/bin/env bash
# The test command (README): sets up its own environment, builds quipkern, runs pytest.
#   bash tests/run.sh [pytest args...]
# QUIPKERN_VENV (default .venv) and QUIPKERN_PYTHON (default python3) choose the
# environment.  Without a GPU, Triton kernels run in Triton's interpreter (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/env.sh
exec "$VENV_PY" -m pytest -q tests "$@"
