"""rht / rht_: every backend against the float64 reference, on fresh random data with
poisoned outputs; batch shapes, strides, in-place, autograd, torch.compile, and the
errors bad input gets."""

import pytest
import torch

import quipkern
from quipkern import transform_spec
from quipkern.formats import random_signs
from quipkern.ops import backend
from quipkern.reference import rht as rht_ref

from .utils import HAS_CUDA, REL_TOL, kernel_backends, poison_like, rel_err

HADAMARD_ODD = {3: 12, 5: 20, 7: 28, 9: 36, 11: 44, 13: 52, 15: 60}
RANDOM_ODD = (17, 27, 43, 63)


def gpu_sizes():
    """Every width the kernels must support: all 2^k from 2 to 32768 and m·2^k for every
    m the spec uses (Hadamard m from odd parts 3..15, random m for odd parts >= 17)."""
    sizes = {1 << k for k in range(1, 16)}
    for o, m in HADAMARD_ODD.items():
        sizes |= {m << k for k in range(0, 12) if m << k <= 32768}
        sizes |= {o, 2 * o}  # too few powers of two for the Hadamard factor: random o
    for o in RANDOM_ODD:
        sizes |= {o << k for k in range(0, 12) if o << k <= 32768}
    return sorted(sizes)


CPU_SIZES = [1, 2, 8, 16, 64, 256, 1024, 12, 24, 384, 6, 3, 43 * 4, 20 * 32]
TRITON_GPU_SIZES = [2, 256, 4096, 32768, 12, 384, 3072, 14336, 11008, 6]


def make_case(n, dtype, device, rows=5, signs=True):
    spec = transform_spec(n)
    x = torch.randn(rows, n, device=device).to(dtype)
    q = spec.q_matrix(torch.float32)
    q = q.to(device) if q is not None else None
    si = random_signs(n, seed=n).to(device) if signs else None
    so = random_signs(n, seed=n + 1).to(device) if signs else None
    return x, q, si, so


def check_backend(name, device, n, dtype, transpose=False, rows=5, scale=1.5):
    x, q, si, so = make_case(n, dtype, device, rows)
    out = poison_like(x)
    res = backend.implementation("rht", name)(x, q, si, so, scale, transpose, n, n, out=out)
    assert res is out
    ref = rht_ref(x.double(), None if q is None else q.double(), si, so, scale, transpose)
    err = rel_err(out, ref)
    assert err < REL_TOL[dtype], f"{name} n={n} {dtype}: rel err {err:.3g}"


@pytest.mark.parametrize("name,device", kernel_backends("rht"))
@pytest.mark.parametrize("n", CPU_SIZES if not HAS_CUDA else gpu_sizes())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_kernel_all_sizes(name, device, n, dtype):
    if name == "triton" and device == "cuda" and n not in TRITON_GPU_SIZES:
        pytest.skip("Triton on the GPU is checked on a representative subset (compile time)")
    check_backend(name, device, n, dtype, transpose=n % 3 == 0)


@pytest.mark.parametrize("name,device", kernel_backends("rht"))
@pytest.mark.parametrize("rows", [1, 2, 7, 33, 1000])
def test_kernel_row_counts(name, device, rows):
    for n in (12, 64, 384):
        check_backend(name, device, n, torch.float32, rows=rows)


@pytest.mark.parametrize("name,device", kernel_backends("rht"))
def test_kernel_strided_and_batched(name, device):
    fn = backend.implementation("rht", name)
    n = 384
    spec = transform_spec(n)
    q = spec.q_matrix().to(device)
    big = torch.randn(6, n + 40, device=device)
    x = big[:, 8 : 8 + n]  # rows strided by n + 40, not 16-byte aligned starts
    ref = rht_ref(x.double().cpu(), q.double().cpu())
    assert rel_err(fn(x, q, None, None, 1.0, False, n, n), ref) < REL_TOL[torch.float32]
    x3 = torch.randn(4, 3, n, device=device).transpose(0, 1)  # leading dims not flattenable
    ref3 = rht_ref(x3.double().cpu(), q.double().cpu())
    assert rel_err(fn(x3, q, None, None, 1.0, False, n, n), ref3) < REL_TOL[torch.float32]


