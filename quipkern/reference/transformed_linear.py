"""The shared shape of every quantized layer's forward, given its dense weight Ŵ:

    y = S_out · T_outᵀ · (Ŵ · (T_in · S_in · x)) + bias

(docs/FORMATS.md, "Transforms").  Each transform is applied only when its flag is set.
A padded layer (docs/FORMATS.md, "Widths without a cheap transform") has Ŵ of shape
(N, K) with K >= in_features = x's width and N >= out_features: x is zero-padded to K
(before T_in) and the output cut to out_features (after T_outᵀ).
"""

from __future__ import annotations

import torch

import torch.nn.functional as F

from .rht import compute_dtype, rht

__all__ = ["transformed_linear"]


def transformed_linear(x, dequantize, bias=None, q_in=None, signs_in=None, q_out=None,
                       signs_out=None, transform_in=False, transform_out=False, out_features=-1):
    """`dequantize(dtype)` returns Ŵ (N, K); all math in compute_dtype(x.dtype)."""
    acc = compute_dtype(x.dtype)
    w = dequantize(acc)
    N, K = w.shape
    n_out = N if out_features == -1 else out_features
    xt = x.to(acc)
    if transform_in:
        xt = rht(xt, q_in, signs_in, None, n=K)
    else:
        xt = F.pad(xt, (0, K - x.shape[-1]))
    y = torch.matmul(xt, w.T)
    if transform_out:
        y = rht(y, q_out, None, signs_out, transpose=True, n_out=n_out)
    else:
        y = y[..., :n_out]
    if bias is not None:
        y = y + bias.to(acc)
    return y.to(x.dtype)
