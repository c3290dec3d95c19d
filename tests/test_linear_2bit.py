"""linear_2bit: the op and its reference against a fully dense float64 computation;
autograd, opcheck, torch.compile, and bad inputs."""

import importlib

import pytest
import torch

import quipkern
from quipkern.reference import linear_2bit as linear_2bit_ref

from quipkern.ops import backend

from quipkern.formats import random_signs, unpack_signs

from .layer_cases import dense_forward, transforms, two_bit_case
from .utils import HAS_CUDA, LAYER_TOL, REL_TOL, kernel_backends, poison_like, rel_err

SHAPES = [(64, 64), (96, 384), (384, 128), (43 * 4, 256), (12, 1536)]


@pytest.mark.parametrize("N,K", SHAPES)
@pytest.mark.parametrize("g", [64, 128, "row"])
@pytest.mark.parametrize("asym", [False, True])
@pytest.mark.parametrize("tin,tout", [(False, False), (True, True), (True, False), (False, True)])
def test_reference_matches_dense(N, K, g, asym, tin, tout):
    g = K if g == "row" or K % g else g
    (packed, scales, zeros), W = two_bit_case(N, K, g, asym)
    bias = torch.randn(N, dtype=torch.float64)
    kw = transforms(N, K, tin, tout, q_dtype=torch.float64)
    for shape in [(3, K), (2, 5, K), (K,)]:
        x = torch.randn(shape, dtype=torch.float64)
        y = quipkern.linear_2bit(x, packed, scales, zeros, bias, **kw)
        assert y.shape == (*shape[:-1], N)
        ref = dense_forward(x, W, bias, kw)
        assert rel_err(y, ref) < 1e-12
        assert torch.equal(y, linear_2bit_ref(x, packed, scales, zeros, bias, **kw))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_reference_low_precision(dtype):
    (packed, scales, zeros), W = two_bit_case(384, 384, 128, False)
    kw = transforms(384, 384, True, True)
    x = torch.randn(7, 384).to(dtype)
    y = quipkern.linear_2bit(x, packed, scales, zeros, None, **kw)
    assert y.dtype == dtype
    assert rel_err(y, dense_forward(x, W, None, kw)) < REL_TOL[dtype]


