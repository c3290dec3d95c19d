"""W1.58A8: ternary weights (ternary-2bit layout) with int8 activations.

torch.ops.quipkern.matmul_ternary_int8(q, packed) -> int32 (M, N): q int8 (M, K) times
the trits of packed int32 (N, K/16), transposed; exact integers on every backend.

torch.ops.quipkern.linear_ternary_a8(x, packed, scale, bias, q_in, signs_in, q_out,
signs_out, transform_in, transform_out, in_features, out_features, act_bits): the layer of
quipkern/reference/linear_ternary_a8.py, composed of the rht op (the optional Hadamard
smoothing of the activations, BitNet a4.8 / v2), per-row absmax int8 quantization (one
Triton kernel on CUDA tensors, torch elsewhere), the integer matmul above (on CUDA: the
int8 decode GEMV of csrc/linear_2bit.cu at M <= 16, Triton's kernel, or from 17 rows a
Triton int8 GEMM on expanded trits; the CUDA GEMV and the GEMM also run the epilogue's
row scale · weight scale) and a float epilogue (row scale · weight scale, output
transform, bias).  At decode on CUDA (A8_GEMV_MAX_M = 1 row, K <= 16384) the
quantization, the integer product and the scales are one kernel instead
(_ternary_a8_gemv_cuda, csrc/linear_2bit.cu's kA8 mode): the same integers and float32
steps as the three.  act_bits: 8 (int8 activations) or 4 (int4 values held in int8 and
multiplied by the same exact integer kernel; BitNet v2 / a4.8's A4 after the Hadamard
transform).  Arguments as in ops/linear_ternary.py; inference only (no autograd: the
rounding has no useful gradient).
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from .. import _ext
from .. import triton as _triton
from .._checks import check_tensor
from ..formats.ternary import check_ternary_weight
from ..reference import linear_ternary_a8 as _ref
from . import backend
from .transformed_linear import check_layer_args, check_x, composed_forward

__all__ = ["matmul_ternary_int8", "linear_ternary_a8", "INT8_GEMM_MIN_M"]

# From this many rows on, the trits are expanded to int8 once (N·K bytes written and read
# back) and a plain Triton int8 GEMM (gemm_int8; wgmma on Hopper) multiplies them,
# instead of the kernel that expands them tile by tile; the layer runs its epilogue in it.
# H100 (session 9, run 13): at M = 32 the tile-expanding kernel took 0.11-0.18x bf16's
# time, this path 0.76-0.80x; at M = 16 0.37-0.71x against 0.73-0.87x.  Up to
# TERNARY_INT8_GEMV_MAX_M (16) rows the CUDA int8 GEMV goes first where it applies (it
# reads the weights once; the expansion writes an int8 copy of them).
# QUIPKERN_INT8_GEMM_MIN_M overrides the threshold.
INT8_GEMM_MIN_M = int(os.environ.get("QUIPKERN_INT8_GEMM_MIN_M", "9"))


def _check_matmul(q, packed):
    op = "matmul_ternary_int8"
    check_tensor(op, "q", q, dtypes=(torch.int8,), ndim=2, last_dim_contiguous=True,
                 what="int8 activations (M, K)")
    check_tensor(op, "packed", packed, dtypes=(torch.int32,), ndim=2, device=q.device, contiguous=True,
                 what="ternary-2bit weight (N, K/16)")
    if packed.shape[1] * 16 != q.shape[1]:
        raise ValueError(f"{op}: 'packed' of shape {tuple(packed.shape)} holds K = {packed.shape[1] * 16} columns; "
                         f"'q' has K = {q.shape[1]} (shape {tuple(q.shape)})")
    return packed.shape[0]


@torch.library.custom_op("quipkern::matmul_ternary_int8", mutates_args=())
def matmul_ternary_int8(q: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    N = _check_matmul(q, packed)
    if q.shape[0] == 0 or N == 0:
        return torch.zeros(q.shape[0], N, dtype=torch.int32, device=q.device)
    return backend.dispatch("matmul_ternary_int8", q.device.type, q, packed)


@matmul_ternary_int8.register_fake
def _(q, packed):
    N = _check_matmul(q, packed)
    return q.new_empty((q.shape[0], N), dtype=torch.int32)


backend.register("matmul_ternary_int8", "reference", backend.with_out(_ref.matmul_ternary_int8))
if _triton.AVAILABLE:
    from ..triton import linear_ternary_a8 as _tl

    def _triton_matmul(q, packed, out=None):
        # Prefill: the trits expanded to int8 once and a plain int8 GEMM beat the kernel
        # that expands them tile by tile from INT8_GEMM_MIN_M rows on.
        if q.is_cuda and q.shape[0] >= INT8_GEMM_MIN_M:
            if out is not None and out.stride(-1) != 1:
                return out.copy_(_tl.gemm_int8(q, _tl.expand_trits_int8(packed)))
            return _tl.gemm_int8(q, _tl.expand_trits_int8(packed), out)
        return _tl.matmul_ternary_int8(q, packed, out)

    backend.register("matmul_ternary_int8", "triton", _triton_matmul, _tl.supports)

# Decode (CUDA): the 2-bit GEMV's integer kernel with q as its int8 B operand
# (csrc/linear_2bit.cu, ternary_int8_gemv_launch): M <= 16 rows (one or two n8 tiles of
# the mma), read from global memory in its main loop; K <= 2^22 (exact int32 sums).
TERNARY_INT8_GEMV_MAX_M = 16
TERNARY_INT8_GEMV_MAX_K = 1 << 22


def _cuda_int8_gemv_takes(q, packed) -> bool:
    """Whether matmul_ternary_int8's CUDA backend (its own rule, _cuda_supports) runs q."""
    return ("cuda" in backend.available("matmul_ternary_int8") and backend.forced_backend() in (None, "cuda")
            and backend.why_not("matmul_ternary_int8", "cuda", q, packed) is None)


