"""pytest-benchmark microbenchmarks of the main ops on a GPU:

    pytest benchmarks --benchmark-only

Wall-clock per call with a device synchronize (so launch overhead is included, unlike
the graph-replayed numbers of bench.py); weights are not rotated, so these fit in L2 at
small shapes.  For the reference numbers use benchmarks/bench.py.  Skipped without a GPU."""

import pytest
import torch

import quipkern
from quipkern.formats import pack_ternary_2bit, random_signs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]


def _sync(fn):
    def run():
        fn()
        torch.cuda.synchronize()
    return run


def _transforms(N, K):
    kw = dict(transform_in=True, transform_out=True)
    for side, n in (("in", K), ("out", N)):
        q = quipkern.transform_spec(n).q_matrix()
        kw[f"q_{side}"] = None if q is None else q.cuda()
        kw[f"signs_{side}"] = random_signs(n, seed=n).cuda()
    return kw


@pytest.mark.parametrize("M", [1, 16])
@pytest.mark.parametrize("N,K", SHAPES)
def test_bf16_linear(benchmark, N, K, M):
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
    benchmark(_sync(lambda: torch.nn.functional.linear(x, w)))


@pytest.mark.parametrize("M", [1, 16])
@pytest.mark.parametrize("N,K", SHAPES)
def test_linear_2bit(benchmark, N, K, M):
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, device="cuda")
    scales = torch.full((N, K // 128), 0.01, dtype=torch.float16, device="cuda")
    kw = _transforms(N, K)
    benchmark(_sync(lambda: quipkern.linear_2bit(x, packed, scales, None, None, **kw)))


@pytest.mark.parametrize("M", [1, 16])
@pytest.mark.parametrize("N,K", SHAPES)
def test_linear_ternary_2bit(benchmark, N, K, M):
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    packed = pack_ternary_2bit(torch.randint(-1, 2, (N, K), device="cuda"))
    scale = torch.full((N,), 0.01, device="cuda")
    benchmark(_sync(lambda: quipkern.linear_ternary(x, packed, scale)))


@pytest.mark.parametrize("M", [1, 16, 4096])
@pytest.mark.parametrize("n", [4096, 11008, 14336])
def test_rht(benchmark, n, M):
    x = torch.randn(M, n, device="cuda", dtype=torch.bfloat16)
    q = quipkern.transform_spec(n).q_matrix()
    q = None if q is None else q.cuda()
    s = random_signs(n, seed=1).cuda()
    benchmark(_sync(lambda: quipkern.rht(x, q, s)))