@pytest.mark.parametrize("name,device", kernel_backends("rht"))
def test_kernel_in_place(name, device):
    x, q, si, so = make_case(1536, torch.bfloat16, device)
    ref = rht_ref(x.double().cpu(), q.double().cpu(), si.cpu(), so.cpu(), 0.5, True)
    with quipkern.use_backend(name):
        quipkern.rht_(x, q, si, so, 0.5, True)
    assert rel_err(x, ref) < REL_TOL[torch.bfloat16]


# Q = I_m (q given to a backend as the int m): H_p on each chunk, the form the 2-bit
# layer's prefill path uses after folding Q into its weight (ops/linear_2bit.py)
IDENTITY_Q = [(3, 128, 5), (28, 1024, 3), (43, 256, 600), (7, 32, 9), (5, 8, 4), (20, 2, 3), (12, 2048, 2)]


@pytest.mark.parametrize("name,device", kernel_backends("rht"))
@pytest.mark.parametrize("m,p,rows", IDENTITY_Q if HAS_CUDA else [c for c in IDENTITY_Q if c[0] * c[1] <= 1024])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_identity_q(name, device, m, p, rows, dtype):
    n = m * p
    x = torch.randn(rows, n, device=device).to(dtype)
    si, so = random_signs(n, seed=n).to(device), random_signs(n, seed=n + 1).to(device)
    eye = torch.eye(m, dtype=torch.float64)
    for transpose, n_in, n_out in ((False, n, n), (True, n, n - 3), (False, n - 5, n)):
        out = poison_like(torch.empty(rows, n_out, device=device, dtype=dtype))
        res = backend.implementation("rht", name)(x[:, :n_in], m, si, so, 0.5, transpose, n, n_out, out=out)
        assert res is out
        ref = rht_ref(x[:, :n_in].double().cpu(), eye, si.cpu(), so.cpu(), 0.5, transpose, n, n_out)
        err = rel_err(out, ref)
        assert err < REL_TOL[dtype], f"{name} m={m} p={p} {dtype} {transpose} {n_in} {n_out}: rel err {err:.3g}"
    assert torch.equal(rht_ref(x.double(), m, si, so), rht_ref(x.double(), eye.to(device), si, so))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
