"""Reference randomized Hadamard transform: the ground truth for every rht kernel.

    y = scale · S_out · T · S_in · x        (T replaced by Tᵀ when transpose=True)

For a padded width (docs/FORMATS.md, "Widths without a cheap transform") x holds the
first n_in <= n elements (the rest are zeros) and the first n_out <= n outputs are kept.

T = Q ⊗ (H_p / sqrt(p)) acts on the last dim (docs/FORMATS.md, "Transforms"); S_in and
S_out are the sign bitmasks of formats/signs.py.  Computed in float64 for float64
input, else float32, and returned in the input dtype.  Arguments are validated by the
op layer (quipkern/ops/rht.py), not here.
"""

from __future__ import annotations

import math

import torch

from ..formats.signs import unpack_signs

__all__ = ["rht", "fwht", "compute_dtype", "order", "fold_q", "fold_hadamard"]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def order(q) -> int:
    """m of a transform's dense factor: q (m, m), an int m (Q = I_m) or None (m = 1)."""
    return 1 if q is None else q if isinstance(q, int) else q.shape[0]


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


def rht(x, q=None, signs_in=None, signs_out=None, scale=1.0, transpose=False, n=-1, n_out=-1):
    """n: the transform width (x is zero-padded up to it; -1: x's width); n_out: the
    number of leading outputs kept (-1: n).  q may also be an int m, for Q = I_m (H_p on
    each of m chunks: the backends' form of a transform whose Q is folded elsewhere,
    quipkern/ops/rht.py)."""
    acc = compute_dtype(x.dtype)
    n = x.shape[-1] if n == -1 else n
    n_out = n if n_out == -1 else n_out
    m = order(q)
    p = n // m
    y = torch.nn.functional.pad(x.to(acc), (0, n - x.shape[-1]))
    if signs_in is not None:
        y = y * unpack_signs(signs_in, n, acc)
    y = fwht(y.reshape(-1, m, p)) * (1.0 / math.sqrt(p))
    if isinstance(q, torch.Tensor):
        qa = q.to(acc)
        y = torch.matmul(qa.T if transpose else qa, y)
    y = y.reshape(*x.shape[:-1], n)
    if signs_out is not None:
        y = y * unpack_signs(signs_out, n, acc)
    if scale != 1.0:
        y = y * scale
    return y[..., :n_out].to(x.dtype).contiguous()


def fold_q(w: torch.Tensor, q_out=None, q_in=None) -> torch.Tensor:
    """(Q_outᵀ ⊗ I) · w · (Q_in ⊗ I) for a weight w (N, K), in w's dtype: the Q factors of
    the output and input transforms moved into the weight.  T = Q ⊗ H_p/sqrt(p) is
    (Q ⊗ I)(I ⊗ H_p/sqrt(p)) with commuting factors, so a layer
    S_out·T_outᵀ·w·T_in·S_in equals S_out·(I ⊗ H)·fold_q(w, Q_out, Q_in)·(I ⊗ H)·S_in."""
    N, K = w.shape
    if q_out is not None:
        m = q_out.shape[0]
        w = (q_out.to(w.dtype).T @ w.reshape(m, (N // m) * K)).reshape(N, K)
    if q_in is not None:
        m = q_in.shape[0]
        w = (w.reshape(N, m, K // m).transpose(1, 2) @ q_in.to(w.dtype)).transpose(1, 2).reshape(N, K)
    return w


def fold_hadamard(w: torch.Tensor, m: int = 1, signs_in=None) -> torch.Tensor:
    """w · (I_m ⊗ H_p/sqrt(p)) · S_in for a weight w (N, K = m·p), in w's dtype: the rest of
    the input transform (after fold_q's Q_in) moved into the weight, so that with
    fold_q(w, None, Q_in) first the layer's S_out·T_outᵀ·w·T_in·S_in·x needs no transform
    of x.  Row n of the result is S_in·(I_m ⊗ H_p/sqrt(p))·w[n] (H_p is symmetric): the rht
    of the row with S_in as its output signs."""
    return rht(w, m if m > 1 else None, None, signs_in)

