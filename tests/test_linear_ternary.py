"""linear_ternary: both layouts against a dense float64 computation; autograd, opcheck,
torch.compile, and bad inputs."""

import pytest
import torch

import quipkern

from quipkern.ops import backend
from quipkern.reference import linear_ternary as linear_ternary_ref

from .layer_cases import dense_forward, ternary_case, transforms
from .utils import HAS_CUDA, LAYER_TOL, REL_TOL, kernel_backends, poison_like, rel_err


@pytest.mark.parametrize("layout", ["2bit", "base3"])
@pytest.mark.parametrize("per_row", [True, False])
@pytest.mark.parametrize("N,K", [(64, 64), (96, 384), (384, 128), (12, 1536)])
@pytest.mark.parametrize("tin,tout", [(False, False), (True, True)])
def test_matches_dense(layout, per_row, N, K, tin, tout):
    (packed, scale), W = ternary_case(N, K, layout, per_row)
    kw = transforms(N, K, tin, tout, q_dtype=torch.float64)
    bias = torch.randn(N, dtype=torch.float64)
    x = torch.randn(2, 3, K, dtype=torch.float64)
    y = quipkern.linear_ternary(x, packed, scale, bias, **kw)
    assert y.shape == (2, 3, N)
    assert rel_err(y, dense_forward(x, W, bias, kw)) < 1e-12


def test_base3_any_width():
    (packed, scale), W = ternary_case(10, 100, "base3", True)
    x = torch.randn(3, 100).bfloat16()
    y = quipkern.linear_ternary(x, packed, scale)
    assert rel_err(y, dense_forward(x, W, None, transforms(10, 100, False, False))) < REL_TOL[torch.bfloat16]


def test_backward_and_opcheck():
    N, K = 96, 384
    (packed, scale), W = ternary_case(N, K, "base3", True)
    kw = transforms(N, K, True, True, q_dtype=torch.float64)
    x = torch.randn(3, K, dtype=torch.float64, requires_grad=True)
    y = quipkern.linear_ternary(x, packed, scale, None, **kw)
    gy = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, (x,), gy)
    x2 = x.detach().requires_grad_()
    (gx_ref,) = torch.autograd.grad(dense_forward(x2, W, None, kw), (x2,), gy)
    assert rel_err(gx, gx_ref) < 1e-12
    kw32 = transforms(N, K, True, True)
    args = (torch.randn(2, K, requires_grad=True), packed, scale, None, kw32["q_in"], kw32["signs_in"],
            kw32["q_out"], kw32["signs_out"], True, True)
    torch.library.opcheck(torch.ops.quipkern.linear_ternary.default, args)
    torch.library.opcheck(torch.ops.quipkern.dequantize_ternary.default, (packed, scale, K, torch.float32))


def test_torch_compile_fullgraph():
    (packed, scale), _ = ternary_case(64, 128, "2bit", False)

    def f(x):
        return quipkern.linear_ternary(x, packed, scale).sum(-1)

    x = torch.randn(4, 128)
    assert rel_err(torch.compile(f, fullgraph=True)(x), f(x)) < 1e-6


def test_bad_inputs():
    (packed, scale), _ = ternary_case(64, 128, "base3", True)
    x = torch.randn(2, 128)
    with pytest.raises(ValueError, match=r"ternary-base3\) must have shape \(N, 16·ceil\(K/80\)\) = \(N, 48\) for in_features K=200; got shape \(64, 32\)"):
        quipkern.linear_ternary(torch.randn(2, 200), packed, scale)
    with pytest.raises(ValueError, match=r"'scale' must have shape \(64,\) or \(1,\)"):
        quipkern.linear_ternary(x, packed, torch.ones(3))
    with pytest.raises(TypeError, match="'packed' must have dtype torch.int32 or torch.uint8"):
        quipkern.linear_ternary(x, packed.to(torch.int16), scale)
    (p2, s2), _ = ternary_case(64, 128, "2bit", True)
    with pytest.raises(ValueError, match=r"last dim of 'x' must equal in_features=128; got shape \(2, 192\)"):
        quipkern.linear_ternary(torch.randn(2, 192), p2, s2)
    with pytest.raises(ValueError, match=r"ternary-2bit\) must have shape \(N, K/16\)"):
        quipkern.linear_ternary(torch.randn(2, 100), p2, s2, K=100)


@pytest.mark.parametrize("name,device", kernel_backends("linear_ternary"))
@pytest.mark.parametrize("M", [1, 3, 16, 33])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("per_row,tin,tout", [(True, True, True), (False, False, False)])
def test_kernels_ternary_2bit(name, device, M, dtype, per_row, tin, tout):
    N, K = (4096, 4096) if HAS_CUDA else (96, 256)
    why = _check_kernel(name, device, M, N, K, N, K, "2bit", dtype, per_row, tin, tout)
    if why:
        pytest.skip(why)


