"""Reference W1.58A8 (BitNet b1.58 weights, int8 activations): the ground truth for the
int8 kernels.

    x' = T_in · S_in · x                         (optional, H-BitLinear / BitNet a4.8)
    q, s_x = per-row absmax of x':  s_x = max|x'_row| / Q,  q = round(x' / s_x) in [-Q, Q]
             Q = 127 for int8 activations (A8), 7 for int4 (A4, held in int8)
    acc = q · tritsᵀ                              exact int32 (|acc| <= 127 · K)
    y   = S_out · T_outᵀ · (acc · s_x · scale) + bias

Weights: the ternary-2bit layout of docs/FORMATS.md (code = trit + 1; a code 3, which no
packer writes, counts as +2 as in every quipkern kernel).  Rounding is half to even
(torch.round), in float32 for float16/bfloat16/float32 activations and float64 for
float64: the integers q are what the kernels must reproduce exactly.
"""

from __future__ import annotations

import torch

from ..formats.two_bit import unpack_2bit
from .rht import compute_dtype, rht

__all__ = ["ACT_BITS", "quantize_act_rows", "matmul_ternary_int8", "linear_ternary_a8"]

ACT_BITS = (8, 4)


def quantize_act_rows(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., K) -> (q int8 (..., K), s float32 (..., 1)) with x ≈ q · s per row, q in
    [-(2^(bits-1) - 1), 2^(bits-1) - 1]; an all-zero row gets s = 1 (and q = 0)."""
    qmax = float(2 ** (bits - 1) - 1)
    acc = compute_dtype(x.dtype)
    xa = x.to(acc)
    amax = xa.abs().amax(dim=-1, keepdim=True)
    s = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.clamp(torch.round(xa / s), -qmax, qmax).to(torch.int8)
    return q, s.to(torch.float32)


def matmul_ternary_int8(q: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """q int8 (M, K) · trits(packed int32 (N, K/16))ᵀ -> int32 (M, N), exact."""
    trits = unpack_2bit(packed).to(torch.int64) - 1
    return (q.to(torch.int64) @ trits.T).to(torch.int32)


def linear_ternary_a8(x, packed, scale, bias=None, q_in=None, signs_in=None, q_out=None, signs_out=None,
                      transform_in=False, transform_out=False, in_features=-1, out_features=-1, act_bits=8):
    N, K = packed.shape[0], packed.shape[1] * 16
    n_out = N if out_features == -1 else out_features
    acc = compute_dtype(x.dtype)
    xt = x.to(acc)
    xt = rht(xt, q_in, signs_in, None, n=K) if transform_in else torch.nn.functional.pad(xt, (0, K - x.shape[-1]))
    q, s = quantize_act_rows(xt.to(x.dtype), act_bits)  # what the rht op hands on: x's dtype
    lead = q.shape[:-1]
    ints = matmul_ternary_int8(q.reshape(-1, K), packed).reshape(*lead, N)
    y = ints.to(acc) * s.to(acc) * scale.to(acc)
    y = rht(y, q_out, None, signs_out, transpose=True, n_out=n_out) if transform_out else y[..., :n_out]
    if bias is not None:
        y = y + bias.to(acc)
    return y.to(x.dtype)
