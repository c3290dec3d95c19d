"""Widths without a cheap transform (docs/FORMATS.md, "Widths without a cheap transform"):
the rule of width_plan, the padded ops (rht with n / n_out, linear ops with in/out
features) on every backend against explicit zero-padding in float64, and QuipLinear /
TernaryLinear at those widths, where padding must not change the result beyond rounding."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import quipkern
from quipkern import QuipLinear, TernaryLinear, transform_spec, width_plan
from quipkern.formats import random_signs
from quipkern.ops import backend
from quipkern.reference import linear_2bit as linear_2bit_ref
from quipkern.reference import rht as rht_ref

from .layer_cases import two_bit_case
from .utils import HAS_CUDA, LAYER_TOL, REL_TOL, kernel_backends, poison_like, rel_err

# The widths of the issue: Falcon-7B (4544 = 71·64, 18176 = 71·256), 10920 and 2730
# (odd part 1365), 1000 (odd part 125), odd 777 = 3·7·37, and 3.
WIDTHS = [4544, 18176, 10920, 2730, 1000, 777, 3]
# The Triton interpreter is slow: on the CPU the kernels see the smaller widths.
KERNEL_WIDTHS = WIDTHS if HAS_CUDA else [2730, 1000, 777, 3]


def test_width_plan_rule():
    for n in WIDTHS + [4096, 11008, 14336, 384, 142]:
        for mult in (1, 64, 128):
            plan = width_plan(n, mult)
            assert plan.padded >= n and plan.padded % mult == 0
            assert plan.spec == transform_spec(plan.padded)
            # the smallest such width: no multiple of `mult` in [n, padded) has a transform
            for w in range(-(-n // mult) * mult, plan.padded, mult):
                with pytest.raises(ValueError):
                    transform_spec(w)
    assert width_plan(4544).padded == 4608 and width_plan(4544).spec.m == 36
    assert width_plan(18176).padded == 18432
    assert width_plan(10920).padded == 11008 and width_plan(2730).padded == 2752
    assert width_plan(1000).padded == 1008 and width_plan(1000, 64).padded == 1024
    assert width_plan(777).padded == 784 and width_plan(3).padded == 3
    assert width_plan(4096).pad == 0 and width_plan(11008).pad == 0
    assert width_plan(100, 64, transform=False).padded == 128
    assert "padded 4544 -> 4608 (+1.41%)" in width_plan(4544).describe()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive int"):
            width_plan(bad)
    with pytest.raises(ValueError, match="power of two"):
        width_plan(100, 48)


def _transform(n, device="cpu", q_dtype=torch.float32, seed=0):
    plan = width_plan(n)
    q = plan.spec.q_matrix(q_dtype)
    return plan.padded, (None if q is None else q.to(device)), random_signs(plan.padded, seed=seed).to(device)


def _explicit(x, P, q, si, so, scale, transpose, n_out):
    """Zero-pad by hand, transform at the full width, cut: float64."""
    xp = F.pad(x.double().cpu(), (0, P - x.shape[-1]))
    qd = None if q is None else q.double().cpu()
    y = rht_ref(xp, qd, None if si is None else si.cpu(), None if so is None else so.cpu(), scale, transpose)
    return y[..., :n_out]


@pytest.mark.parametrize("n", WIDTHS)
def test_rht_op_pads_and_cuts_float64(n):
    P, q, si = _transform(n, q_dtype=torch.float64, seed=1)
    so = random_signs(P, seed=2)
    x = torch.randn(3, n, dtype=torch.float64)
    y = quipkern.rht(x, q, si, so, 1.5, False, n=P)  # input side: (3, n) -> (3, P)
    assert y.shape == (3, P)
    assert rel_err(y, _explicit(x, P, q, si, so, 1.5, False, P)) < 1e-13
    back = quipkern.rht(y, q, so, si, 1 / 1.5, True, n_out=n)  # output side: (3, P) -> (3, n)
    assert back.shape == (3, n)
    assert rel_err(back, x) < 1e-12  # Tᵀ T pad(x) = pad(x): the padding comes back as zeros
    full = quipkern.rht(y, q, so, si, 1 / 1.5, True)
    if P > n:
        assert full[:, n:].abs().max().item() < 1e-12 * x.abs().max().item()
    # and in one call, padded on both sides, with autograd
    xg = x.clone().requires_grad_()
    z = quipkern.rht(xg, q, si, so, 1.0, False, n=P, n_out=max(1, n - 1))
    gz = torch.randn_like(z)
    (gx,) = torch.autograd.grad(z, xg, gz)
    xd = xg.detach().requires_grad_()
    (gx_ref,) = torch.autograd.grad(_explicit(xd, P, q, si, so, 1.0, False, z.shape[-1]), xd, gz)
    assert rel_err(gx, gx_ref) < 1e-12


@pytest.mark.parametrize("name,device", kernel_backends("rht"))
@pytest.mark.parametrize("n", KERNEL_WIDTHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rht_kernels_padded(name, device, n, dtype):
    if name == "triton" and device == "cuda" and n > 4096:
        pytest.skip("Triton on the GPU is checked on the smaller widths (its compile of a 18432 tile takes minutes)")
    P, q, si = _transform(n, device, seed=3)
    so = random_signs(P, seed=4).to(device)
    fn = backend.implementation("rht", name)
    for rows in (1, 5):
        x = torch.randn(rows, n, device=device).to(dtype)
        out = poison_like(torch.empty(rows, P, device=device, dtype=dtype))
        assert fn(x, q, si, so, 1.0, False, P, P, out=out) is out
        assert rel_err(out, _explicit(x, P, q, si, so, 1.0, False, P)) < REL_TOL[dtype], (name, n, "in")
        y = torch.randn(rows, P, device=device).to(dtype)
        out = poison_like(torch.empty(rows, n, device=device, dtype=dtype))
        fn(y, q, si, so, 0.5, True, P, n, out=out)
        assert rel_err(out, _explicit(y, P, q, si, so, 0.5, True, n)) < REL_TOL[dtype], (name, n, "out")
    # strided rows (not 16-byte aligned) of a padded input
    big = torch.randn(4, n + 24, device=device).to(dtype)
    x = big[:, 8 : 8 + n]
    res = fn(x, q, None, None, 1.0, False, P, P)
    assert rel_err(res, _explicit(x, P, q, None, None, 1.0, False, P)) < REL_TOL[dtype]


def test_rht_padding_errors():
    P, q, si = _transform(777)
    x = torch.randn(2, 777)
    with pytest.raises(ValueError, match="transform width n=700 must be at least the last dim of 'x'"):
        quipkern.rht(x, q, n=700)
    with pytest.raises(ValueError, match=r"n_out=800 must be in \[1, n=784\]"):
        quipkern.rht(x, q, si, n=P, n_out=800)
    with pytest.raises(ValueError, match="transform width n"):
        quipkern.rht(x, q, n=790)  # 790 is not 49·2^k
    with pytest.raises(ValueError, match="sign bitmask of width 784"):
        quipkern.rht(x, q, random_signs(700), n=P)


# (N, K): every width of the issue on each side; on the CPU (interpreter) smaller partners
LAYER_SHAPES = [(4544, 4544), (18176, 4544), (4544, 18176), (10920, 2730), (1000, 777), (777, 1000), (3, 3)]
CPU_LAYER_SHAPES = [(2730, 64), (64, 2730), (1000, 777), (3, 3), (64, 18176), (18176, 64), (10920, 64), (64, 4544)]


def _padded_2bit_case(N, K, device, g=64, asym=True):
    Np, qo, so = _transform(N, device, seed=N)
    Kp = width_plan(K, max(64, g)).padded
    spec = transform_spec(Kp)
    qi = spec.q_matrix(torch.float32)
    qi = None if qi is None else qi.to(device)
    si = random_signs(Kp, seed=K).to(device)
    (packed, scales, zeros), _ = two_bit_case(Np, Kp, g, asym, device)
    kw = dict(q_in=qi, signs_in=si, q_out=qo, signs_out=so, transform_in=True, transform_out=True,
              in_features=K, out_features=N)
    return (packed, scales, zeros), kw


def _explicit_linear(x, packed, scales, zeros, bias, kw):
    """pad x, full-width reference layer, cut: float64."""
    Kp = packed.shape[1] * 16
    xp = F.pad(x.double().cpu(), (0, Kp - x.shape[-1]))
    cpu = {k: (v.cpu().double() if k.startswith("q_") and v is not None else v.cpu() if torch.is_tensor(v) else v)
           for k, v in kw.items() if k not in ("in_features", "out_features")}
    y = linear_2bit_ref(xp, packed.cpu(), scales.cpu(), None if zeros is None else zeros.cpu(), None, **cpu)
    y = y[..., : kw["out_features"]]
    return y if bias is None else y + bias.double().cpu()


@pytest.mark.parametrize("name,device", kernel_backends("linear_2bit"))
@pytest.mark.parametrize("N,K", LAYER_SHAPES if HAS_CUDA else [(1000, 777), (3, 3), (64, 2730)])
@pytest.mark.parametrize("M", [1, 5])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_linear_2bit_kernels_padded(name, device, N, K, M, dtype):
    (packed, scales, zeros), kw = _padded_2bit_case(N, K, device)
    bias = torch.randn(N, device=device).to(dtype)
    x = torch.randn(M, K, device=device).to(dtype)
    args = (x, packed, scales, zeros, bias, kw["q_in"], kw["signs_in"], kw["q_out"], kw["signs_out"], True, True,
            K, N)
    why = backend.why_not("linear_2bit", name, *args)
    if why:
        pytest.skip(why)
    out = poison_like(torch.empty(M, N, device=device, dtype=dtype))
    backend.implementation("linear_2bit", name)(*args, out=out)
    assert rel_err(out, _explicit_linear(x, packed, scales, zeros, bias, kw)) < LAYER_TOL[dtype]


@pytest.mark.parametrize("N,K", CPU_LAYER_SHAPES)
def test_linear_2bit_op_padded_float64(N, K):
    (packed, scales, zeros), kw = _padded_2bit_case(N, K, "cpu")
    kw = {k: (v.double() if k.startswith("q_") and v is not None else v) for k, v in kw.items()}
    bias = torch.randn(N, dtype=torch.float64)
    x = torch.randn(2, 3, K, dtype=torch.float64, requires_grad=True)
    y = quipkern.linear_2bit(x, packed, scales, zeros, bias, **kw)
    assert y.shape == (2, 3, N)
    assert rel_err(y, _explicit_linear(x.detach(), packed, scales, zeros, bias, kw)) < 1e-12
    gy = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, gy)
    xd = x.detach().requires_grad_()
    (gx_ref,) = torch.autograd.grad(_explicit_linear(xd, packed, scales, zeros, bias, kw), xd, gy)
    assert rel_err(gx, gx_ref) < 1e-12


def test_linear_padding_errors():
    (packed, scales, zeros), kw = _padded_2bit_case(1000, 777, "cpu")
    x = torch.randn(2, 777)
    with pytest.raises(ValueError, match=r"last dim of 'x' must equal in_features=777 \(the weight is padded to K=832\)"):
        quipkern.linear_2bit(torch.randn(2, 832), packed, scales, zeros, None, **kw)
    with pytest.raises(ValueError, match=r"in_features=900 must be in \[1, K=832\]"):
        quipkern.linear_2bit(x, packed, scales, zeros, None, **{**kw, "in_features": 900})
    with pytest.raises(ValueError, match=r"out_features=2000 must be in \[1, N=1008\]"):
        quipkern.linear_2bit(x, packed, scales, zeros, None, **{**kw, "out_features": 2000})
    with pytest.raises(ValueError, match=r"'bias' must have shape \(1000\)"):
        quipkern.linear_2bit(x, packed, scales, zeros, torch.randn(1008), **kw)


def _layer_cases():
    shapes = LAYER_SHAPES if HAS_CUDA else CPU_LAYER_SHAPES
    return [(N, K) for N, K in shapes]


@pytest.mark.parametrize("N,K", _layer_cases())
@pytest.mark.parametrize("kind", ["quip", "quip-notransform", "ternary-base3", "ternary-2bit"])
def test_layers_at_padded_widths(N, K, kind):
    """The layer's output equals x @ dequantize()ᵀ + b (the weight it reports, cut back
    to (N, K)): the padded part contributes exactly nothing."""
    device = "cuda" if HAS_CUDA else "cpu"
    torch.manual_seed(N + K)
    lin = nn.Linear(K, N, device=device)
    if kind.startswith("quip"):
        layer = QuipLinear.from_linear(lin, group_size=128, transform=kind == "quip")
    else:
        layer = TernaryLinear.from_linear(lin, layout=kind.split("-")[1], transform=True)
    W = layer.dequantize(torch.float64)
    assert W.shape == (N, K)
    # quantization error is that of the format, not garbage from the padding
    werr = ((W.cpu() - lin.weight.detach().double().cpu()).norm() / lin.weight.detach().double().cpu().norm()).item()
    assert werr < (0.4 if kind.startswith("quip") else 0.75), werr
    x = torch.randn(3, K, dtype=torch.float64, device=device)
    layer64 = layer.double()
    ref = F.linear(x.cpu(), W.cpu(), lin.bias.detach().double().cpu())
    assert rel_err(layer64(x), ref) < 1e-12
    dtype = torch.bfloat16 if HAS_CUDA else torch.float32
    xl = x.to(dtype)
    assert rel_err(layer.to(dtype)(xl), F.linear(xl.double().cpu(), W.cpu(), lin.bias.detach().double().cpu())) \
        < (LAYER_TOL[dtype] if dtype != torch.float32 else 1e-5)


def test_padded_layer_state_dict_round_trip():
    torch.manual_seed(0)
    lin = nn.Linear(777, 1000)
    layer = QuipLinear.from_linear(lin)
    assert (layer.padded_out_features, layer.padded_in_features) == (1008, 896)
    assert "padded=(1008, 896)" in repr(layer)
    fresh = QuipLinear(777, 1000)
    fresh.load_state_dict(layer.state_dict())
    x = torch.randn(2, 777)
    assert torch.equal(fresh(x), layer(x))


def test_padding_without_transform_quantizes_as_unpadded():
    """K = 100 is padded to 128 for the 2-bit format; the padded columns must not move
    the scales the real columns get."""
    from quipkern.quantize import absmean_ternary, rtn_2bit

    torch.manual_seed(5)
    lin = nn.Linear(100, 8)
    layer = QuipLinear.from_linear(lin, group_size=-1, transform=False)
    assert layer.padded_in_features == 128
    _, scales, _ = rtn_2bit(lin.weight.detach(), -1)
    assert torch.equal(layer.scales, scales)
    tern = TernaryLinear.from_linear(lin, layout="2bit", transform=False)
    trits, scale = absmean_ternary(lin.weight.detach())
    assert tern.padded_in_features == 128 and torch.equal(tern.scale, scale)
    assert torch.equal(tern.dequantize(torch.float64), trits.double() * scale.double()[:, None])


def test_formats_doc_width_table_matches_the_code():
    """docs/FORMATS.md's table of model widths is what width_plan says."""
    import pathlib
    import re

    doc = (pathlib.Path(__file__).parent.parent / "docs" / "FORMATS.md").read_text()
    sec = doc[doc.index("### Widths without a cheap transform"):doc.index("## Sign vectors")]
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| ([^|]+) \| ([^|]+) \|$", sec, re.M)
    assert len(rows) >= 30

    def cell(p):
        s = p.spec
        t = f"H_{s.p}" if s.m == 1 else (f"H_{s.m} ⊗ H_{s.p}" if s.kind == "hadamard" else f"R_{s.m} ⊗ H_{s.p}")
        return t + ("" if p.pad == 0 else f", pad → {p.padded} (+{100 * p.extra_fraction:.2f}%)")

    for n, out_cell, in_cell in rows:
        assert out_cell.strip() == cell(width_plan(int(n))), n
        assert in_cell.strip() == cell(width_plan(int(n), 128)), n
