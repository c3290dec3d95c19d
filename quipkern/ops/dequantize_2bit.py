"""torch.ops.quipkern.dequantize_2bit: the 2-bit weight of docs/FORMATS.md -> (N, K) dense.

packed int32 (N, K/16); scales float16 (N, K/g); zeros None or float16 (N, K/g);
dtype: the output dtype (float16, bfloat16, float32, float64).
q_out, q_in: None, or a transform's dense factor Q (m, m), float32 / float64, to fold in:
the result is (Q_outᵀ ⊗ I) · Ŵ · (Q_in ⊗ I) (reference/rht.py, fold_q), m dividing N
(q_out) or K (q_in).  The 2-bit layer's prefill path uses it, so that its activation
transforms skip their Q stage (ops/linear_2bit.py).
hadamard_in, signs_in: also fold the rest of the input transform, · (I_m ⊗ H_p/√p) · S_in
with m the order of q_in (1 without it) and p = K/m a power of two (reference/rht.py,
fold_hadamard); with q_in that is the whole T_in · S_in, so the layer's prefill path
needs no transform of x at all.  signs_in: S_in's uint8 bitmask (K/8 bytes) or None.
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import _ext
from .. import triton as _triton
from .._checks import FLOAT_DTYPES, check_optional
from ..formats.two_bit import check_2bit_weight
from ..formats.two_bit import dequantize_2bit as _dequantize
from ..formats.signs import signs_nbytes
from ..reference.rht import compute_dtype, fold_hadamard, fold_q, order
from . import backend

__all__ = ["dequantize_2bit", "CUDA_HADAMARD_K"]

# The widths K (powers of two) whose hadamard_in the CUDA kernel folds
# (dequantize_2bit_hadamard_launch in csrc/rht.cu); the layer's fold rule asks the same.
CUDA_HADAMARD_K = (256, 32768)


def _check(packed, scales, zeros, dtype, q_out, q_in, hadamard_in, signs_in, check_data):
    op = "dequantize_2bit"
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: 'dtype' must be one of {FLOAT_DTYPES}; got {dtype}")
    N, K, g = check_2bit_weight(op, packed, scales, zeros, packed.device, check_data)
    for name, q, width, what in (("q_out", q_out, N, "N"), ("q_in", q_in, K, "K")):
        check_optional(op, name, q, dtypes=(torch.float32, torch.float64), ndim=2, device=packed.device,
                       contiguous=True, what=f"dense factor (m, m) of the transform of width {what} = {width}")
        if q is not None and (q.shape[0] != q.shape[1] or q.shape[0] < 1 or width % q.shape[0]):
            raise ValueError(f"{op}: '{name}' must be square (m, m) with m dividing {what} = {width}; "
                             f"got shape {tuple(q.shape)}")
    if hadamard_in:
        p = K // order(q_in)
        if p & (p - 1):
            raise ValueError(f"{op}: hadamard_in needs K / m = {K} / {order(q_in)} = {p} to be a power of two "
                             f"(m: the order of 'q_in', 1 without it)")
        check_optional(op, "signs_in", signs_in, dtypes=(torch.uint8,), shape=(signs_nbytes(K),),
                       device=packed.device, contiguous=True, what=f"sign bitmask of width K = {K}")
    elif signs_in is not None:
        raise ValueError(f"{op}: 'signs_in' was given but 'hadamard_in' is False; set hadamard_in=True to fold "
                         f"the input transform, or pass None")
    return N, K, g


@torch.library.custom_op("quipkern::dequantize_2bit", mutates_args=())
def dequantize_2bit(packed: torch.Tensor, scales: torch.Tensor, zeros: Optional[torch.Tensor] = None,
                    dtype: torch.dtype = torch.float16, q_out: Optional[torch.Tensor] = None,
                    q_in: Optional[torch.Tensor] = None, hadamard_in: bool = False,
                    signs_in: Optional[torch.Tensor] = None) -> torch.Tensor:
    args = (packed, scales, zeros, dtype, q_out, q_in, hadamard_in, signs_in)
    _check(*args, True)
    return backend.dispatch("dequantize_2bit", packed.device.type, *args)


@dequantize_2bit.register_fake
def _(packed, scales, zeros=None, dtype=torch.float16, q_out=None, q_in=None, hadamard_in=False, signs_in=None):
    N, K, _ = _check(packed, scales, zeros, dtype, q_out, q_in, hadamard_in, signs_in, False)
    return packed.new_empty((N, K), dtype=dtype)


def _reference(packed, scales, zeros, dtype, q_out=None, q_in=None, hadamard_in=False, signs_in=None):
    if q_out is None and q_in is None and not hadamard_in:
        return _dequantize(packed, scales, zeros, dtype)
    w = fold_q(_dequantize(packed, scales, zeros, compute_dtype(dtype)), q_out, q_in)
    if hadamard_in:
        w = fold_hadamard(w, order(q_in), signs_in)
    return w.to(dtype)


backend.register("dequantize_2bit", "reference", backend.with_out(_reference))
if _triton.AVAILABLE:
    from ..triton import linear_2bit as _tl

    def _triton(packed, scales, zeros, dtype, q_out=None, q_in=None, hadamard_in=False, signs_in=None, out=None):
        if not hadamard_in:
            return _tl.dequantize_2bit(packed, scales, zeros, dtype, q_out, q_in, out=out)
        # two passes: the (folded) weight in float32, then the rows through Triton's rht
        # (hadamard_in's single-pass kernel is CUDA's)
        w = _tl.dequantize_2bit(packed, scales, zeros, torch.float32, q_out, q_in)
        K = w.shape[1]
        m = order(q_in)
        w = backend.implementation("rht", "triton")(w, m if m > 1 else None, None, signs_in, 1.0, False, K, K)
        return w.to(dtype) if out is None else out.copy_(w)

    def _triton_supports(packed, scales, zeros, dtype, q_out=None, q_in=None, hadamard_in=False, signs_in=None,
                         out=None):
        return _tl.supports_dequantize(packed, scales, zeros, torch.float32 if hadamard_in else dtype, q_out, q_in)

    backend.register("dequantize_2bit", "triton", _triton, _triton_supports)

if _ext.AVAILABLE:

    def _cuda(packed, scales, zeros, dtype, q_out=None, q_in=None, hadamard_in=False, signs_in=None, out=None):
        if out is None:
            out = torch.empty(packed.shape[0], packed.shape[1] * 16, dtype=dtype, device=packed.device)
        q = q_in if q_in is not None else q_out
        q = None if q is None else q.to(torch.float32).contiguous()
        torch.ops.quipkern._dequantize_2bit_cuda(packed, scales, zeros, out, q, q_in is not None, hadamard_in,
                                                 signs_in)
        return out

    def _cuda_supports(packed, scales, zeros, dtype, q_out=None, q_in=None, hadamard_in=False, signs_in=None,
                       out=None):
        if hadamard_in:
            K = packed.shape[1] * 16
            if q_out is not None or q_in is not None:
                return "the CUDA kernel folds hadamard_in alone (a width K = 2^k, no q_in, no q_out)"
            lo, hi = CUDA_HADAMARD_K
            if not lo <= K <= hi:
                return f"the CUDA kernel folds hadamard_in for {lo} <= K <= {hi}, got K = {K}"
            if dtype not in (torch.float16, torch.bfloat16):
                return f"the CUDA kernel folds hadamard_in into float16 or bfloat16, not {dtype}"
            if packed.data_ptr() % 8 or (signs_in is not None and signs_in.data_ptr() % 4):
                return "the CUDA kernel folding hadamard_in reads 8-byte aligned packed rows and 4-byte aligned signs"
        if q_out is not None and q_in is not None:
            return "the CUDA kernel folds one factor a call (q_out or q_in), not both"
        q = q_in if q_in is not None else q_out
        if q is not None:
            if dtype not in (torch.float16, torch.bfloat16):
                return f"the CUDA kernel folds into float16 or bfloat16, not {dtype}"
            if q.shape[0] > 32:
                return f"the CUDA kernel folds factors of order m <= 32, got {q.shape[0]}"
            P, g = packed.shape[1] * 16 // q.shape[0], packed.shape[1] * 16 // scales.shape[1]
            if q_in is not None and (P % 16 or (P % 64 and g % P)):
                return (f"folding q_in needs K / m = {P} to be a multiple of 16 and of 64 or a divisor of the "
                        f"group size {g} (whole packed words a chunk, one scale group a 64-column run)")
        if dtype not in (torch.float16, torch.bfloat16, torch.float32):
            return f"the CUDA kernel writes float16, bfloat16 or float32, not {dtype}"
        if out is not None and (out.stride(-1) != 1 or out.data_ptr() % 16 or (out.stride(0) * out.element_size()) % 16):
            return "the CUDA kernel writes 16-byte aligned rows"
        return None

    backend.register("dequantize_2bit", "cuda", _cuda, _cuda_supports)
