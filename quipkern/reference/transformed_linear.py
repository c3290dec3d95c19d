"""The shared shape of every quantized layer's forward, given its dense weight Ŵ:

    y = S_out · T_outᵀ · (Ŵ · (T_in · S_in · x)) + bias

(docs/FORMATS.md, "Transforms").  Each transform is applied only when its flag is set.
"""

from __future__ import annotations

import torch

from .rht import compute_dtype, rht

__all__ = ["transformed_linear"]


def transformed_linear(x, dequantize, bias=None, q_in=None, signs_in=None, q_out=None,
                       signs_out=None, transform_in=False, transform_out=False):
    """`dequantize(dtype)` returns Ŵ (N, K); all math in compute_dtype(x.dtype)."""
    acc = compute_dtype(x.dtype)
    xt = x.to(acc)
    if transform_in:
        xt = rht(xt, q_in, signs_in, None)
    y = torch.matmul(xt, dequantize(acc).T)
    if transform_out:
        y = rht(y, q_out, None, signs_out, transpose=True)
    if bias is not None:
        y = y + bias.to(acc)
    return y.to(x.dtype)
