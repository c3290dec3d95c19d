"""Triton randomized Hadamard transform (docs/FORMATS.md, "Transforms").

    y = scale · S_out · (Q ⊗ H_p / sqrt(p)) · S_in · x        (Qᵀ when transpose)

A program owns BLOCK_R rows, padded to NP = M_PAD · p columns (M_PAD: m rounded up to
a power of two >= 16, the padding is zero).  Column j = a·p + b is the flat index, so
the padded row is a tensor whose index bits are [a | b].  The transform is a chain of
mode products, each one a tl.dot on tensor cores:

    H_p: the bits of b in 1-3 chunks of 4..7 bits, each  X(.., 2^c) @ H_{2^c}
         (p < 16: one 16-wide window, H on the b bits and identity on the a bits above)
    Q:   the bits of a,                                  X(.., M_PAD) @ Qᵀ

Each product moves its bit field last (reshape + permute), multiplies, and moves it
back.  Input and output in the row's dtype, fp32 in between ("ieee" dots for fp32 rows,
tf32 otherwise: H and the padding are exact, Q and the data round at 2^-11).
"""

from __future__ import annotations

import triton
import triton.language as tl

import torch

from ..reference.rht import order
from . import unsupported

__all__ = ["rht", "supports"]

MAX_N = 32768
_TILE = 4096  # elements a program aims to own


@triton.jit
def _parity(v):
    v = v ^ (v >> 8)
    v = v ^ (v >> 4)
    v = v ^ (v >> 2)
    v = v ^ (v >> 1)
    return v & 1


@triton.jit
def _hadamard_window(C: tl.constexpr, HB: tl.constexpr):
    """C × C matrix acting on a C-wide bit window: H_{2^HB} on its low HB bits,
    identity on the bits above (unnormalized, entries 0 / +-1)."""
    i = tl.arange(0, C)[:, None]
    j = tl.arange(0, C)[None, :]
    low = (1 << HB) - 1
    h = 1.0 - 2.0 * _parity(i & j & low).to(tl.float32)
    return tl.where((i >> HB) == (j >> HB), h, 0.0)


@triton.jit
def _mode_product(t, K, TOTAL: tl.constexpr, S: tl.constexpr, C: tl.constexpr, PREC: tl.constexpr):
    """Multiply the bits [S, S + C) of the flat index of t (TOTAL elements) by K (2^C × 2^C):
    out[.., j, ..] = sum_i t[.., i, ..] K[i, j]."""
    W: tl.constexpr = 1 << C
    INNER: tl.constexpr = 1 << S
    OUTER: tl.constexpr = TOTAL // (W * INNER)
    t3 = tl.reshape(t, (OUTER, W, INNER))
    t2 = tl.reshape(tl.permute(t3, (0, 2, 1)), (OUTER * INNER, W))
    r = tl.dot(t2, K, input_precision=PREC)
    return tl.reshape(tl.permute(tl.reshape(r, (OUTER, INNER, W)), (0, 2, 1)), (TOTAL,))


