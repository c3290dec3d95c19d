"""torch.ops.quipkern.dequantize_ternary: either ternary layout of docs/FORMATS.md ->
(N, K) dense.  packed int32 (ternary-2bit) or uint8 (ternary-base3); scale float32 (N,)
or (1,); in_features K; dtype: the output dtype."""

from __future__ import annotations

import torch

from .. import triton as _triton
from .._checks import FLOAT_DTYPES
from ..formats.ternary import check_ternary_weight
from ..formats.ternary import dequantize_ternary as _reference
from . import backend

__all__ = ["dequantize_ternary"]


def _check(packed, scale, K, dtype, check_data):
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dequantize_ternary: 'dtype' must be one of {FLOAT_DTYPES}; got {dtype}")
    if K < 1:
        raise ValueError(f"dequantize_ternary: 'K' (in_features) must be >= 1; got {K}")
    return check_ternary_weight("dequantize_ternary", packed, scale, K, packed.device, check_data)


@torch.library.custom_op("quipkern::dequantize_ternary", mutates_args=())
def dequantize_ternary(packed: torch.Tensor, scale: torch.Tensor, K: int,
                       dtype: torch.dtype = torch.float16) -> torch.Tensor:
    _check(packed, scale, K, dtype, True)
    return backend.dispatch("dequantize_ternary", packed.device.type, packed, scale, K, dtype)


@dequantize_ternary.register_fake
def _(packed, scale, K, dtype=torch.float16):
    N = _check(packed, scale, K, dtype, False)
    return packed.new_empty((N, K), dtype=dtype)


backend.register("dequantize_ternary", "reference", _reference)

if _triton.AVAILABLE:
    from ..triton import linear_ternary as _tlt

    def _triton_dequantize(packed, scale, K, dtype):
        return _tlt.dequantize_base3(packed, scale.float().contiguous(), K, dtype)

    def _triton_supports(packed, scale, K, dtype):
        if packed.dtype != torch.uint8:
            return "the Triton dequantize takes the ternary-base3 layout (uint8)"
        if dtype == torch.float64:
            return "float64 output: the reference"
        return _triton.unsupported(packed.device, dtype)

    backend.register("dequantize_ternary", "triton", _triton_dequantize, _triton_supports)
