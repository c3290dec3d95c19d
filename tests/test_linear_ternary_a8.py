"""W1.58A8: the int8 x ternary matmul gives exactly the integers of a plain integer
matmul on every backend; the layer matches its float64 description; bad input errors."""

import pytest
import torch

import quipkern
from quipkern.formats import pack_ternary_2bit
from quipkern.ops import backend
from quipkern.reference import linear_ternary_a8 as ref

from .layer_cases import transforms
from .utils import HAS_CUDA, kernel_backends, rel_err

SHAPES = [(1, 64, 64), (3, 96, 128), (16, 40, 192), (33, 130, 256), (7, 1, 64)] + (
    [(1, 4096, 4096), (16, 11008, 4096), (256, 4096, 11008), (4096, 1024, 8192), (64, 130, 256)] if HAS_CUDA else [])


def _case(M, N, K, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-127, 128, (M, K), generator=g).to(torch.int8)
    trits = torch.randint(-1, 2, (N, K), generator=g)
    return q.to(device), trits, pack_ternary_2bit(trits).to(device)


@pytest.mark.parametrize("name,device", kernel_backends("matmul_ternary_int8"))
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_int8_matmul_is_exact(name, device, M, N, K):
    q, trits, packed = _case(M, N, K, device, seed=M + N + K)
    why = backend.why_not("matmul_ternary_int8", name, q, packed)
    if why:
        pytest.skip(why)
    out = torch.full((M, N), -7, dtype=torch.int32, device=device)  # poison
    backend.implementation("matmul_ternary_int8", name)(q, packed, out=out)
    expect = q.cpu().to(torch.int64) @ trits.T
    assert torch.equal(out.cpu().to(torch.int64), expect)


@pytest.mark.parametrize("N,K", [(5, 64), (40, 320)])
def test_expand_trits_int8(N, K):
    """The int8 operand of the prefill path (gemm_int8) holds exactly the trits."""
    from quipkern import triton as qk_triton
    if not qk_triton.AVAILABLE or backend.why_not("matmul_ternary_int8", "triton", *_case(1, N, K)[::2]):
        pytest.skip("Triton cannot run here")
    from quipkern.triton.linear_ternary_a8 import expand_trits_int8
    device = "cuda" if HAS_CUDA else "cpu"
    _, trits, packed = _case(1, N, K, device)
    out = torch.full((N, K), 9, dtype=torch.int8, device=device)  # poison
    expand_trits_int8(packed, out=out)
    assert torch.equal(out.cpu().to(torch.int64), trits)


