"""torch.ops.quipkern.linear_ternary: the fused ternary (BitNet b1.58) layer

    y = S_out · T_outᵀ · (Ŵ · (T_in · S_in · x)) + bias,   Ŵ = scale · trits

packed: int32 (N, K/16) for ternary-2bit or uint8 (N, 16·ceil(K/80)) for ternary-base3
(docs/FORMATS.md, "Ternary weights"); scale float32 (N,) or (1,).  K: the weight's
in-dimension, needed only for a padded ternary-base3 weight (whose byte count rounds K
up to 80; -1: in_features for base-3, packed.shape[1]·16 for 2-bit).  Everything else
as in ops/linear_2bit.py.
"""

from __future__ import annotations

import importlib
from typing import Optional

import torch

from .. import triton as _triton
from ..formats.ternary import check_ternary_weight
from ..reference import linear_ternary as _reference
from . import backend
from .dequantize_ternary import dequantize_ternary
from .transformed_linear import check_layer_args, check_x, composed_forward, dense_matmul, register_linear_autograd

__all__ = ["linear_ternary"]

# The CUDA base-3 GEMV takes up to 16 rows (csrc/include/quipkern/linear_ternary.h), but
# the dispatch gives it M = 9..16 (its two-n8-tile variant) only for layers of at most
# CUDA_BASE3_SMALL_N outputs.  H100, bench.py, M = 16 (session 13, CUDA against Triton's
# kernel in the same call): 4096² 15.7 vs 27.5 µs, 4096×11008 35.8 vs 68.5, 1024×4096 9.4
# vs 26.9, 2048×8192 17.6 vs 51.6; Triton's was faster at 8192² (53 vs 74), 28672×8192
# (166 vs 179), 14336×4096 (46 vs 50; session 12, benchmarks/probe/base3_gemv.py).
CUDA_BASE3_MAX_M = 8
CUDA_BASE3_SMALL_N_MAX_M = 16
CUDA_BASE3_SMALL_N = 4096


def weight_k(x, packed, in_features, K) -> int:
    """The weight's in-dimension given the op's arguments."""
    if K != -1:
        return K
    if packed.dtype == torch.int32 and packed.dim() == 2:
        return packed.shape[1] * 16
    return x.shape[-1] if in_features == -1 else in_features


def _check(x, packed, scale, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
           in_features, out_features, K, check_data):
    op = "linear_ternary"
    check_x(op, x)
    K = weight_k(x, packed, in_features, K)
    if K < 1:
        raise ValueError(f"{op}: K={K} must be >= 1 (or -1)")
    N = check_ternary_weight(op, packed, scale, K, x.device, check_data)
    return check_layer_args(op, x, N, K, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
                            in_features, out_features)


@torch.library.custom_op("quipkern::linear_ternary", mutates_args=())
def linear_ternary(
    x: torch.Tensor,
    packed: torch.Tensor,
    scale: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    q_in: Optional[torch.Tensor] = None,
    signs_in: Optional[torch.Tensor] = None,
    q_out: Optional[torch.Tensor] = None,
    signs_out: Optional[torch.Tensor] = None,
    transform_in: bool = False,
    transform_out: bool = False,
    in_features: int = -1,
    out_features: int = -1,
    K: int = -1,
) -> torch.Tensor:
    args = (x, packed, scale, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out)
    N = _check(*args, in_features, out_features, K, True)
    if x.numel() == 0:
        return x.new_empty((*x.shape[:-1], N))
    return backend.dispatch("linear_ternary", x.device.type, *args, x.shape[-1], N,
                            weight_k(x, packed, in_features, K))


@linear_ternary.register_fake
def _(x, packed, scale, bias=None, q_in=None, signs_in=None, q_out=None, signs_out=None,
      transform_in=False, transform_out=False, in_features=-1, out_features=-1, K=-1):
    N = _check(x, packed, scale, bias, q_in, signs_in, q_out, signs_out, transform_in,
               transform_out, in_features, out_features, K, False)
    return x.new_empty((*x.shape[:-1], N))