if _ext.AVAILABLE:

    def _cuda_matmul(q, packed, out=None):
        if q.data_ptr() % 16 or (q.shape[0] > 1 and q.stride(0) % 16):
            q = q.clone(memory_format=torch.contiguous_format)
        if out is None or out.stride(-1) != 1:
            out = torch.empty(q.shape[0], packed.shape[0], dtype=torch.int32, device=q.device)
        torch.ops.quipkern._ternary_int8_gemv_cuda(q, packed, out)
        return out

    def _cuda_supports(q, packed):
        M, K = q.shape
        if not q.is_cuda:
            return "the CUDA int8 decode kernel takes CUDA tensors"
        if M > TERNARY_INT8_GEMV_MAX_M:
            return f"the CUDA int8 decode kernel takes at most {TERNARY_INT8_GEMV_MAX_M} rows, got {M}"
        if K % 64 or K > TERNARY_INT8_GEMV_MAX_K:
            return f"the CUDA int8 decode kernel needs K % 64 == 0 and K <= {TERNARY_INT8_GEMV_MAX_K}; got K={K}"
        return None

    backend.register("matmul_ternary_int8", "cuda", _cuda_matmul, _cuda_supports)

# Decode on CUDA: quantization + integer GEMV + scales (+ bias) as one kernel (the kA8 mode
# of csrc/linear_2bit.cu), x staged in shared memory in its own dtype: M·K <= 16384, up to
# A8_GEMV_MAX_M rows.  Every block of that kernel quantizes all of x, so from 2 rows it
# lost to the three kernels on the larger shapes (H100, session 11: M = 2 at 28672×8192
# 45.7 µs against 32.2, at 14336×4096 16.9 against 15.6; at 4096² it won, 8.5 against
# 9.9); at M = 1 it wins (4096² 7.1 against 9.5 µs, 4096×11008 11.4 against 18.6) or ties.
# QUIPKERN_A8_GEMV_MAX_M overrides it (0: always the three kernels).
A8_GEMV_MAX_M = int(os.environ.get("QUIPKERN_A8_GEMV_MAX_M", "1"))


def _fused_a8_gemv(x2, K) -> bool:
    M = x2.shape[0]
    return (_ext.AVAILABLE and x2.is_cuda and x2.dtype in (torch.float16, torch.bfloat16) and M <= A8_GEMV_MAX_M
            and K % 64 == 0 and M * K <= 16384 and backend.forced_backend() in (None, "cuda"))