@pytest.mark.parametrize("n,rows", [(4096, 1501), (8192, 700), (14336, 401), (11008, 333), (1536, 3001),
                                    (384, 20001)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_many_rows_are_the_few_rows_result(n, rows, dtype):
    """Prefill-sized row counts (several waves of blocks; partial last row tiles) against
    the reference; bit for bit the rows a small call gives (where the Q stage is split over
    blocks), except where the many-rows kernel's Q stage scales a Hadamard Q_m to ±1 (one
    mma fewer, so other roundings: within the tolerance of each other); the same in place;
    a padded width with a short output."""
    if "cuda" not in backend.available("rht"):
        pytest.skip("the CUDA extension is not built")
    fn = backend.implementation("rht", "cuda")
    x, q, si, so = make_case(n, dtype, "cuda", rows)
    transpose = n % 3 == 0
    out = poison_like(x)
    fn(x, q, si, so, 1.5, transpose, n, n, out=out)
    ref = rht_ref(x.double().cpu(), None if q is None else q.double().cpu(), si.cpu(), so.cpu(), 1.5, transpose)
    assert rel_err(out, ref) < REL_TOL[dtype]
    same_bits = q is None or not bool((q.abs() == q.abs()[0, 0]).all())

    def assert_matches_few_rows(many, few):
        if same_bits:
            assert torch.equal(many, few)
        else:
            assert rel_err(few, many.double()) < REL_TOL[dtype]

    assert_matches_few_rows(out[64:96], fn(x[64:96], q, si, so, 1.5, transpose, n, n))
    y = x.clone()
    with quipkern.use_backend("cuda"):
        quipkern.rht_(y, q, si, so, 1.5, transpose)
    assert torch.equal(y, out)
    # padded: x has n - 40 columns (zeros after), the output keeps n - 24
    xp = x[:, : n - 40].contiguous()
    outp = torch.full((rows, n - 24), float("nan"), dtype=dtype, device="cuda")
    fn(xp, q, si, so, 1.5, transpose, n, n - 24, out=outp)
    refp = rht_ref(torch.nn.functional.pad(xp.double().cpu(), (0, 40)),
                   None if q is None else q.double().cpu(), si.cpu(), so.cpu(), 1.5, transpose)[:, : n - 24]
    assert rel_err(outp, refp) < REL_TOL[dtype]
    assert_matches_few_rows(outp[64:96], fn(xp[64:96], q, si, so, 1.5, transpose, n, n - 24))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
@pytest.mark.parametrize("n", [384, 20 * 64, 28 * 1024, 43 * 256, 27 * 32, 60 * 512])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("rows", [1, 9, "grid"])
def test_cuda_q_stage_error_is_the_output_rounding(n, dtype, transpose, rows):
    """The tensor-core Q stage (bf16 hi + lo splits, or Q / c = ±1 exactly when Q is a
    scaled Hadamard matrix) keeps fp32-like accuracy: the result's error against the
    float64 reference is the rounding of that reference to the dtype, not more.  A Q stage
    without its lo terms (bf16 products only) errs several times more than that.  "grid":
    enough rows that the blocks cover the GPU, the many-rows kernel's Q stage."""
    if "cuda" not in backend.available("rht"):
        pytest.skip("the CUDA extension is not built")
    if rows == "grid":  # blocks of max(1, 256 // threads a row) rows (csrc/rht.cu, launch_main)
        m = quipkern.transform_spec(n).m
        per_block = max(1, 256 // (n // 32))
        rows = torch.cuda.get_device_properties(0).multi_processor_count * per_block + 7
        assert m > 1
    x, q, si, so = make_case(n, dtype, "cuda", rows)
    out = poison_like(x)
    backend.implementation("rht", "cuda")(x, q, si, so, 1.5, transpose, n, n, out=out)
    ref = rht_ref(x.double().cpu(), q.double().cpu(), si.cpu(), so.cpu(), 1.5, transpose)
    rounding = rel_err(ref.to(dtype), ref)
    assert rel_err(out, ref) < 1.2 * rounding, (rel_err(out, ref), rounding)


def test_op_float64_matches_reference_and_inverts():
    for n in (384, 4096, 43 * 8):
        x, q, si, so = make_case(n, torch.float64, "cpu")
        q = transform_spec(n).q_matrix(torch.float64)
        y = quipkern.rht(x, q, si, so, 2.0, False)
        assert rel_err(y, rht_ref(x, q, si, so, 2.0, False)) < 1e-14
        back = quipkern.rht(y, q, so, si, 0.5, True)  # the inverse: swap signs, transpose
        assert rel_err(back, x) < 1e-13


@pytest.mark.parametrize("shape", [(384,), (2, 3, 384), (0, 384), (1, 1, 1, 384)])
def test_op_batch_shapes(shape):
    x = torch.randn(shape)
    q = transform_spec(384).q_matrix()
    y = quipkern.rht(x, q)
    assert y.shape == x.shape and y.dtype == x.dtype
    if x.numel():
        assert rel_err(y, rht_ref(x.double(), q.double())) < REL_TOL[torch.float32]


def test_autograd_is_transposed_transform():
    n = 96
    q = transform_spec(n).q_matrix(torch.float64)
    si, so = random_signs(n, seed=3), random_signs(n, seed=4)
    x = torch.randn(3, n, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: quipkern.rht(t, q, si, so, 1.5, False), (x,))
    assert torch.autograd.gradcheck(lambda t: quipkern.rht(t, q, si, so, 1.5, True), (x,))


def test_opcheck():
    n = 384
    q = transform_spec(n).q_matrix()
    si = random_signs(n, seed=1)
    x = torch.randn(4, n, requires_grad=True)
    torch.library.opcheck(torch.ops.quipkern.rht.default, (x, q, si, None, 1.0, False))
    torch.library.opcheck(torch.ops.quipkern.rht_.default, (torch.randn(4, n), q, si, None, 1.0, True))


def test_torch_compile_fullgraph():
    n = 384
    q = transform_spec(n).q_matrix()
    si = random_signs(n, seed=1)

    def f(x):
        return quipkern.rht(x * 2, q, si, None, 1.0, False).relu()

    x = torch.randn(3, n)
    out = torch.compile(f, fullgraph=True)(x)
    assert rel_err(out, f(x)) < 1e-6


def test_dispatch_rule_on_cpu():
    x = torch.randn(2, 64)
    assert backend.chosen("rht", "cpu", x, None, None, None, 1.0, False) == "reference"
    with quipkern.use_backend("reference"):
        quipkern.rht(x)
    with pytest.raises(ValueError, match="unknown backend"):
        with quipkern.use_backend("fast"):
            pass
    if "cuda" not in backend.available("rht"):
        with pytest.raises(RuntimeError, match="backend 'cuda' was forced but has no implementation"):
            with quipkern.use_backend("cuda"):
                quipkern.rht(x)


def test_forced_backend_never_falls_back():
    x = torch.randn(2, 64, dtype=torch.float64, device="cuda" if HAS_CUDA else "cpu")
    if "triton" in backend.available("rht"):
        with pytest.raises(ValueError, match="forced backend 'triton' cannot run this call: dtype torch.float64"):
            with quipkern.use_backend("triton"):
                quipkern.rht(x)


BAD = [
    (lambda: quipkern.rht(torch.randint(0, 3, (2, 64))), TypeError, r"'x' must have dtype .*got tensor of shape \(2, 64\), dtype torch.int64"),
    (lambda: quipkern.rht(torch.randn(2, 96)), ValueError, r"96 is not m·2\^k for m = 1"),
    (lambda: quipkern.rht(torch.randn(2, 100), torch.eye(12)), ValueError, r"100 is not m·2\^k for m = 12"),
    (lambda: quipkern.rht(torch.randn(2, 0)), ValueError, "non-empty last dimension"),
    (lambda: quipkern.rht(torch.randn(2, 48), torch.eye(12, 3)), ValueError, "'q' must be square"),
    (lambda: quipkern.rht(torch.randn(2, 48), torch.eye(12).half()), TypeError, "'q' must have dtype"),
    (lambda: quipkern.rht(torch.randn(2, 48), torch.eye(12, device="meta")), ValueError, "'q' must be on device cpu"),
    (lambda: quipkern.rht(torch.randn(2, 64), None, torch.zeros(7, dtype=torch.uint8)), ValueError, r"'signs_in' must have shape \(8\)"),
    (lambda: quipkern.rht(torch.randn(2, 64), None, None, torch.zeros(8)), TypeError, "'signs_out' must have dtype torch.uint8"),
    (lambda: quipkern.rht(torch.randn(64, 2).T), ValueError, "contiguous last dimension"),
]


@pytest.mark.parametrize("call,exc,msg", BAD)
def test_bad_inputs(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_noncontiguous_q_is_refused():
    q = torch.randn(12, 12).t()
    with pytest.raises(ValueError, match="'q' must be contiguous"):
        quipkern.rht(torch.randn(2, 48), q)