register_linear_autograd(
    linear_ternary,
    lambda x, packed, scale, K: dequantize_ternary(packed, scale, weight_k(x, packed, -1, K), x.dtype),
    n_weight_args=2,
)


backend.register("linear_ternary", "reference", backend.with_out(_reference))


# The ternary-2bit layout is the 2-bit layout with zero point 1 and one scale per row
# (docs/FORMATS.md), so the 2-bit backends run it (ops/__init__.py imports linear_2bit
# first, so its backends are registered by now), zeros being 1.  The CUDA GEMV reads the
# float32 scale as it is stored (a view: no kernel runs before the GEMV, so the GEMV
# overlaps the kernel before it, csrc/launch.cuh); the Triton kernels take float16 scales
# (a 2^-11 relative rounding, inside half-precision activations' own error).
def _as_two_bit(packed, scale, float32_rows=False):
    N = packed.shape[0]
    if float32_rows:
        scales = scale.view(-1, 1) if scale.numel() == N else scale.view(1, 1).expand(N, 1)
    else:
        scales = scale.to(torch.float16).expand(N).reshape(N, 1).contiguous()
    return scales, _ones_column(N, scale.device)


# The zero points (all 1) come from one cached buffer per device instead of a fill kernel
# per call: in a CUDA-graph replay each tiny kernel costs ~1 µs, and a ternary layer paid
# two of them besides its GEMV (H100, session 7: ternary-2bit at 4096², M = 1, 9.5 µs
# against 6.8 for the 2-bit layer without transforms).  Buffers are never freed, since a
# captured graph keeps reading the one it saw; inside a capture a new one comes from the
# graph's own pool instead of being cached.
_ONES: dict = {}
_ONES_KEEP: list = []


def _ones_column(n, device):
    buf = _ONES.get(device)
    if buf is None or buf.numel() < n:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return torch.ones(n, 1, dtype=torch.float16, device=device)
        buf = torch.ones(max(n, 1 << 16, 2 * (0 if buf is None else buf.numel())), dtype=torch.float16,
                         device=device)
        _ONES_KEEP.append(buf)
        _ONES[device] = buf
    return buf[:n].view(n, 1)


def _base3_composed(matmul):
    """A backend implementation for the ternary-base3 layout from `matmul(x2, packed, scale,
    K, bias, out)`, through composed_forward (transforms, padding, cut); the bias goes to
    matmul only in x's dtype (a float32 one is added after), as in linear_2bit's composed."""

    def impl(x, packed, scale, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
             in_features, out_features, K, out=None):
        return composed_forward(x, packed.shape[0], K, out_features, bias, q_in, signs_in, q_out, signs_out,
                                transform_in, transform_out,
                                lambda x2, b, o: matmul(x2, packed, scale, K, b, o),
                                fuse_bias=bias is not None and bias.dtype == x.dtype, out=out)

    return impl


def _two_bit_backend(name):
    impl = backend.implementation("linear_2bit", name)

    def run(x, packed, scale, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
            in_features, out_features, K, out=None):
        scales, zeros = _as_two_bit(packed, scale, float32_rows=name == "cuda")
        return impl(x, packed, scales, zeros, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
                    in_features, out_features, out=out)

    def can_run(x, packed, scale, bias, *rest):
        rest = rest[:-1]  # K: the 2-bit backends read it off 'packed'
        if packed.dtype != torch.int32:
            return "the 2-bit kernels take the ternary-2bit layout (ternary-base3 has a Triton kernel of its own)"
        if x.dtype not in (torch.float16, torch.bfloat16):
            return f"float16 / bfloat16 activations only (the 2-bit kernels); got {x.dtype}"
        # the 2-bit backends decide on x and the weight's shape, not on scale values:
        # no need to build the float16 scales just to ask
        return backend.why_not("linear_2bit", name, x, packed, scale.view(-1, 1), None, bias, *rest)

    return run, can_run


