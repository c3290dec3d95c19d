"""Reference randomized Hadamard transform: the ground truth for every rht kernel.

    y = scale · S_out · T · S_in · x        (T replaced by Tᵀ when transpose=True)

T = Q ⊗ (H_p / sqrt(p)) acts on the last dim (docs/FORMATS.md, "Transforms"); S_in and
S_out are the sign bitmasks of formats/signs.py.  Computed in float64 for float64
input, else float32, and returned in the input dtype.  Arguments are validated by the
op layer (quipkern/ops/rht.py), not here.
"""

from __future__ import annotations

import math

import torch

from ..formats.signs import unpack_signs

__all__ = ["rht", "fwht", "compute_dtype"]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def fwht(y: torch.Tensor) -> torch.Tensor:
    """Unnormalized Walsh–Hadamard transform (Sylvester order) along the last dim,
    whose size must be a power of two."""
    lead, p = y.shape[:-1], y.shape[-1]
    h = 1
    while h < p:
        y = y.reshape(*lead, p // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack((a + b, a - b), dim=-2)
        h *= 2
    return y.reshape(*lead, p)


def rht(x, q=None, signs_in=None, signs_out=None, scale=1.0, transpose=False):
    acc = compute_dtype(x.dtype)
    n = x.shape[-1]
    m = 1 if q is None else q.shape[0]
    p = n // m
    y = x.to(acc)
    if signs_in is not None:
        y = y * unpack_signs(signs_in, n, acc)
    y = fwht(y.reshape(-1, m, p)) * (1.0 / math.sqrt(p))
    if q is not None:
        qa = q.to(acc)
        y = torch.matmul(qa.T if transpose else qa, y)
    y = y.reshape(x.shape)
    if signs_out is not None:
        y = y * unpack_signs(signs_out, n, acc)
    if scale != 1.0:
        y = y * scale
    return y.to(x.dtype)
