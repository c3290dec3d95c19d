"""Reference fused 2-bit layer forward: the ground truth for every linear_2bit kernel.

    y = S_out · T_outᵀ · (Ŵ · (T_in · S_in · x)) + bias

with Ŵ the 2-bit weight of docs/FORMATS.md ("2-bit weights").
"""

from __future__ import annotations

from ..formats.two_bit import dequantize_2bit
from .transformed_linear import transformed_linear

__all__ = ["linear_2bit"]


def linear_2bit(x, packed, scales, zeros=None, bias=None, q_in=None, signs_in=None,
                q_out=None, signs_out=None, transform_in=False, transform_out=False,
                in_features=-1, out_features=-1):
    return transformed_linear(
        x, lambda dtype: dequantize_2bit(packed, scales, zeros, dtype), bias,
        q_in, signs_in, q_out, signs_out, transform_in, transform_out, out_features,
    )