if "cuda" in backend.available("linear_2bit"):
    # one "cuda" backend for both layouts: int32 -> the 2-bit GEMV, uint8 -> the base-3 GEMV
    # (csrc/linear_ternary_base3.cu)
    _cuda_two_bit_run, _cuda_two_bit_can = _two_bit_backend("cuda")

    def _base3_cuda_gemv(x2, packed, scale, K, bias, out):
        if x2.data_ptr() % 4 or (x2.shape[0] > 1 and x2.stride(0) % 2):
            x2 = x2.clone() if x2.is_contiguous() else x2.contiguous()
        if out is None or out.stride(-1) != 1:
            out = torch.empty(x2.shape[0], packed.shape[0], dtype=x2.dtype, device=x2.device)
        torch.ops.quipkern._linear_ternary_base3_gemv_cuda(x2, packed, scale.float().contiguous(), bias, out, K)
        return out

    _base3_cuda_run = _base3_composed(_base3_cuda_gemv)

    def _cuda_run(x, packed, *rest, out=None):
        run = _base3_cuda_run if packed.dtype == torch.uint8 else _cuda_two_bit_run
        return run(x, packed, *rest, out=out)

    def _cuda_can(x, packed, scale, bias, *rest):
        if packed.dtype != torch.uint8:
            return _cuda_two_bit_can(x, packed, scale, bias, *rest)
        K = rest[-1]
        if x.dtype not in (torch.float16, torch.bfloat16):
            return f"the CUDA base-3 kernel takes float16 or bfloat16 activations, got {x.dtype}"
        M, N = x.numel() // x.shape[-1], packed.shape[0]
        max_m = CUDA_BASE3_SMALL_N_MAX_M if N <= CUDA_BASE3_SMALL_N else CUDA_BASE3_MAX_M
        if M > max_m:
            return (f"the CUDA base-3 kernel takes at most {max_m} rows for N = {N} "
                    f"({CUDA_BASE3_SMALL_N_MAX_M} where N <= {CUDA_BASE3_SMALL_N}), got {M}")
        if K % 2:
            return f"the CUDA base-3 kernel takes an even K (x is read in pairs), got K={K}"
        return None

    backend.register("linear_ternary", "cuda", _cuda_run, _cuda_can)


# The ternary-base3 layout has its own Triton kernel (triton/linear_ternary.py); the
# transforms and the cut of padded outputs go through composed_forward, as in linear_2bit.
if _triton.AVAILABLE:
    from ..triton import linear_ternary as _tlt

    # the module, not the op the package exports under the same name: its threshold
    _linear_2bit_module = importlib.import_module(__package__ + ".linear_2bit")

    def _base3_matmul(x2, packed, scale, K, bias, out):
        # prefill: one dense copy of the weight and cuBLAS (as linear_2bit does from the
        # same M on); the fused kernel ran at 0.12-0.14x bf16 at M = 4096 on the H100
        if x2.is_cuda and x2.shape[0] >= _linear_2bit_module.DEQUANT_GEMM_MIN_M:
            w = backend.dispatch("dequantize_ternary", "cuda", packed, scale, K, x2.dtype)
            return dense_matmul(x2, w, bias, out)
        return _tlt.matmul_base3(x2, packed, scale, bias, out)

    _base3_triton = _base3_composed(_base3_matmul)

    # one "triton" backend for both layouts: int32 -> the 2-bit kernels, uint8 -> base-3
    _two_bit_run, _two_bit_can = (_two_bit_backend("triton") if "triton" in backend.available("linear_2bit")
                                  else (None, None))

    def _triton_run(x, packed, *rest, out=None):
        if packed.dtype == torch.uint8:
            return _base3_triton(x, packed, *rest, out=out)
        return _two_bit_run(x, packed, *rest, out=out)

    def _triton_can(x, packed, scale, *rest):
        if packed.dtype == torch.uint8:
            return _tlt.supports(x, packed, scale)
        if _two_bit_can is None:
            return "no Triton 2-bit kernels here"
        return _two_bit_can(x, packed, scale, *rest)

    backend.register("linear_ternary", "triton", _triton_run, _triton_can)