def test_extreme_values_and_op():
    # every activation at +-127 against every trit: the largest |sums| (127 K) stay exact
    K = 256
    q = torch.tensor([[127] * K, [-127] * K, [127, -127] * (K // 2)], dtype=torch.int8)
    trits = torch.stack([torch.ones(K), -torch.ones(K), torch.zeros(K)]).long()
    out = quipkern.matmul_ternary_int8(q, pack_ternary_2bit(trits))
    assert out.tolist() == [[127 * K, -127 * K, 0], [-127 * K, 127 * K, 0], [0, 0, 0]]


def test_quantize_rows():
    x = torch.randn(5, 300, dtype=torch.float64)
    x[2] = 0
    q, s = ref.quantize_act_rows(x)
    assert q.dtype == torch.int8 and s.shape == (5, 1)
    assert int(q.abs().max()) == 127 and torch.all(q[2] == 0) and s[2].item() == 1.0
    assert (x - q.double() * s.double()).abs().max() <= 0.5 * s.max() + 1e-12


@pytest.mark.parametrize("tin,tout", [(False, False), (True, True)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_layer_matches_float64_description(tin, tout, dtype):
    M, N, K = 4, 96, 384
    torch.manual_seed(1)
    trits = torch.randint(-1, 2, (N, K))
    packed = pack_ternary_2bit(trits)
    scale = torch.rand(N) * 0.02 + 0.01
    bias = torch.randn(N)
    kw = transforms(N, K, tin, tout, q_dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    x = torch.randn(M, K).to(dtype)
    y = quipkern.linear_ternary_a8(x, packed, scale, bias.to(dtype), **kw)
    assert y.shape == (M, N) and y.dtype == dtype
    r = ref.linear_ternary_a8(x, packed, scale, bias.to(dtype), **kw)
    assert rel_err(y, r) < {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    # against the float layer: int8 activations cost ~ 1/127 of the row's range
    f = quipkern.reference.linear_ternary(x.double(), packed, scale, bias, **{
        k: (v.double() if k.startswith("q_") and v is not None else v) for k, v in kw.items()})
    assert rel_err(y, f) < 0.03
    if not tin and dtype == torch.float64:  # no transform: the integers are the reference's exactly
        q, s = ref.quantize_act_rows(x)
        exact = (q.long() @ trits.T).double() * s.double() * scale.double() + bias.double()
        assert rel_err(y, exact) < 1e-14


def test_fake_and_errors():
    packed = pack_ternary_2bit(torch.randint(-1, 2, (8, 64)))
    scale = torch.ones(8)
    torch.library.opcheck(torch.ops.quipkern.matmul_ternary_int8.default,
                          (torch.randint(-127, 128, (3, 64), dtype=torch.int8), packed))
    torch.library.opcheck(torch.ops.quipkern.linear_ternary_a8.default, (torch.randn(2, 64), packed, scale))
    with pytest.raises(TypeError, match="'q' must have dtype torch.int8"):
        quipkern.matmul_ternary_int8(torch.zeros(2, 64), packed)
    with pytest.raises(ValueError, match="holds K = 64 columns; 'q' has K = 128"):
        quipkern.matmul_ternary_int8(torch.zeros(2, 128, dtype=torch.int8), packed)
    with pytest.raises(TypeError, match="'packed' must have dtype torch.int32"):
        quipkern.linear_ternary_a8(torch.randn(2, 80), torch.zeros(8, 16, dtype=torch.uint8), scale)
    with pytest.raises(ValueError, match="last dim of 'x' must equal in_features=64"):
        quipkern.linear_ternary_a8(torch.randn(2, 65), packed, scale)


def test_int4_activations():
    x = torch.randn(6, 256, dtype=torch.float64)
    q, s = ref.quantize_act_rows(x, 4)
    assert int(q.abs().max()) == 7 and (x - q.double() * s.double()).abs().max() <= 0.5 * s.max() + 1e-12
    trits = torch.randint(-1, 2, (32, 256))
    packed, scale = pack_ternary_2bit(trits), torch.rand(32) + 0.5
    y4 = quipkern.linear_ternary_a8(x, packed, scale, act_bits=4)
    exact = (q.long() @ trits.T).double() * s.double() * scale.double()
    assert rel_err(y4, exact) < 1e-14
    y8 = quipkern.linear_ternary_a8(x, packed, scale)
    f = quipkern.reference.linear_ternary(x, packed, scale)
    assert rel_err(y8, f) < rel_err(y4, f) < 0.3
    with pytest.raises(ValueError, match=r"act_bits must be one of \(8, 4\)"):
        quipkern.linear_ternary_a8(x, packed, scale, act_bits=2)


@pytest.mark.parametrize("bits", [8, 4])
def test_ternary_linear_with_integer_activations(bits, tmp_path):
    from torch import nn

    torch.manual_seed(3)
    lin = nn.Linear(384, 96)
    layer = quipkern.TernaryLinear.from_linear(lin, layout="2bit", transform=True, act_bits=bits)
    assert f"act_bits={bits}" in repr(layer)
    x = torch.randn(5, 384)
    y = layer(x)
    r = ref.linear_ternary_a8(x, layer.packed, layer.scale, layer.bias, *layer._transform_args(), act_bits=bits)
    assert rel_err(y, r) < 1e-5
    a16 = quipkern.TernaryLinear.from_linear(lin, layout="2bit", transform=True)(x)
    assert rel_err(y, a16) < (0.02 if bits == 8 else 0.3)
    with pytest.raises(ValueError, match="act_bits must be None or one of"):
        quipkern.TernaryLinear(384, 96, layout="base3", act_bits=8)
    with pytest.raises(ValueError, match="act_bits .8 or 4. goes with format 'ternary'"):
        quipkern.QuantConfig(format="2bit", act_bits=8)
    # the setting survives a checkpoint
    model = nn.Sequential(nn.Linear(384, 96))
    cfg = quipkern.QuantConfig(format="ternary", layout="2bit", act_bits=bits, transform=True)
    quipkern.quantize_model(model, cfg)
    quipkern.save_quantized(model, str(tmp_path / "m.safetensors"), cfg)
    fresh = nn.Sequential(nn.Linear(384, 96, device="meta")).to_empty(device="cpu")
    quipkern.load_quantized(fresh, str(tmp_path / "m.safetensors"))
    assert fresh[0].act_bits == bits and torch.equal(fresh(x), model(x))


# The Triton kernels of the layer's steps, tested on their own (the cuda backend of
# matmul_ternary_int8 has none of them).
TRITON = [b for b in kernel_backends("matmul_ternary_int8") if b[0] == "triton"]


def _rows_with_ties(M, K, dtype, bits, device):
    """Random rows, an all-zero row, and a row whose absmax makes s = 1 so that x / s
    hits exact halves (round half to even decides them)."""
    qmax = 2 ** (bits - 1) - 1
    x = torch.randn(M, K) * 3
    x[1] = 0
    x[2] = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -3.5] * (K // 8 + 1))[:K]
    x[2, 0] = float(qmax)
    return x.to(dtype).to(device)


@pytest.mark.parametrize("name,device", TRITON)
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("M,K", [(3, 8), (5, 300), (4, 1000)] + ([(33, 11008), (3, 70000), (17, 8192)] if HAS_CUDA else []))
def test_triton_quantize_rows_is_the_reference(name, device, bits, dtype, M, K):
    from quipkern.triton import linear_ternary_a8 as tl8

    x = _rows_with_ties(M, K, dtype, bits, device)
    q, s = tl8.quantize_rows(x, bits)
    q_ref, s_ref = ref.quantize_act_rows(x.cpu(), bits)
    assert torch.equal(q.cpu(), q_ref) and torch.equal(s.cpu(), s_ref)
    assert q[2, 1:7].tolist() == [2, 2, 0, -2, -2, 4]  # 1.5, 2.5, -0.5, -1.5, -2.5, 3.5: halves to even


@pytest.mark.parametrize("name,device", TRITON)
@pytest.mark.parametrize("per_row", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_epilogue_is_the_reference(name, device, per_row, dtype):
    from quipkern.triton import linear_ternary_a8 as tl8

    M, N = 19, 70
    acc = torch.randint(-127 * 4096, 127 * 4096, (M, N), dtype=torch.int32)
    s = torch.rand(M, 1) * 0.1
    scale = torch.rand(N if per_row else 1) * 0.05
    out = torch.full((M, N), float("nan"), dtype=dtype, device=device)
    tl8.scale_rows_cols(acc.to(device), s.to(device), scale.to(device), out)
    want = acc.float() * s * scale
    if dtype == torch.float32 or device == "cuda":
        assert torch.equal(out.cpu(), want.to(dtype))
    else:  # the interpreter's bfloat16 cast is not round-to-nearest: one unit in the last place
        torch.testing.assert_close(out.cpu().double(), want.to(dtype).double(), rtol=2.0**-7, atol=0)


@pytest.mark.parametrize("name,device", TRITON)
@pytest.mark.parametrize("M,N,K", [(20, 40, 96), (33, 17, 80)] + ([(300, 520, 4096), (64, 4100, 1008), (16, 1000, 2048), (9, 64, 4096)] if HAS_CUDA else []))
def test_triton_int8_gemm_is_exact(name, device, M, N, K):
    """The prefill GEMM on expanded trits (codes 0..3 -> -1..2: code 3 included), int8 q at
    the ends of its range, partial tiles in M and N and K not a multiple of the K step;
    with the epilogue: the same bits as scale_rows_cols on its int32 result."""
    from quipkern.triton import linear_ternary_a8 as tl8

    g = torch.Generator().manual_seed(M * N + K)
    packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, generator=g)
    q = torch.randint(-127, 128, (M, K), dtype=torch.int8, generator=g)
    q[0] = 127
    q[-1] = -127
    w8 = tl8.expand_trits_int8(packed.to(device))
    want = q.long() @ w8.cpu().long().T
    out = torch.full((M, N), -7, dtype=torch.int32, device=device)  # poison
    tl8.gemm_int8(q.to(device), w8, out)
    assert torch.equal(out.cpu().long(), want)
    # q with a row stride TMA cannot take (not a multiple of 16 bytes): the pointer kernel
    q_odd = torch.zeros(M, K + 8, dtype=torch.int8, device=device)[:, :K]
    q_odd.copy_(q)
    assert torch.equal(tl8.gemm_int8(q_odd, w8).cpu().long(), want)
    s = (torch.rand(M, 1, generator=g) * 0.01).to(device)
    for scale in (torch.rand(N, generator=g) * 0.05, torch.rand(1, generator=g)):
        scale = scale.to(device)
        for dtype in (torch.float32, torch.bfloat16):
            y = torch.full((M, N), float("nan"), dtype=dtype, device=device)
            tl8.gemm_int8(q.to(device), w8, y, s, scale)
            assert torch.equal(y, tl8.scale_rows_cols(out, s, scale, torch.empty_like(y)))


@pytest.mark.parametrize("name,device", TRITON)
@pytest.mark.parametrize("tin,tout", [(False, False), (True, True)])
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("M", [5, 70])
def test_layer_on_triton_matches_reference(name, device, tin, tout, bits, M):
    """The layer with the Triton quantization, int8 matmul and epilogue (M = 70: the prefill
    GEMM with the epilogue inside): without transforms the same integers and the same
    float32 steps as the reference, so the same bits."""
    N, K = 96, 384
    torch.manual_seed(2)
    trits = torch.randint(-1, 2, (N, K))
    packed = pack_ternary_2bit(trits)
    scale = torch.rand(N) * 0.02 + 0.01
    kw = transforms(N, K, tin, tout)
    x = torch.randn(M, K)
    r = ref.linear_ternary_a8(x, packed, scale, None, **kw, act_bits=bits)
    kw_dev = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in kw.items()}
    with backend.use_backend(name):
        y = quipkern.linear_ternary_a8(x.to(device), packed.to(device), scale.to(device), None, **kw_dev,
                                       act_bits=bits)
    if not tin:
        assert torch.equal(y.cpu(), r)
    else:  # the transforms sum in another order: a value at a rounding half may flip by one step
        assert rel_err(y.cpu(), r) < 5e-3


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
@pytest.mark.parametrize("M,N,K", [(1, 8200, 8192), (1, 77, 32768), (3, 300, 1024), (8, 4099, 4096), (5, 33, 64),
                                   (2, 16384, 2048), (8, 4099, 11008), (3, 300, 11008), (2, 1000, 28672), (8, 77, 4160),
                                   (1, 40, 65536), (9, 77, 64), (12, 4099, 11008), (16, 300, 4096),
                                   (16, 8200, 8192), (13, 8193, 2048), (11, 40, 28672), (10, 33, 192)])
def test_cuda_int8_gemv_extremes(M, N, K):
    """The CUDA decode kernel (one n8 tile of q at M <= 8, two at 9-16; q read from global
    memory, any K): q at ±127, random packed words (code 3 counts as +2, as the reference
    says), a strided q, partial last chunks (K = 4160, 192), exact against the integer
    reference (at K = 65536 the sums exceed 2^24: the warps add them as integers)."""
    if "cuda" not in backend.available("matmul_ternary_int8"):
        pytest.skip("the CUDA extension is not built")
    g = torch.Generator().manual_seed(M * N + K)
    q = torch.randint(-127, 128, (M, K), generator=g).to(torch.int8)
    q[0, : K // 2] = 127
    q[-1, K // 2:] = -127
    packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), generator=g, dtype=torch.int32)
    want = ref.matmul_ternary_int8(q, packed)
    wide = torch.zeros(M, K + 64, dtype=torch.int8)
    wide[:, :K] = q
    for qq in (q.cuda(), wide.cuda()[:, :K]):
        assert backend.why_not("matmul_ternary_int8", "cuda", qq, packed) is None
        out = torch.full((M, N), -7, dtype=torch.int32, device="cuda")
        backend.implementation("matmul_ternary_int8", "cuda")(qq, packed.cuda(), out=out)
        assert torch.equal(out.cpu(), want)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
@pytest.mark.parametrize("M,N,K", [(1, 96, 384), (5, 96, 384), (8, 96, 384), (9, 96, 384), (16, 96, 384),
                                   (17, 96, 384), (12, 8192, 4096), (16, 4096, 11008)])
@pytest.mark.parametrize("bits", [8, 4])
def test_layer_default_dispatch_is_the_reference(M, N, K, bits):
    """On a GPU without a forced backend (Triton quantization and epilogue, the CUDA int8
    GEMV at M <= 16, the int8 GEMM path above): the reference's bits."""
    torch.manual_seed(M)
    packed = pack_ternary_2bit(torch.randint(-1, 2, (N, K)))
    scale = torch.rand(N) * 0.02 + 0.01
    x = torch.randn(M, K).to(torch.bfloat16)
    r = ref.linear_ternary_a8(x, packed, scale, None, act_bits=bits)
    y = quipkern.linear_ternary_a8(x.cuda(), packed.cuda(), scale.cuda(), None, act_bits=bits)
    assert torch.equal(y.cpu(), r)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
@pytest.mark.parametrize("M,N,K", [(2, 8200, 8192), (5, 300, 1024), (8, 4099, 2048), (12, 77, 4096), (16, 8193, 1024),
                                   (3, 40, 28672), (1, 33, 64)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_int8_gemv_epilogue_is_scale_rows_cols(M, N, K, dtype):
    """The int8 GEMV with the W1.58A8 layer's epilogue in it (act_scale, scale, bias): the
    bits of Triton's scale_rows_cols over its int32 product, for both act_bits and per-row
    and per-tensor scales; with a bias, (acc · s) · scale + bias in float32 rounded once."""
    if "cuda" not in backend.available("matmul_ternary_int8"):
        pytest.skip("the CUDA extension is not built")
    from quipkern.triton import linear_ternary_a8 as tl_a8
    g = torch.Generator().manual_seed(M * N + K)
    packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), generator=g, dtype=torch.int32).cuda()
    x = (torch.randn(M, K, generator=g) * 3).to(dtype).cuda()
    for bits in (8, 4):
        q, s = tl_a8.quantize_rows(x, bits)
        acc = torch.empty(M, N, dtype=torch.int32, device="cuda")
        torch.ops.quipkern._ternary_int8_gemv_cuda(q, packed, acc)
        for per_row in (True, False):
            scale = (torch.rand(N if per_row else 1, generator=g) * 0.02 + 0.01).cuda()
            want = tl_a8.scale_rows_cols(acc, s, scale, torch.empty(M, N, dtype=dtype, device="cuda"))
            out = torch.full((M, N), float("nan"), dtype=dtype, device="cuda")
            torch.ops.quipkern._ternary_int8_gemv_cuda(q, packed, out, s.view(-1), scale, None)
            assert torch.equal(out, want)
            bias = torch.randn(N, generator=g).to(dtype).cuda()
            out = torch.full((M, N), float("nan"), dtype=dtype, device="cuda")
            torch.ops.quipkern._ternary_int8_gemv_cuda(q, packed, out, s.view(-1), scale, bias)
            assert torch.equal(out, ((acc.float() * s) * scale + bias.float()).to(dtype))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
@pytest.mark.parametrize("M,N,K", [(1, 8200, 8192), (1, 77, 16384), (2, 4099, 8192), (3, 300, 1024), (8, 4099, 2048),
                                   (5, 33, 64), (1, 30011, 1024), (4, 14336, 4096)])  # the last two: persistent blocks
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_fused_a8_gemv_is_the_three_kernels(M, N, K, dtype):
    """The one-kernel decode step (_ternary_a8_gemv_cuda) writes exactly what Triton's
    row quantization + the CUDA int8 GEMV + Triton's epilogue write, for both act_bits,
    per-row and per-tensor scales, a zero row, a row of ties, a row of tiny values and a
    strided x; a row with a NaN or an infinity gives NaN; with a bias it is the float64
    reference's layer."""
    if "cuda" not in backend.available("matmul_ternary_int8"):
        pytest.skip("the CUDA extension is not built")
    from quipkern.triton import linear_ternary_a8 as tl_a8
    g = torch.Generator().manual_seed(M * N + K)
    packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), generator=g, dtype=torch.int32).cuda()
    wide = (torch.randn(M, K + 64, generator=g) * 3).to(dtype).cuda()
    x = wide[:, :K]
    if M > 2:  # a zero row; a row of ties (x / s = k + 1/2 with s = 1 at Q = 127: half to even)
        x[1] = 0
        x[2] = (torch.randint(-126, 126, (K,), generator=g) + 0.5).to(dtype).cuda()
        x[2, 0] = 127
    if M > 3 and dtype == torch.bfloat16:  # s below 2^-128: 1/s overflows
        x[3] = x[3] * 1e-38
    for bits in (8, 4):
        for scale in (torch.rand(N, generator=g) * 0.02 + 0.01, torch.rand(1, generator=g) + 0.5):
            scale = scale.cuda()
            out = torch.full((M, N), float("nan"), dtype=dtype, device="cuda")  # poison
            torch.ops.quipkern._ternary_a8_gemv_cuda(x, packed, scale, None, out, 2 ** (bits - 1) - 1, False)
            q, s = tl_a8.quantize_rows(x.contiguous(), bits)
            ints = backend.implementation("matmul_ternary_int8", "cuda")(q, packed)
            want = tl_a8.scale_rows_cols(ints, s, scale, torch.empty_like(out))
            assert torch.equal(out, want), f"bits={bits}, scale {tuple(scale.shape)}"
    bias = torch.randn(N, generator=g).to(dtype).cuda()
    scale = (torch.rand(N, generator=g) * 0.02 + 0.01).cuda()
    out = torch.empty(M, N, dtype=dtype, device="cuda")
    torch.ops.quipkern._ternary_a8_gemv_cuda(x, packed, scale, bias, out, 127, False)
    r = ref.linear_ternary_a8(x.cpu().double(), packed.cpu(), scale.cpu(), bias.cpu().double())
    assert rel_err(out.cpu(), r) < 1e-2
    bad = x.clone()
    bad[0, 5] = float("nan")
    bad[-1, 7] = float("inf")
    torch.ops.quipkern._ternary_a8_gemv_cuda(bad, packed, scale, None, out, 127, False)
    assert out[0].isnan().all() and out[-1].isnan().all()
    if M > 2:
        assert torch.isfinite(out[1:-1]).all()
