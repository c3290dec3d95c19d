"""Test set-up.  Without a GPU the Triton kernels run in Triton's interpreter, which
reads TRITON_INTERPRET when kernels are defined: so it is set before quipkern imports."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("QUIPKERN_AUTOTUNE", "0")  # tests check values; autotuning only costs time

# Under pytest-xdist every worker would start one torch thread per core (16 workers × 16
# threads on the GPU machine): share the cores out instead (here, 2 workers on 2 cores:
# tests/test_linear_2bit.py + test_layers.py in 34 s instead of 45 s).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

import pytest  # noqa: E402

import quipkern  # noqa: E402,F401


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: long-running; still part of the default run")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed(request):
    # fresh but reproducible random data per test
    torch.manual_seed(hash(request.node.nodeid) % (2**31))