def _check_kernel(name, device, M, N, K, Np, Kp, layout, dtype, per_row, tin, tout):
    """Run backend `name` on a random (Np, Kp) ternary weight used as an (N, K) layer into
    a poisoned output and compare with the float64 reference; returns why_not instead
    when the backend cannot take the call."""
    (packed, scale), _ = ternary_case(Np, Kp, layout, per_row, device)
    kw = transforms(Np, Kp, tin, tout, device)
    bias = torch.randn(N, device=device).to(dtype)
    x = torch.randn(M, K, device=device).to(dtype)
    args = (x, packed, scale, bias, kw.get("q_in"), kw.get("signs_in"), kw.get("q_out"), kw.get("signs_out"), tin, tout,
            K, N, Kp)
    why = backend.why_not("linear_ternary", name, *args)
    if why:
        return why
    out = poison_like(torch.empty(M, N, device=device, dtype=dtype))
    backend.implementation("linear_ternary", name)(*args, out=out)
    ref = linear_ternary_ref(x.double(), packed, scale, bias.double(), *args[4:])
    assert rel_err(out, ref) < LAYER_TOL[dtype]
    return None


def test_cuda_base3_kernel_takes_even_k_only():
    if "cuda" not in backend.available("linear_ternary"):
        pytest.skip("the CUDA extension is not built")
    (packed, scale), _ = ternary_case(16, 81, "base3", True)
    why = backend.why_not("linear_ternary", "cuda", torch.randn(1, 81).half(), packed, scale, None, None, None, None,
                          None, False, False, 81, 16, 81)
    assert why is not None and "even K" in why


@pytest.mark.parametrize("name,device", kernel_backends("linear_ternary"))
@pytest.mark.parametrize("M", [1, 3, 9, 16, 33])
@pytest.mark.parametrize("N,K", [(16, 80), (40, 100), (96, 384), (33, 777), (20, 2570)]
                         + ([(4096, 4096), (11008, 4096), (4096, 11008)] if HAS_CUDA else []))
@pytest.mark.parametrize("per_row,tin,tout", [(True, False, False), (False, True, True)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16] if HAS_CUDA else [torch.float32])
def test_base3_kernels(name, device, M, N, K, per_row, tin, tout, dtype):
    """Both backends on the base-3 layout; the Triton kernel takes every call, the CUDA
    backend M <= 8 and even K (it says why otherwise)."""
    if tin or tout:
        from quipkern import width_plan

        Kp, Np = width_plan(K).padded, width_plan(N).padded
    else:
        Kp, Np = K, N
    why = _check_kernel(name, device, M, N, K, Np, Kp, "base3", dtype, per_row, tin, tout)
    if name == "cuda" and why:
        pytest.skip(why)
    assert why is None, why



