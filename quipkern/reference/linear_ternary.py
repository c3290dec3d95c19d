"""Reference fused ternary layer forward: the ground truth for every linear_ternary kernel.

    y = S_out · T_outᵀ · (Ŵ · (T_in · S_in · x)) + bias,   Ŵ = scale · trits

with Ŵ in either ternary layout of docs/FORMATS.md ("Ternary weights"), told apart by
the storage dtype (int32: ternary-2bit, uint8: ternary-base3).
"""

from __future__ import annotations

from ..formats.ternary import dequantize_ternary
from .transformed_linear import transformed_linear

__all__ = ["linear_ternary"]


def linear_ternary(x, packed, scale, bias=None, q_in=None, signs_in=None,
                   q_out=None, signs_out=None, transform_in=False, transform_out=False,
                   in_features=-1, out_features=-1, K=-1):
    """K: the weight's in-dimension (-1: x's width)."""
    return transformed_linear(
        x, lambda dtype: dequantize_ternary(packed, scale, x.shape[-1] if K == -1 else K, dtype), bias,
        q_in, signs_in, q_out, signs_out, transform_in, transform_out, out_features,
    )
