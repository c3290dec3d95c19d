"""QuipLinear / TernaryLinear: behave like nn.Linear for callers, forward = the float
weight they report, dtype / device moves keep the packed formats, backward in x."""

import pytest
import torch
from torch import nn

import quipkern
from quipkern import QuipLinear, TernaryLinear

from .utils import REL_TOL, rel_err


def _linear(K=384, N=96, bias=True):
    lin = nn.Linear(K, N, bias=bias)
    with torch.no_grad():
        lin.weight.normal_(0, 0.05)
    return lin


@pytest.mark.parametrize("transform", [False, True])
@pytest.mark.parametrize("group_size,asym", [(64, False), (128, True), (-1, False)])
@pytest.mark.parametrize("bias", [True, False])
def test_quip_linear_matches_its_dequantized_weight(transform, group_size, asym, bias):
    lin = _linear(bias=bias)
    q = QuipLinear.from_linear(lin, group_size=group_size, asymmetric=asym, transform=transform, seed=3)
    assert (q.in_features, q.out_features) == (384, 96)
    x = torch.randn(2, 5, 384, dtype=torch.float64)
    W = q.dequantize(torch.float64)
    ref = nn.functional.linear(x, W, None if q.bias is None else q.bias.double())
    assert rel_err(q.double()(x), ref) < 1e-12
    # and the quantization is a sane approximation of the float weight
    assert ((W - lin.weight.double()) ** 2).sum() / (lin.weight.double() ** 2).sum() < 0.2


@pytest.mark.parametrize("layout", ["base3", "2bit"])
@pytest.mark.parametrize("transform,per_row", [(False, True), (True, False)])
def test_ternary_linear_matches_its_dequantized_weight(layout, transform, per_row):
    lin = _linear()
    t = TernaryLinear.from_linear(lin, layout=layout, per_row=per_row, transform=transform, seed=1)
    x = torch.randn(4, 384, dtype=torch.float64)
    ref = nn.functional.linear(x, t.dequantize(torch.float64), t.bias.double())
    assert rel_err(t.double()(x), ref) < 1e-12
    if not transform:  # plain BitNet: Ŵ = scale · trits exactly
        W = t.dequantize(torch.float64)
        s = lin.weight.double().abs().mean(dim=1, keepdim=True) if per_row else lin.weight.double().abs().mean()
        assert torch.allclose(W / s, torch.round(W / s))


def test_dtype_and_device_moves_keep_formats():
    q = QuipLinear.from_linear(_linear(), group_size=128, asymmetric=True)
    q = q.to(torch.bfloat16)
    assert q.bias.dtype == torch.bfloat16
    assert q.scales.dtype == torch.float16 and q.zeros.dtype == torch.float16
    assert q.packed.dtype == torch.int32 and q.q_in.dtype == torch.float32 and q.signs_in.dtype == torch.uint8
    y = q(torch.randn(3, 384, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    q = q.half().float()
    assert q.scales.dtype == torch.float16
    t = TernaryLinear.from_linear(_linear()).to(torch.float16)
    assert t.scale.dtype == torch.float32 and t.packed.dtype == torch.uint8
    if torch.cuda.is_available():
        q = q.cuda()
        assert q.packed.is_cuda and q.scales.dtype == torch.float16
    assert "group_size=128" in repr(q) and "in_features=384" in repr(q)


def test_backward_in_x_matches_autograd_of_reference():
    lin = _linear()
    q = QuipLinear.from_linear(lin, group_size=64, transform=True).double()
    x = torch.randn(3, 384, dtype=torch.float64, requires_grad=True)
    y = q(x)
    gy = torch.randn_like(y)
    y.backward(gy)
    x2 = x.detach().requires_grad_()
    nn.functional.linear(x2, q.dequantize(torch.float64), q.bias).backward(gy)
    assert rel_err(x.grad, x2.grad) < 1e-12
    assert q.bias.grad is not None  # bias stays trainable
    assert all(b.grad is None for b in (q.packed, q.scales))  # weights frozen


def test_lowrank_reduces_error_and_trains():
    lin = _linear(K=256, N=128)
    errs = []
    for r in (0, 8, 32):
        q = QuipLinear.from_linear(lin, group_size=128, rank=r)
        D = q.dequantize(torch.float64) - lin.weight.double()
        errs.append(((D ** 2).sum() / (lin.weight.double() ** 2).sum()).item())
    assert errs[0] > errs[1] > errs[2]
    x = torch.randn(4, 256)
    assert rel_err(q(x), nn.functional.linear(x, q.dequantize(torch.float32), q.bias)) < REL_TOL[torch.float32]
    q(x).sum().backward()
    assert q.lora_L.grad is not None and q.lora_R.grad is not None
    assert q.bits_per_weight() > 2.125  # the factors are counted


def test_ldlq_beats_rtn_in_proxy_error():
    torch.manual_seed(0)
    lin = _linear(K=256, N=64)
    X = torch.randn(2000, 256) @ (torch.randn(256, 256) * 0.2 + torch.eye(256))
    H = X.double().T @ X.double() / X.shape[0]
    W = lin.weight.double()
    errs = {}
    for method in ("rtn", "ldlq"):
        q = QuipLinear.from_linear(lin, method=method, hessian=H, group_size=64)
        D = q.dequantize(torch.float64) - W
        errs[method] = (torch.trace(D @ H @ D.T) / torch.trace(W @ H @ W.T)).item()
    assert errs["ldlq"] < 0.8 * errs["rtn"]


@pytest.mark.parametrize("kw,msg", [
    (dict(in_features=0, out_features=64), "in_features must be a positive int"),
    (dict(in_features=128, out_features=64, group_size=32), "group_size=32"),
    (dict(in_features=128, out_features=64, rank=65), "rank=65"),
])
def test_quip_linear_refuses(kw, msg):
    with pytest.raises(ValueError, match=msg):
        QuipLinear(**kw)


def test_ternary_refuses():
    with pytest.raises(ValueError, match="layout must be"):
        TernaryLinear(128, 64, layout="base4")
    with pytest.raises(ValueError, match="out_features must be a positive int"):
        TernaryLinear(100, -1)
    with pytest.raises(ValueError, match="method 'ldlq' needs"):
        QuipLinear.from_linear(_linear(), method="ldlq")


def test_compile_fullgraph_over_layers():
    model = nn.Sequential(QuipLinear.from_linear(_linear(384, 384)), nn.GELU(),
                          TernaryLinear.from_linear(_linear(384, 96), transform=True))
    x = torch.randn(2, 384)
    assert rel_err(torch.compile(model, fullgraph=True)(x), model(x)) < 1e-5