@pytest.mark.parametrize("name,device", kernel_backends("dequantize_ternary"))
@pytest.mark.parametrize("N,K", [(16, 80), (40, 100), (33, 777), (5, 2570)])
@pytest.mark.parametrize("per_row", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_dequantize_base3_kernel(name, device, N, K, per_row, dtype):
    """The Triton base-3 dequantize (prefill's dense copy) writes every element: scale · trit
    within one rounding to dtype (the interpreter's bf16 cast is not round-to-nearest)."""
    from quipkern.triton import linear_ternary as tlt

    (packed, scale), W = ternary_case(N, K, "base3", per_row, device)
    out = poison_like(torch.empty(N, K, dtype=dtype, device=device))
    tlt.dequantize_base3(packed, scale, K, dtype, out=out)
    ulp = {torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10, torch.float32: 2.0**-23}[dtype]
    torch.testing.assert_close(out.double().cpu(), W, rtol=ulp, atol=0)
    with backend.use_backend(name):
        w = quipkern.ops.dequantize_ternary(packed, scale, K, dtype)
    assert torch.equal(w, out)


@pytest.mark.skipif(not HAS_CUDA or "cuda" not in backend.available("linear_ternary"),
                    reason="needs the CUDA extension and a GPU")
@pytest.mark.parametrize("M", [9, 16])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_base3_cuda_gemv_two_tiles_of_x(M, dtype):
    """The CUDA base-3 GEMV's M > 8 variant (two n8 tiles of x), through the private op."""
    N, K = 96, 2570
    (packed, scale), W = ternary_case(N, K, "base3", True, "cuda")
    x = torch.randn(M, K, device="cuda").to(dtype)
    out = poison_like(torch.empty(M, N, device="cuda", dtype=dtype))
    torch.ops.quipkern._linear_ternary_base3_gemv_cuda(x, packed, scale, None, out, K)
    ref = x.double() @ W.to("cuda").t()
    assert rel_err(out, ref) < LAYER_TOL[dtype]


@pytest.mark.skipif(not HAS_CUDA or "cuda" not in backend.available("linear_ternary"),
                    reason="needs the CUDA extension and a GPU")
@pytest.mark.parametrize("K", [80, 778, 8192, 8200])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_base3_cuda_gemv_one_row_x_in_the_ring(K, dtype):
    """M = 1 with x 16-byte aligned stages x in the kernel's cp.async ring (zero-filled past
    K); with x only 4-byte aligned it loads x per k-step.  Both give the reference, and the
    same x gives the same bits either way (the same sums in the same order)."""
    N = 40
    (packed, scale), W = ternary_case(N, K, "base3", True, "cuda")
    buf = torch.randn(1, K + 8, device="cuda").to(dtype)
    x_ldg = buf[:, 2:2 + K]  # 4-byte aligned: the per-k-step loads
    x_ring = x_ldg.clone()  # a fresh allocation: 16-byte aligned
    assert x_ldg.data_ptr() % 16 != 0 and x_ring.data_ptr() % 16 == 0
    ref = x_ring.double() @ W.to("cuda").t()
    outs = []
    for x in (x_ldg, x_ring):
        out = poison_like(torch.empty(1, N, device="cuda", dtype=dtype))
        torch.ops.quipkern._linear_ternary_base3_gemv_cuda(x, packed, scale, None, out, K)
        assert rel_err(out, ref) < LAYER_TOL[dtype]
        outs.append(out)
    assert torch.equal(outs[0], outs[1])


@pytest.mark.skipif(not HAS_CUDA or "cuda" not in backend.available("linear_ternary"),
                    reason="needs the CUDA extension and a GPU")
@pytest.mark.parametrize("M", [9, 12, 16])
def test_base3_dispatch_at_9_to_16_rows(M):
    """M = 9..16 goes to the CUDA base-3 GEMV where N <= CUDA_BASE3_SMALL_N and to Triton's
    kernel above it; through the op (no forced backend) the result is the layer's."""
    import importlib

    lt = importlib.import_module("quipkern.ops.linear_ternary")
    K = 640
    for N in (lt.CUDA_BASE3_SMALL_N, lt.CUDA_BASE3_SMALL_N + 16):
        (packed, scale), W = ternary_case(N, K, "base3", True, "cuda")
        x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
        args = (x, packed, scale, None, None, None, None, None, False, False, K, N, K)
        why = backend.why_not("linear_ternary", "cuda", *args)
        assert (why is None) == (N <= lt.CUDA_BASE3_SMALL_N), why
        y = quipkern.linear_ternary(x, packed, scale, None, in_features=K, out_features=N)
        assert rel_err(y, x.double() @ W.to("cuda").t()) < LAYER_TOL[torch.bfloat16]


def test_ternary_zero_points_come_from_one_cached_buffer():
    """The 2-bit backends get ternary's zero points (all 1) without a fill per call, from a
    buffer that is never freed (CUDA graphs keep reading the one they captured)."""
    import importlib

    lt = importlib.import_module("quipkern.ops.linear_ternary")
    a, b = lt._ones_column(96, torch.device("cpu")), lt._ones_column(40, torch.device("cpu"))
    assert a.shape == (96, 1) and b.shape == (40, 1) and a.dtype == torch.float16
    assert a.data_ptr() == b.data_ptr() and bool((a == 1).all())
    big = lt._ones_column(200_000, torch.device("cpu"))  # grows: a new buffer, the old one kept alive
    assert big.shape == (200_000, 1) and bool((big == 1).all())
    assert any(k.data_ptr() == a.data_ptr() for k in lt._ONES_KEEP)


@pytest.mark.parametrize("name,device", kernel_backends("linear_ternary"))
@pytest.mark.parametrize("M", [3, 33])
def test_base3_float32_bias_with_half_activations(name, device, M):
    """A float32 bias beside bfloat16 x (the op allows both): added after the matmul, on
    every base-3 path, the prefill's cuBLAS one (M = 33 on a GPU) included."""
    N, K = 40, 100
    (packed, scale), W = ternary_case(N, K, "base3", True, device)
    bias = torch.randn(N, device=device)
    x = torch.randn(M, K, device=device).to(torch.bfloat16)
    why = backend.why_not("linear_ternary", name, x, packed, scale, bias, None, None, None, None, False, False,
                          K, N, K)
    if why:
        pytest.skip(why)
    out = poison_like(torch.empty(M, N, device=device, dtype=torch.bfloat16))
    backend.implementation("linear_ternary", name)(x, packed, scale, bias, None, None, None, None, False, False,
                                                   K, N, K, out=out)
    ref = x.double().cpu() @ W.t() + bias.double().cpu()
    assert rel_err(out, ref) < LAYER_TOL[torch.bfloat16]
