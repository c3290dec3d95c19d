"""Test set-up.  Without a GPU the Triton kernels run in Triton's interpreter, which
reads TRITON_INTERPRET when kernels are defined: so it is set before quipkern imports."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("QUIPKERN_AUTOTUNE", "0")  # tests check values; autotuning only costs time

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