@triton.jit
def _rht_kernel(
    x_ptr, y_ptr, q_ptr, sin_ptr, sout_ptr,
    rows, n, n_in, n_out, m, x_stride, y_stride, post,
    HAS_Q: tl.constexpr, HAS_SIN: tl.constexpr, HAS_SOUT: tl.constexpr, TRANSPOSE: tl.constexpr,
    LOG_P: tl.constexpr, LOG_MPAD: tl.constexpr, BLOCK_R: tl.constexpr,
    C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr, PREC: tl.constexpr,
):
    NP: tl.constexpr = 1 << (LOG_P + LOG_MPAD)
    TOTAL: tl.constexpr = BLOCK_R * NP
    pid = tl.program_id(0)
    r = pid * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]
    col = tl.arange(0, NP)[None, :]
    # a padded width reads n_in < n columns (the rest are zeros) and writes n_out <= n
    x = tl.load(x_ptr + r.to(tl.int64) * x_stride + col, mask=(r < rows) & (col < n_in), other=0.0)
    x = x.to(tl.float32)
    if HAS_SIN:
        bit = (tl.load(sin_ptr + col // 8, mask=col < n, other=0) >> (col % 8)) & 1
        x = tl.where(bit != 0, -x, x)
    t = tl.reshape(x, (TOTAL,))

    # H_p over the bits of b
    if LOG_P < 4:
        if LOG_P > 0:
            t = _mode_product(t, _hadamard_window(16, LOG_P), TOTAL, 0, 4, PREC)
    else:
        t = _mode_product(t, _hadamard_window(1 << C0, C0), TOTAL, 0, C0, PREC)
        if C1 > 0:
            t = _mode_product(t, _hadamard_window(1 << C1, C1), TOTAL, C0, C1, PREC)
        if C2 > 0:
            t = _mode_product(t, _hadamard_window(1 << C2, C2), TOTAL, C0 + C1, C2, PREC)

    # Q over the bits of a: out_a = sum_a' x_a' K[a', a] with K = Qᵀ (Q when transposed)
    if HAS_Q:
        MPAD: tl.constexpr = 1 << LOG_MPAD
        i = tl.arange(0, MPAD)[:, None]
        j = tl.arange(0, MPAD)[None, :]
        qmask = (i < m) & (j < m)
        if TRANSPOSE:
            K = tl.load(q_ptr + i * m + j, mask=qmask, other=0.0)
        else:
            K = tl.load(q_ptr + j * m + i, mask=qmask, other=0.0)
        t = _mode_product(t, K, TOTAL, LOG_P, LOG_MPAD, PREC)

    out = tl.reshape(t, (BLOCK_R, NP)) * post
    if HAS_SOUT:
        bit = (tl.load(sout_ptr + col // 8, mask=col < n, other=0) >> (col % 8)) & 1
        out = tl.where(bit != 0, -out, out)
    # (the interpreter truncates fp32 -> bfloat16 where the GPU rounds to nearest even)
    tl.store(y_ptr + r.to(tl.int64) * y_stride + col, out.to(y_ptr.dtype.element_ty),
             mask=(r < rows) & (col < n_out))


def _chunks(log_p: int) -> tuple[int, int, int]:
    """Split log_p >= 4 bits into 1..3 chunks of 4..7 bits."""
    k = -(-log_p // 7)
    sizes = [log_p // k + (1 if i < log_p % k else 0) for i in range(k)]
    return tuple(sizes + [0] * (3 - k))


def supports(x, q, signs_in, signs_out, scale, transpose, n, n_out) -> str | None:
    why = unsupported(x.device, x.dtype)
    if why:
        return why
    if n > MAX_N:
        return f"width {n} exceeds {MAX_N}"
    return None


def rht(x, q, signs_in, signs_out, scale, transpose, n, n_out, out=None):
    """Transform the rows of x (..., n_in) zero-padded to width n, keeping n_out columns
    (validated by quipkern/ops/rht.py); returns out (..., n_out)."""
    n_in = x.shape[-1]
    if out is None:
        out = torch.empty((*x.shape[:-1], n_out), dtype=x.dtype, device=x.device)
    try:
        x2, y2 = x.view(-1, n_in), out.view(-1, n_out)
    except RuntimeError:  # leading dims not flattenable: go through contiguous copies
        return out.copy_(rht(x.contiguous(), q, signs_in, signs_out, scale, transpose, n, n_out))
    rows = x2.shape[0]
    m = order(q)  # q may be an int m: Q = I_m (ops/rht.py)
    has_q = isinstance(q, torch.Tensor)
    p = n // m
    log_p = p.bit_length() - 1
    log_mpad = 0 if m == 1 else max(4, (m - 1).bit_length())
    np_ = 1 << (log_p + log_mpad)
    block_r = max(1, _TILE // np_)
    if log_p < 4 and log_mpad == 0:
        block_r = max(block_r, 16)  # the 16-wide window needs 16 elements
    c0, c1, c2 = _chunks(log_p) if log_p >= 4 else (0, 0, 0)
    qf = q.to(torch.float32).contiguous() if has_q else x2  # dummy pointer when absent
    grid = (triton.cdiv(rows, block_r),)
    _rht_kernel[grid](
        x2, y2, qf, signs_in if signs_in is not None else x2, signs_out if signs_out is not None else x2,
        rows, n, n_in, n_out, m, x2.stride(0) if rows > 1 else n_in, y2.stride(0) if rows > 1 else n_out,
        float(scale) / p**0.5,
        HAS_Q=has_q, HAS_SIN=signs_in is not None, HAS_SOUT=signs_out is not None,
        TRANSPOSE=bool(transpose), LOG_P=log_p, LOG_MPAD=log_mpad, BLOCK_R=block_r,
        C0=c0, C1=c1, C2=c2, PREC="ieee" if x.dtype == torch.float32 else "tf32",
        num_warps=4 if np_ * block_r <= 4096 else 8,
    )
    return out