def test_backward_matches_autograd_of_dense():
    N, K = 96, 384
    (packed, scales, zeros), W = two_bit_case(N, K, 64, True)
    x = torch.randn(4, K, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(N, dtype=torch.float64, requires_grad=True)
    kw = transforms(N, K, True, True, q_dtype=torch.float64)
    y = quipkern.linear_2bit(x, packed, scales, zeros, bias, **kw)
    gy = torch.randn_like(y)
    gx, gb = torch.autograd.grad(y, (x, bias), gy)
    x2, b2 = x.detach().requires_grad_(), bias.detach().requires_grad_()
    gx_ref, gb_ref = torch.autograd.grad(dense_forward(x2, W, b2, kw), (x2, b2), gy)
    assert rel_err(gx, gx_ref) < 1e-12 and rel_err(gb, gb_ref) < 1e-12
    assert torch.autograd.gradcheck(
        lambda t: quipkern.linear_2bit(t, packed, scales, zeros, None, **kw), (x[:2].detach().requires_grad_(),)
    )


def test_opcheck():
    N, K = 96, 128
    (packed, scales, zeros), _ = two_bit_case(N, K, 64, True)
    kw = transforms(N, K, True, True)
    x = torch.randn(3, K, requires_grad=True)
    bias = torch.randn(N, requires_grad=True)
    args = (x, packed, scales, zeros, bias, kw["q_in"], kw["signs_in"], kw["q_out"], kw["signs_out"], True, True)
    torch.library.opcheck(torch.ops.quipkern.linear_2bit.default, args)
    torch.library.opcheck(torch.ops.quipkern.dequantize_2bit.default, (packed, scales, zeros, torch.float32))


def test_torch_compile_fullgraph():
    N, K = 96, 384
    (packed, scales, zeros), _ = two_bit_case(N, K, 128, False)
    kw = transforms(N, K, True, True)

    def f(x):
        return torch.nn.functional.gelu(quipkern.linear_2bit(x, packed, scales, zeros, None, **kw))

    x = torch.randn(5, K)
    assert rel_err(torch.compile(f, fullgraph=True)(x), f(x)) < 1e-6


def _args(N=96, K=128, **over):
    (packed, scales, zeros), _ = two_bit_case(N, K, 64, False)
    a = dict(x=torch.randn(2, K), packed=packed, scales=scales, zeros=None, bias=None)
    a.update(over)
    return a


def _misaligned(t):
    buf = torch.zeros(t.numel() + 1, dtype=t.dtype, device=t.device)
    v = buf[1:].view(t.shape)
    v.copy_(t)
    return v


BAD = [
    (dict(x=torch.randn(2, 100)), ValueError, r"last dim of 'x' must equal in_features=128"),
    (dict(x=torch.randn(2, 128, dtype=torch.float64).to(torch.int32)), TypeError, "'x' must have dtype"),
    (dict(bias=torch.randn(95)), ValueError, r"'bias' must have shape \(96\)"),
    (dict(bias=torch.randn(96).half()), TypeError, "'bias' must have dtype"),
    (dict(packed=torch.zeros(96, 8, dtype=torch.int16)), TypeError, "'packed' must have dtype torch.int32"),
    (dict(packed=torch.zeros(16, 96, dtype=torch.int32).T), ValueError, "'packed' must be contiguous"),
    (dict(packed="misaligned"), ValueError, "'packed' must start at a 16-byte aligned address"),
    (dict(scales=torch.ones(96, 2)), TypeError, "'scales' must have dtype torch.float16"),
    (dict(scales=torch.ones(96, 3, dtype=torch.float16)), ValueError, "'scales' must have shape"),
    (dict(zeros=torch.ones(96, 1, dtype=torch.float16)), ValueError, r"'zeros' must have shape \(96, 2\)"),
    (dict(q_in=torch.eye(4)), ValueError, "'q_in'/'signs_in' were given but 'transform_in' is False"),
    (dict(transform_out=True, q_out=torch.eye(5)), ValueError, r"out_features N = 96 is not m·2\^k for m = 5"),
    (dict(transform_in=True, signs_in=torch.zeros(15, dtype=torch.uint8)), ValueError, r"'signs_in' must have shape \(16\)"),
    (dict(x=torch.randn(2, 128, device="meta")), ValueError, "'packed' must be on device meta"),
]


@pytest.mark.parametrize("over,exc,msg", BAD)
def test_bad_inputs(over, exc, msg):
    a = _args(**{k: v for k, v in over.items() if k in ("x", "packed", "scales", "zeros", "bias")})
    if over.get("packed") == "misaligned":
        a["packed"] = _misaligned(_args()["packed"])
    kw = {k: v for k, v in over.items() if k not in a}
    with pytest.raises(exc, match=msg):
        quipkern.linear_2bit(**a, **kw)


# (N, K, group size, asymmetric, transform_in, transform_out)
CPU_CASES = [(96, 384, 64, False, True, True), (64, 128, 128, True, False, False), (43 * 2, 256, "row", False, True, True),
             (40, 192, "row", True, True, False)]
GPU_CASES = CPU_CASES + [(4096, 4096, 128, False, True, True), (11008, 4096, 128, True, True, True),
                         (4096, 11008, 64, False, True, True), (14336, 4096, "row", False, True, True),
                         (1536, 384, 128, False, True, True), (8192, 1024, 64, True, False, True)]


@pytest.mark.parametrize("name,device", kernel_backends("linear_2bit"))
@pytest.mark.parametrize("M", [1, 2, 3, 7, 16, 33, 256])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", GPU_CASES if HAS_CUDA else CPU_CASES, ids=str)
def test_kernels_against_float64_reference(name, device, M, dtype, case):
    N, K, g, asym, tin, tout = case
    g = K if g == "row" else g
    (packed, scales, zeros), _ = two_bit_case(N, K, g, asym, device)
    kw = transforms(N, K, tin, tout, device)
    bias = torch.randn(N, device=device).to(dtype)
    x = torch.randn(M, K, device=device).to(dtype)
    args = (x, packed, scales, zeros, bias, kw.get("q_in"), kw.get("signs_in"), kw.get("q_out"),
            kw.get("signs_out"), tin, tout)
    why = backend.why_not("linear_2bit", name, *args)
    if why:
        pytest.skip(why)
    out = poison_like(torch.empty(M, N, device=device, dtype=dtype))
    res = backend.implementation("linear_2bit", name)(*args, out=out)
    assert res is out
    # the float64 reference runs on the same device (fast on a GPU)
    ref = linear_2bit_ref(x.double(), packed, scales, zeros, bias.double(), kw.get("q_in"), kw.get("signs_in"),
                          kw.get("q_out"), kw.get("signs_out"), tin, tout)
    err = rel_err(out, ref)
    assert err < LAYER_TOL[dtype], f"{name} M={M} {case} {dtype}: rel err {err:.3g}"


@pytest.mark.parametrize("name,device", [b for b in kernel_backends("dequantize_2bit")])
@pytest.mark.parametrize("g,asym", [(64, False), (128, True), ("row", False)])
def test_dequantize_kernels(name, device, g, asym):
    # on the GPU: a partial row strip (K/16 < 256 words) and a second, partial one (K/16 = 272)
    for N, K in ([(300, 1024), (37, 4352)] if HAS_CUDA else [(40, 256)]):
        gs = K if g == "row" else g
        (packed, scales, zeros), W = two_bit_case(N, K, gs, asym, device)
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            out = poison_like(torch.empty(N, K, device=device, dtype=dtype))
            backend.implementation("dequantize_2bit", name)(packed, scales, zeros, dtype, out=out)
            assert rel_err(out, W) < REL_TOL[dtype], (N, K, dtype)


# (N, K, group size, m_out, m_in): Q factors folded into the dequantized weight
FOLD_CASES_CPU = [(96, 256, 64, 3, None), (64, 384, 128, None, 3), (40, 640, "row", None, 5), (86, 128, 64, 43, None)]
FOLD_CASES_GPU = FOLD_CASES_CPU + [(11008, 4096, 128, 43, None), (4096, 11008, 128, None, 43),
                                   (14336, 1024, "row", 28, None), (1024, 28672, 64, None, 28),
                                   (1536, 384, 128, 12, None), (64, 384, 128, None, 12), (96, 1536, 64, None, 3),
                                   # CUDA blocks that walk several tiles (m <= 16 and m > 16)
                                   (7168, 8192, 128, 7, None), (4096, 28672, 64, None, 28),
                                   # chunks of 48 columns: a 64-column run would cross groups (CUDA refuses)
                                   (64, 192, 64, None, 4)]


@pytest.mark.parametrize("name,device", [b for b in kernel_backends("dequantize_2bit")])
@pytest.mark.parametrize("case", FOLD_CASES_GPU if HAS_CUDA else FOLD_CASES_CPU, ids=str)
@pytest.mark.parametrize("asym", [False, True])
def test_dequantize_folded_kernels(name, device, case, asym):
    from quipkern.reference.rht import fold_q
    N, K, g, mo, mi = case
    (packed, scales, zeros), W = two_bit_case(N, K, K if g == "row" else g, asym, device)
    rnd = lambda m: None if m is None else torch.linalg.qr(torch.randn(m, m, dtype=torch.float64))[0].contiguous()  # noqa: E731
    q_out, q_in = rnd(mo), rnd(mi)
    ref = fold_q(W.double().cpu(), q_out, q_in)
    q_out, q_in = (None if q is None else q.to(device) for q in (q_out, q_in))
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        args = (packed, scales, zeros, dtype, q_out, q_in)
        why = backend.why_not("dequantize_2bit", name, *args)
        if why:  # Triton folds either factor into every dtype; CUDA m <= 32 into float16 / bfloat16,
            # columns in chunks of whole words whose 64-column runs keep to one scale group
            P, gs = (K // mi, K if g == "row" else g) if mi else (0, 1)
            assert name == "cuda" and (dtype == torch.float32 or max(mo or 0, mi or 0) > 32
                                       or P % 16 or (P % 64 and gs % P)), why
            continue
        out = poison_like(torch.empty(N, K, device=device, dtype=dtype))
        backend.implementation("dequantize_2bit", name)(*args, out=out)
        assert rel_err(out, ref) < REL_TOL[dtype], (case, dtype)


@pytest.mark.parametrize("K", [256, 384, 64, 5 * 64])
def test_fold_hadamard_reference_is_the_dense_transform(K):
    """fold_q (Q_in) then fold_hadamard is W · T_K · S_in, T_K the dense transform of width K."""
    from quipkern.reference.rht import fold_hadamard, fold_q, order
    from .layer_cases import dense_transform
    kw = transforms(24, K, True, False, q_dtype=torch.float64)
    m = order(kw["q_in"])
    W = torch.randn(24, K, dtype=torch.float64)
    got = fold_hadamard(fold_q(W, None, kw["q_in"]), m, kw["signs_in"])
    want = (W @ dense_transform(K)) * unpack_signs(kw["signs_in"], K, torch.float64)
    assert rel_err(got, want) < 1e-12


# (N, K, group size): the whole input transform folded (hadamard_in, K = 2^k; CUDA: K >= 256)
HADAMARD_CASES_CPU = [(96, 256, 64), (40, 512, "row"), (33, 1024, 128), (24, 64, 64)]
HADAMARD_CASES_GPU = HADAMARD_CASES_CPU + [(8192, 8192, 128), (4096, 4096, 64), (300, 32768, 128),
                                           (37, 2048, "row"), (1000, 16384, 64)]


@pytest.mark.parametrize("name,device", [b for b in kernel_backends("dequantize_2bit")])
@pytest.mark.parametrize("case", HADAMARD_CASES_GPU if HAS_CUDA else HADAMARD_CASES_CPU, ids=str)
@pytest.mark.parametrize("asym", [False, True])
@pytest.mark.parametrize("with_signs", [True, False])
def test_dequantize_hadamard_kernels(name, device, case, asym, with_signs):
    from quipkern.reference.rht import fold_hadamard
    N, K, g = case
    (packed, scales, zeros), W = two_bit_case(N, K, K if g == "row" else g, asym, device)
    signs = random_signs(K, seed=K + 1) if with_signs else None
    ref = fold_hadamard(W.double().cpu(), 1, signs)
    signs = None if signs is None else signs.to(device)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        args = (packed, scales, zeros, dtype, None, None, True, signs)
        why = backend.why_not("dequantize_2bit", name, *args)
        if why:  # CUDA folds it into float16 / bfloat16 for 256 <= K <= 32768
            assert name == "cuda" and (dtype == torch.float32 or K < 256), why
            continue
        out = poison_like(torch.empty(N, K, device=device, dtype=dtype))
        res = backend.implementation("dequantize_2bit", name)(*args, out=out)
        assert res is out
        assert rel_err(out, ref) < REL_TOL[dtype], (case, dtype)
    # through the op (its dispatch) and the reference, in float64
    got = quipkern.dequantize_2bit(packed.cpu(), scales.cpu(), None if zeros is None else zeros.cpu(),
                                   torch.float64, None, None, True, None if signs is None else signs.cpu())
    assert rel_err(got, ref) < 1e-12


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
def test_dequantize_hadamard_cuda_refuses_what_it_cannot_fold():
    if "cuda" not in backend.available("dequantize_2bit"):
        pytest.skip("the CUDA extension is not built")
    (packed, scales, _), _ = two_bit_case(16, 384, 128, False, "cuda")
    q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0].cuda()
    assert "alone" in backend.why_not("dequantize_2bit", "cuda", packed, scales, None, torch.bfloat16, None, q,
                                      True, None)
    (packed, scales, _), _ = two_bit_case(16, 128, 64, False, "cuda")
    assert "256 <= K" in backend.why_not("dequantize_2bit", "cuda", packed, scales, None, torch.bfloat16, None,
                                         None, True, None)
    # called anyway, the kernel's launcher refuses too (a clear error, not a wrong answer)
    out = torch.empty(16, 128, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="_dequantize_2bit_cuda"):
        torch.ops.quipkern._dequantize_2bit_cuda(packed, scales, None, out, None, False, True, None)


def test_dequantize_hadamard_is_checked():
    (packed, scales, _), _ = two_bit_case(16, 384, 128, False)
    with pytest.raises(ValueError, match="hadamard_in needs K / m = 384 / 1 = 384 to be a power of two"):
        quipkern.dequantize_2bit(packed, scales, None, torch.float32, None, None, True)
    (packed, scales, _), _ = two_bit_case(16, 256, 128, False)
    with pytest.raises(ValueError, match="'signs_in' was given but 'hadamard_in' is False"):
        quipkern.dequantize_2bit(packed, scales, None, torch.float32, None, None, False, random_signs(256))
    with pytest.raises(ValueError, match="signs_in"):
        quipkern.dequantize_2bit(packed, scales, None, torch.float32, None, None, True, random_signs(128))


def test_dequantize_fold_is_checked():
    (packed, scales, zeros), _ = two_bit_case(96, 256, 64, False)
    with pytest.raises(ValueError, match="q_out.*m dividing N = 96"):
        quipkern.dequantize_2bit(packed, scales, None, torch.float32, torch.eye(5))
    with pytest.raises(ValueError, match="q_in.*must be square"):
        quipkern.dequantize_2bit(packed, scales, None, torch.float32, None, torch.ones(4, 2))
    with pytest.raises(TypeError, match="q_in"):
        quipkern.dequantize_2bit(packed, scales, None, torch.float32, None, torch.eye(4, dtype=torch.float16))


def _prefill_case(N, K, packed, scales, zeros, tin, tout, M, dtype, device):
    """Transforms, the op's arguments (random x and bias) and the float64 reference."""
    kw = transforms(N, K, tin, tout, device)
    bias = torch.randn(N, device=device).to(dtype)
    x = torch.randn(M, K, device=device).to(dtype)
    args = (x, packed, scales, zeros, bias, kw.get("q_in"), kw.get("signs_in"), kw.get("q_out"),
            kw.get("signs_out"), tin, tout)
    return kw, args, linear_2bit_ref(x.double(), packed, scales, zeros, bias.double(), *args[5:])


def _check_prefill(name, args, ref, N, dtype, what):
    """Backend `name` writes all of a poisoned out, within the layer tolerance."""
    x = args[0]
    out = poison_like(torch.empty(x.shape[0], N, device=x.device, dtype=dtype))
    with quipkern.use_backend(name):
        res = backend.implementation("linear_2bit", name)(*args, out=out)
    assert res is out
    err = rel_err(out, ref)
    assert err < LAYER_TOL[dtype], f"{what}: rel err {err:.3g}"


# The prefill path folds one transform's Q into the dequantized weight (ops/linear_2bit.py):
# (N, K, group size, asymmetric, transform_in, transform_out, the side it must fold)
PREFILL_FOLD_CPU = [(96, 384, 64, False, True, True, "in"), (86, 256, "row", True, True, True, "out"),
                    (96, 128, 128, False, False, True, "out"), (64, 640, 64, True, True, False, "in"),
                    (64, 64, 64, False, True, True, None)]
PREFILL_FOLD_GPU = PREFILL_FOLD_CPU + [(11008, 4096, 128, False, True, True, "out"),
                                       (4096, 11008, 64, True, True, True, "in"),
                                       (14336, 4096, "row", False, True, True, "out"),
                                       (1536, 384, 128, False, True, True, "out")]


@pytest.mark.parametrize("name,device", [b for b in kernel_backends("linear_2bit") if b[0] == "triton"])
@pytest.mark.parametrize("M", [17, 40])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", PREFILL_FOLD_GPU if HAS_CUDA else PREFILL_FOLD_CPU, ids=str)
def test_prefill_folds_q_into_the_weight(name, device, M, dtype, case, monkeypatch):
    op = importlib.import_module("quipkern.ops.linear_2bit")  # the module (the package exports the op)
    N, K, g, asym, tin, tout, side = case
    (packed, scales, zeros), _ = two_bit_case(N, K, K if g == "row" else g, asym, device)
    kw, args, ref = _prefill_case(N, K, packed, scales, zeros, tin, tout, M, dtype, device)
    monkeypatch.setattr(op, "FOLD_SIDES", ("in", "out"))  # every fold the kernels can do
    monkeypatch.setattr(op, "FOLD_MAX_M", 64)
    for fold_min_m, expect in ((M, side), (M + 1, None)):  # folded, then not
        monkeypatch.setattr(op, "FOLD_MIN_M", fold_min_m)
        assert op.fold_side(M, N, K, kw.get("q_in"), kw.get("q_out"), tin, tout) == expect
        _check_prefill(name, args, ref, N, dtype, f"{case} M={M} {dtype} fold_min_m={fold_min_m}")


# (N, K, group size, asymmetric, transform_out): the prefill path folds all of T_in (K = 2^k)
PREFILL_HADAMARD_CPU = [(96, 256, 64, False, True), (40, 512, "row", True, False), (384, 256, 128, False, True)]
PREFILL_HADAMARD_GPU = PREFILL_HADAMARD_CPU + [(4096, 4096, 128, False, True), (1536, 2048, 64, True, True)]


@pytest.mark.parametrize("name,device", [b for b in kernel_backends("linear_2bit") if b[0] == "triton"])
@pytest.mark.parametrize("M", [17, 40])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", PREFILL_HADAMARD_GPU if HAS_CUDA else PREFILL_HADAMARD_CPU, ids=str)
def test_prefill_folds_hadamard_in(name, device, M, dtype, case, monkeypatch):
    op = importlib.import_module("quipkern.ops.linear_2bit")
    N, K, g, asym, tout = case
    (packed, scales, zeros), _ = two_bit_case(N, K, K if g == "row" else g, asym, device)
    kw, args, ref = _prefill_case(N, K, packed, scales, zeros, True, tout, M, dtype, device)
    rule = op.fold_side
    monkeypatch.setattr(op, "fold_side", lambda *a: rule(*a[:7], True))  # as if the CUDA kernel were here
    monkeypatch.setattr(op, "FOLD_MIN_M", 10**9)  # no Q fold
    for per_row, expect in ((-(-N // M), "hadamard_in"), ((N - 1) // M, None)):  # M · per_row >= N, then not
        monkeypatch.setattr(op, "FOLD_HADAMARD_N_PER_ROW", per_row)
        assert op.fold_side(M, N, K, kw.get("q_in"), kw.get("q_out"), True, tout) == expect
        _check_prefill(name, args, ref, N, dtype, f"{case} M={M} {dtype} per_row={per_row}")


def test_prefill_fold_rule_defaults():
    """By default the prefill path folds a factor of order 2..32 from FOLD_MIN_M rows (the
    wider side's), else all of an m = 1 input transform where the weight has at most
    FOLD_HADAMARD_N_PER_ROW rows a row of x (ops/linear_2bit.py says why)."""
    op = importlib.import_module("quipkern.ops.linear_2bit")
    q = lambda m: torch.eye(m)  # noqa: E731
    big = max(op.FOLD_MIN_M, op.DEQUANT_GEMM_MIN_M)
    assert op.fold_side(big, 28672, 8192, None, q(7), True, True) == "out"
    assert op.fold_side(big - 1, 28672, 8192, None, q(7), False, True) is None
    assert op.fold_side(big, 8192, 28672, q(28), None, True, True) == "in"    # the input side's Q
    assert op.fold_side(big, 28672, 28672, q(28), q(28), True, True) == "out"  # both: the wider, else out
    assert op.fold_side(big, 11008, 4096, None, q(43), False, True) is None   # m > 32: Triton's fold
    assert op.fold_side(2 * 10**4, 11008, 4096, None, q(43), True, True) == "hadamard_in"  # so T_in (m = 1) instead
    assert op.fold_side(big, 14336, 11008, q(43), q(7), True, True) == "out"
    assert op.fold_side(big, 14336, 4096, None, q(7), False, False) is None   # no transform
    assert op.fold_side(2 * 10**4, 14336, 4096, None, q(7), True, False) == "hadamard_in"  # no output transform
    # the whole of T_in where no Q is folded, T_in has m = 1, the weight has at most
    # FOLD_HADAMARD_N_PER_ROW rows per row of x, and the CUDA kernel is there
    r = op.FOLD_HADAMARD_N_PER_ROW
    hb = max(-(-8192 // r), op.DEQUANT_GEMM_MIN_M)
    assert op.fold_side(hb, 8192, 8192, None, None, True, True) == "hadamard_in"
    assert op.fold_side(hb - 1, 8192, 8192, None, None, True, True) is None
    assert op.fold_side(hb, 8192, 8192, None, None, True, True, cuda_fold=False) is None
    assert op.fold_side(hb, 8192, 8192, None, None, False, True) is None       # no input transform
    assert op.fold_side(hb, 4096, 11008, q(43), None, True, True) is None      # m > 1
    assert op.fold_side(hb, 8192, 4096, None, None, True, True) == "hadamard_in"
    assert op.fold_side(big, 28672, 8192, None, q(7), True, True) == "out"     # the Q fold first
    assert op.fold_side(big - 1, 28672, 8192, None, q(7), True, True) is None  # 28672 rows: too many
    assert op.fold_side(-(-28672 // r), 28672, 8192, None, None, True, True) == "hadamard_in"
    assert op.fold_side(10**4, 64, 128, None, None, True, True) is None        # K < 256


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
@pytest.mark.parametrize("asym", [False, True])
def test_cuda_gemv_takes_misaligned_group_scales(asym):
    """The decode kernel copies group scales as 16-byte pieces: a view that starts off that
    boundary is copied by the op, with the same result."""
    from quipkern import _ext
    if not _ext.AVAILABLE:
        pytest.skip("the CUDA extension is not built")
    N, K, M = 80, 512, 3
    (packed, scales, zeros), _ = two_bit_case(N, K, 64, asym, "cuda")
    x = torch.randn(M, K, device="cuda").half()
    ref = linear_2bit_ref(x.double(), packed, scales, zeros)
    s_mis = _misaligned(scales)
    z_mis = _misaligned(zeros) if asym else None
    assert s_mis.data_ptr() % 16
    out = backend.implementation("linear_2bit", "cuda")(x, packed, s_mis, z_mis, None, None, None, None, None,
                                                         False, False)
    assert rel_err(out, ref) < LAYER_TOL[torch.float16]


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
@pytest.mark.parametrize("fixed_x", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("M,N,K,g,asym", [(1, 8200, 8192, 128, False), (1, 77, 16384, 64, True), (3, 300, 1024, "row", False),
                                          (8, 4099, 2048, "row", True), (5, 8192, 256, 128, True), (2, 33, 64, 64, False),
                                          (4, 1000, 4096, 128, True), (4, 8200, 1024, "row", False),
                                          # per-row, more row tiles than the GPU holds at once:
                                          # persistent blocks below two waves (at K = 512 six of
                                          # the eight warps have no chunk), one block a tile above
                                          (1, 20011, 512, "row", True), (3, 16001, 1024, "row", False),
                                          (8, 13001, 4096, "row", True), (1, 14336, 4096, "row", False),
                                          (2, 40001, 512, "row", False)])
def test_cuda_gemv_fixed_point_x(fixed_x, dtype, M, N, K, g, asym):
    """The decode kernel at M <= 8 with x in shared memory, in both modes (15-bit fixed-point x
    on int8 tensor cores: paired planes at M <= 4, split at 5..8; and x as it is): against float64, rows of very different ranges
    (the fixed point is per row), an all-zero row, and a row with a NaN or an infinity, whose
    outputs must be NaN (and only that row's).  Per-row N of 13001-20011 runs persistent
    blocks that take several row tiles each (csrc/linear_2bit.cu)."""
    from quipkern import _ext
    if not _ext.AVAILABLE:
        pytest.skip("the CUDA extension is not built")
    gs = K if g == "row" else g
    (packed, scales, zeros), _ = two_bit_case(N, K, gs, asym, "cuda")
    x = torch.randn(M, K, device="cuda")
    x[0, : K // 2] *= 1e-3  # one row mixes small and large elements
    if M > 1:
        x[1] *= 1e2 if dtype == torch.float16 else 1e30
    if M > 2:
        x[2] = 0
    x = x.to(dtype)
    bias = torch.randn(N, device="cuda").to(dtype)
    out = poison_like(torch.empty(M, N, device="cuda", dtype=dtype))
    torch.ops.quipkern._linear_2bit_gemv_cuda(x, packed, scales, zeros, bias, out, False, fixed_x)
    ref = linear_2bit_ref(x.double(), packed, scales, zeros, bias.double())
    for b in range(M):  # row by row: the rows' magnitudes differ by up to 1e30
        err = rel_err(out[b], ref[b])
        assert err < LAYER_TOL[dtype], f"row {b}: rel err {err:.3g}"
    if M > 3:
        bad = x.clone()
        bad[3, K // 3] = float("nan")
        bad[M - 1, 5] = float("inf")
        out2 = poison_like(torch.empty(M, N, device="cuda", dtype=dtype))
        torch.ops.quipkern._linear_2bit_gemv_cuda(bad, packed, scales, zeros, bias, out2, False, fixed_x)
        assert torch.isnan(out2[3]).all() and not torch.isfinite(out2[M - 1]).any()
        assert torch.equal(out2[:3], out[:3])
