"""On the GPU: the quantized layers under torch.compile(fullgraph=True) and inside a
captured CUDA graph give the eager results (decode shapes, so the CUDA GEMV runs)."""

import pytest
import torch
from torch import nn

from quipkern import QuipLinear, TernaryLinear

from .utils import rel_err

pytestmark = pytest.mark.gpu


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        QuipLinear.from_linear(nn.Linear(4096, 11008), group_size=128),
        nn.SiLU(),
        QuipLinear.from_linear(nn.Linear(11008, 4096), group_size=64, asymmetric=True),
        TernaryLinear.from_linear(nn.Linear(4096, 384), transform=True),
    ).cuda().to(torch.bfloat16)


@pytest.mark.parametrize("M", [1, 5, 16])
def test_compile_and_graph_capture(M):
    model = _model()
    x = torch.randn(M, 4096, device="cuda", dtype=torch.bfloat16)
    ref = model(x)
    assert rel_err(torch.compile(model, fullgraph=True)(x), ref) < 1e-2
    assert rel_err(torch.compile(model, fullgraph=True, mode="reduce-overhead")(x), ref) < 1e-2

    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = model(static_x)
    x2 = torch.randn_like(x)
    static_x.copy_(x2)
    graph.replay()
    torch.cuda.synchronize()
    assert rel_err(static_y, model(x2)) < 1e-6
