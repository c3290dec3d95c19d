"""torch.ops.quipkern.dequantize_2bit: the 2-bit weight of docs/FORMATS.md -> (N, K) dense.

packed int32 (N, K/16); scales float16 (N, K/g); zeros None or float16 (N, K/g);
dtype: the output dtype (float16, bfloat16, float32, float64).
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import _ext
from .. import triton as _triton
from .._checks import FLOAT_DTYPES
from ..formats.two_bit import check_2bit_weight
from ..formats.two_bit import dequantize_2bit as _reference
from . import backend

__all__ = ["dequantize_2bit"]


def _check(packed, scales, zeros, dtype, check_data):
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dequantize_2bit: 'dtype' must be one of {FLOAT_DTYPES}; got {dtype}")
    return check_2bit_weight("dequantize_2bit", packed, scales, zeros, packed.device, check_data)


@torch.library.custom_op("quipkern::dequantize_2bit", mutates_args=())
def dequantize_2bit(packed: torch.Tensor, scales: torch.Tensor, zeros: Optional[torch.Tensor] = None,
                    dtype: torch.dtype = torch.float16) -> torch.Tensor:
    _check(packed, scales, zeros, dtype, True)
    return backend.dispatch("dequantize_2bit", packed.device.type, packed, scales, zeros, dtype)


@dequantize_2bit.register_fake
def _(packed, scales, zeros=None, dtype=torch.float16):
    N, K, _ = _check(packed, scales, zeros, dtype, False)
    return packed.new_empty((N, K), dtype=dtype)


backend.register("dequantize_2bit", "reference", backend.with_out(_reference))
if _triton.AVAILABLE:
    from ..triton import linear_2bit as _tl

    backend.register("dequantize_2bit", "triton", _tl.dequantize_2bit, _tl.supports_dequantize)

if _ext.AVAILABLE:

    def _cuda(packed, scales, zeros, dtype, out=None):
        if out is None:
            out = torch.empty(packed.shape[0], packed.shape[1] * 16, dtype=dtype, device=packed.device)
        torch.ops.quipkern._dequantize_2bit_cuda(packed, scales, zeros, out)
        return out

    def _cuda_supports(packed, scales, zeros, dtype, out=None):
        if dtype not in (torch.float16, torch.bfloat16, torch.float32):
            return f"the CUDA kernel writes float16, bfloat16 or float32, not {dtype}"
        if out is not None and (out.stride(-1) != 1 or out.data_ptr() % 16 or (out.stride(0) * out.element_size()) % 16):
            return "the CUDA kernel writes 16-byte aligned rows"
        return None

    backend.register("dequantize_2bit", "cuda", _cuda, _cuda_supports)