def _triton_steps(x2) -> bool:
    """Whether the layer's quantization and epilogue run as Triton kernels (bit-identical
    to the reference steps): on CUDA tensors of a half or single float dtype, or when the
    Triton backend is forced (its interpreter on CPU, for the tests)."""
    if not _triton.AVAILABLE or x2.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return False
    forced = backend.forced_backend()
    if forced is not None:
        return forced == "triton" and _tl.supports(x2, None) is None
    return x2.is_cuda


def _check_layer(x, packed, scale, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
                 in_features, out_features, act_bits, check_data):
    op = "linear_ternary_a8"
    if act_bits not in _ref.ACT_BITS:
        raise ValueError(f"{op}: act_bits must be one of {_ref.ACT_BITS}; got {act_bits!r}")
    check_x(op, x)
    check_tensor(op, "packed", packed, dtypes=(torch.int32,), ndim=2, device=x.device,
                 what="ternary-2bit weight (N, K/16) (the int8 path takes the 2-bit packing)")
    K = packed.shape[1] * 16
    check_ternary_weight(op, packed, scale, K, x.device, check_data)
    return check_layer_args(op, x, packed.shape[0], K, bias, q_in, signs_in, q_out, signs_out,
                            transform_in, transform_out, in_features, out_features)


@torch.library.custom_op("quipkern::linear_ternary_a8", mutates_args=())
def linear_ternary_a8(
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
    act_bits: int = 8,
) -> torch.Tensor:
    n_out = _check_layer(x, packed, scale, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
                         in_features, out_features, act_bits, True)
    N, K = packed.shape[0], packed.shape[1] * 16
    if x.numel() == 0:
        return x.new_empty((*x.shape[:-1], n_out))
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32

    def int_matmul(x2, b, o):  # b: the bias, when the result is final and b is in x's dtype
        if o is None:
            o = torch.empty(x2.shape[0], N, dtype=x.dtype, device=x.device)
        if _fused_a8_gemv(x2, K):
            if x2.data_ptr() % 16 or (x2.shape[0] > 1 and x2.stride(0) % 8):
                x2 = x2.clone(memory_format=torch.contiguous_format)
            torch.ops.quipkern._ternary_a8_gemv_cuda(x2, packed, scale, b, o, 2 ** (act_bits - 1) - 1, transform_in)
            return o
        if _triton_steps(x2):  # one kernel each instead of a chain of elementwise passes
            q, s = _tl.quantize_rows(x2, act_bits)
            gemv = _cuda_int8_gemv_takes(q, packed)  # asked once: the rule decides both branches
            if q.shape[0] >= INT8_GEMM_MIN_M and not gemv:  # prefill: expand + int8 GEMM, the epilogue inside
                _tl.gemm_int8(q, _tl.expand_trits_int8(packed), o, s, scale.float().contiguous())
            elif gemv and o.dtype in (torch.float16, torch.bfloat16) and o.stride(-1) == 1:
                # decode: the epilogue (and the bias) inside the int8 GEMV, one launch fewer
                torch.ops.quipkern._ternary_int8_gemv_cuda(q, packed, o, s.view(-1), scale.float().contiguous(), b)
                return o
            else:
                _tl.scale_rows_cols(matmul_ternary_int8(q, packed), s, scale.float().contiguous(), o)
        else:
            q, s = _ref.quantize_act_rows(x2, act_bits)
            y = matmul_ternary_int8(q, packed).to(acc) * s.to(acc)
            torch.mul(y, scale.to(acc), out=o)
        return o.add_(b) if b is not None else o

    return composed_forward(x, N, K, n_out, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
                            int_matmul, fuse_bias=bias is not None and bias.dtype == x.dtype)


@linear_ternary_a8.register_fake
def _(x, packed, scale, bias=None, q_in=None, signs_in=None, q_out=None, signs_out=None, transform_in=False,
      transform_out=False, in_features=-1, out_features=-1, act_bits=8):
    n_out = _check_layer(x, packed, scale, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
                         in_features, out_features, act_bits, False)
    return x.new_empty((*x.shape[:-1], n_out))
