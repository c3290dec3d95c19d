"""torch.ops.quipkern.dequantize_2bit: the 2-bit weight of docs/FORMATS.md -> (N, K) dense.

packed int32 (N, K/16); scales float16 (N, K/g); zeros None or float16 (N, K/g);
dtype: the output dtype (float16, bfloat16, float32, float64).
q_out, q_in: None, or a transform's dense factor Q (m, m), float32 / float64, to fold in:
the result is (Q_outᵀ ⊗ I) · Ŵ · (Q_in ⊗ I) (reference/rht.py, fold_q), m dividing N
(q_out) or K (q_in).  The 2-bit layer's prefill path uses it, so that its activation
transforms skip their Q stage (ops/linear_2bit.py).
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import _ext
from .. import triton as _triton
from .._checks import FLOAT_DTYPES, check_optional
from ..formats.two_bit import check_2bit_weight
from ..formats.two_bit import dequantize_2bit as _dequantize
from ..reference.rht import compute_dtype, fold_q
from . import backend

__all__ = ["dequantize_2bit"]


def _check(packed, scales, zeros, dtype, q_out, q_in, check_data):
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
    return N, K, g


@torch.library.custom_op("quipkern::dequantize_2bit", mutates_args=())
def dequantize_2bit(packed: torch.Tensor, scales: torch.Tensor, zeros: Optional[torch.Tensor] = None,
                    dtype: torch.dtype = torch.float16, q_out: Optional[torch.Tensor] = None,
                    q_in: Optional[torch.Tensor] = None) -> torch.Tensor:
    _check(packed, scales, zeros, dtype, q_out, q_in, True)
    return backend.dispatch("dequantize_2bit", packed.device.type, packed, scales, zeros, dtype, q_out, q_in)


@dequantize_2bit.register_fake
def _(packed, scales, zeros=None, dtype=torch.float16, q_out=None, q_in=None):
    N, K, _ = _check(packed, scales, zeros, dtype, q_out, q_in, False)
    return packed.new_empty((N, K), dtype=dtype)


def _reference(packed, scales, zeros, dtype, q_out=None, q_in=None):
    if q_out is None and q_in is None:
        return _dequantize(packed, scales, zeros, dtype)
    return fold_q(_dequantize(packed, scales, zeros, compute_dtype(dtype)), q_out, q_in).to(dtype)


backend.register("dequantize_2bit", "reference", backend.with_out(_reference))
if _triton.AVAILABLE:
    from ..triton import linear_2bit as _tl

    backend.register("dequantize_2bit", "triton", _tl.dequantize_2bit, _tl.supports_dequantize)

if _ext.AVAILABLE:

    def _cuda(packed, scales, zeros, dtype, q_out=None, q_in=None, out=None):
        if out is None:
            out = torch.empty(packed.shape[0], packed.shape[1] * 16, dtype=dtype, device=packed.device)
        q = q_in if q_in is not None else q_out
        q = None if q is None else q.to(torch.float32).contiguous()
        torch.ops.quipkern._dequantize_2bit_cuda(packed, scales, zeros, out, q, q_in is not None)
        return out

    def _cuda_supports(packed, scales, zeros, dtype, q_out=None, q_in=None, out=None):
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
