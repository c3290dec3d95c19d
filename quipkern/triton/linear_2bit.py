"""Triton kernels for the 2-bit format (docs/FORMATS.md, "2-bit weights").

matmul_2bit: out (M, N) = x (M, K) @ Ŵᵀ (+ bias).  One kernel for every M: a program owns
a BLOCK_M × BLOCK_N tile of out; per BLOCK_K step it loads BLOCK_N × BLOCK_K/16 words
once, and for each code position j = 0..15 unpacks (word >> 2j) & 3, applies the group
scale (and zero) in fp32, and feeds tensor cores with tl.dot against x's columns
16w + j.  Small M uses BLOCK_M = 16, the smallest dot tile.

dequantize_2bit: the same unpacking, written out as a dense (N, K) tensor; for large M
the ops layer multiplies that with cuBLAS when it is faster (ops/linear_2bit.py).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["matmul_2bit", "dequantize_2bit", "supports_matmul", "supports_dequantize"]

from . import INTERPRET as _INTERPRET
from . import unsupported
# QUIPKERN_AUTOTUNE=0 skips autotuning (the tests set it: they check values, not speed)
_AUTOTUNE = os.environ.get("QUIPKERN_AUTOTUNE", "1") != "0" and not _INTERPRET


@triton.jit
def _word_scales(scales_ptr, zeros_ptr, offs_n, w_idx, N, G, group_size, HAS_ZEROS: tl.constexpr):
    """Scale (and zero) of every word of a (BLOCK_N, WORDS) tile: a word's 16 columns share a group."""
    sidx = offs_n[:, None].to(tl.int64) * G + ((16 * w_idx) // group_size)[None, :]
    smask = (offs_n[:, None] < N) & (w_idx[None, :] < G * (group_size // 16))
    s = tl.load(scales_ptr + sidx, mask=smask, other=0.0).to(tl.float32)
    if HAS_ZEROS:
        z = tl.load(zeros_ptr + sidx, mask=smask, other=0.0).to(tl.float32)
    else:
        z = tl.full(s.shape, 1.5, tl.float32)
    return s, z


@triton.jit
def _matmul_2bit_kernel(
    x_ptr, packed_ptr, scales_ptr, zeros_ptr, bias_ptr, out_ptr,
    M, N, K, G, group_size, x_stride, out_stride, M_BUCKET,
    HAS_ZEROS: tl.constexpr, HAS_BIAS: tl.constexpr, PREC: tl.constexpr, DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # Column 16w + j of the tile is code j of word w.  Rather than interleave the 16 codes
    # of each word back into column order (a costly reshape), the K step is 16 dots, one
    # per code position j, against the matching strided columns of x.
    WORDS: tl.constexpr = BLOCK_K // 16
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < N
    m_ok = offs_m < M
    KW = K // 16
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for w0 in range(0, KW, WORDS):
        w_idx = w0 + tl.arange(0, WORDS)
        w_ok = w_idx < KW
        words = tl.load(packed_ptr + offs_n[:, None].to(tl.int64) * KW + w_idx[None, :],
                        mask=n_ok[:, None] & w_ok[None, :], other=0)
        s, z = _word_scales(scales_ptr, zeros_ptr, offs_n, w_idx, N, G, group_size, HAS_ZEROS)
        x_base = x_ptr + offs_m[:, None].to(tl.int64) * x_stride + 16 * w_idx[None, :]
        x_mask = m_ok[:, None] & w_ok[None, :]
        for j in tl.static_range(16):
            wq = (((words >> (2 * j)) & 3).to(tl.float32) - z) * s
            xj = tl.load(x_base + j, mask=x_mask, other=0.0)
            if DOT_F32:
                acc += tl.dot(xj.to(tl.float32), tl.trans(wq), input_precision=PREC)
            else:
                acc += tl.dot(xj, tl.trans(wq.to(xj.dtype)), input_precision=PREC)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + offs_m[:, None].to(tl.int64) * out_stride + offs_n[None, :],
             acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _dequantize_2bit_kernel(packed_ptr, scales_ptr, zeros_ptr, out_ptr, N, K, G, group_size,
                            HAS_ZEROS: tl.constexpr, BLOCK_N: tl.constexpr, WORDS: tl.constexpr):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    w_idx = tl.program_id(1) * WORDS + tl.arange(0, WORDS)
    KW = K // 16
    ok = (offs_n[:, None] < N) & (w_idx[None, :] < KW)
    words = tl.load(packed_ptr + offs_n[:, None].to(tl.int64) * KW + w_idx[None, :], mask=ok, other=0)
    s, z = _word_scales(scales_ptr, zeros_ptr, offs_n, w_idx, N, G, group_size, HAS_ZEROS)
    j = tl.arange(0, 16)
    codes = (words[:, :, None] >> (2 * j)[None, None, :]) & 3
    w = (codes.to(tl.float32) - z[:, :, None]) * s[:, :, None]
    ptrs = out_ptr + offs_n[:, None, None].to(tl.int64) * K + (16 * w_idx)[None, :, None] + j[None, None, :]
    tl.store(ptrs, w.to(out_ptr.dtype.element_ty), mask=ok[:, :, None])


@triton.jit
def _dequantize_2bit_folded_kernel(packed_ptr, scales_ptr, zeros_ptr, q_ptr, out_ptr, N, K, G, group_size, m, P,
                                   lines, HAS_ZEROS: tl.constexpr, FOLD_IN: tl.constexpr, MP: tl.constexpr,
                                   COLS: tl.constexpr, TILES: tl.constexpr, EXACT_F32: tl.constexpr):
    # Ŵ with a transform's Q factor folded in (ops/dequantize_2bit.py): along the rows
    # (FOLD_IN false) (Qᵀ ⊗ I_P) Ŵ, row a·P + b; along the columns (FOLD_IN) Ŵ (Q ⊗ I_P),
    # column c·P + d.  An element moves only along the chunk index a, and output chunk a is
    # sum_a' Q[a', a] · input chunk a'.  A tile is one "line" (rows out: row b of every
    # chunk; columns in: row n) and COLS places inside one scale group (columns k, or
    # columns d of every chunk), so that with codes C[a', place] and the chunks' scales
    # s[a'] and zeros z[a'] (Ŵ = s·(C − z)) the tile is
    #     A·C − A·z,  A[a, a'] = Q[a', a]·s[a'],
    # C exact in bfloat16 (0..3) and A as a bfloat16 hi + lo pair: two tensor-core
    # products, ~2^-16 relative.
    pid = tl.program_id(0)
    line = pid % lines
    c = tl.arange(0, MP)
    j = tl.arange(0, COLS)
    i0 = tl.arange(0, MP)[:, None]
    i1 = tl.arange(0, MP)[None, :]
    qt = tl.load(q_ptr + i1 * m + i0, mask=(i0 < m) & (i1 < m), other=0.0)  # qt[a, a'] = Q[a', a]
    for t in tl.static_range(TILES):
        j0 = ((pid // lines) * TILES + t) * COLS  # first place of the tile
        if FOLD_IN:
            row = line + 0 * c
            col0 = c * P + j0
            ok = (c < m) & (j0 + 0 * c < P)
        else:
            row = c * P + line
            col0 = j0 + 0 * c
            ok = (c < m) & (col0 < K)
        sidx = row.to(tl.int64) * G + col0 // group_size
        s = tl.load(scales_ptr + sidx, mask=ok, other=0.0).to(tl.float32)
        a = qt * s[None, :]
        if HAS_ZEROS:
            z = tl.load(zeros_ptr + sidx, mask=ok, other=0.0).to(tl.float32)
            bias = tl.sum(a * z[None, :], axis=1)
        else:
            bias = tl.sum(a, axis=1) * 1.5
        w = tl.arange(0, COLS // 16)
        words = tl.load(packed_ptr + (row.to(tl.int64) * (K // 16) + col0 // 16)[:, None] + w[None, :],
                        mask=ok[:, None], other=0)
        codes = (words[:, :, None] >> (2 * tl.arange(0, 16))[None, None, :]) & 3
        codes = tl.reshape(codes, (MP, COLS))
        if EXACT_F32:  # the interpreter multiplies bfloat16 tiles as raw integers
            res = tl.dot(a, codes.to(tl.float32), input_precision="ieee")
        else:
            cb = codes.to(tl.bfloat16)
            a_hi = a.to(tl.bfloat16)
            a_lo = (a - a_hi.to(tl.float32)).to(tl.bfloat16)
            res = tl.dot(a_hi, cb) + tl.dot(a_lo, cb)
        res = res - bias[:, None]
        optr = out_ptr + (row.to(tl.int64) * K + col0)[:, None] + j[None, :]
        tl.store(optr, res.to(out_ptr.dtype.element_ty), mask=ok[:, None])


def _default_config(M: int) -> dict:
    """The config used without autotuning (BLOCK_K >= 256: each of the 16 dots needs K >= 16)."""
    if _INTERPRET:
        return dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=256, num_warps=4)
    if M <= 16:
        return dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=256, num_warps=4, num_stages=3)
    if M <= 64:
        return dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=256, num_warps=4, num_stages=3)
    return dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=256, num_warps=8, num_stages=3)


def _configs():
    out = []
    for bm, bn, bk, w, s in [
        (16, 16, 256, 4, 3), (16, 32, 256, 4, 3), (16, 64, 256, 4, 3), (16, 32, 512, 4, 2),
        (32, 64, 256, 4, 3), (64, 64, 256, 4, 3), (64, 128, 256, 8, 3), (128, 128, 256, 8, 3),
        (128, 256, 256, 8, 2), (128, 64, 256, 4, 3),
    ]:
        out.append(triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s))
    return out


def _prune(configs, named_args, **kwargs):
    """Tile heights that fit M: 16 for decode, up to 64 for small batches, >= 64 for prefill."""
    M = named_args["M"]
    if M <= 16:
        keep = [c for c in configs if c.kwargs["BLOCK_M"] == 16]
    elif M <= 64:
        keep = [c for c in configs if c.kwargs["BLOCK_M"] <= 64]
    else:
        keep = [c for c in configs if c.kwargs["BLOCK_M"] >= 64]
    return keep or configs


def _m_bucket(M):
    """Autotuning key for M: the next power of two."""
    return 1 << max(0, (int(M) - 1).bit_length())


_matmul_tuned = triton.autotune(
    configs=_configs(), key=["M_BUCKET", "N", "K", "HAS_ZEROS"],
    prune_configs_by={"early_config_prune": _prune},
)(_matmul_2bit_kernel)


def supports_matmul(x, packed, scales, zeros, bias) -> str | None:
    return unsupported(x.device, x.dtype)


def supports_dequantize(packed, scales, zeros, dtype, q_out=None, q_in=None) -> str | None:
    why = unsupported(packed.device, dtype, "output dtype")
    if why:
        return why
    if q_out is not None and q_in is not None:
        return "the Triton kernel folds one factor a call (q_out or q_in), not both"
    if q_in is not None and (packed.shape[1] * 16 // q_in.shape[0]) % 16:
        return f"K / m_in = {packed.shape[1] * 16} / {q_in.shape[0]} is not a multiple of 16 (whole packed words a chunk)"
    return None


def matmul_2bit(x2, packed, scales, zeros, bias, out=None):
    """out (M, N) = x2 (M, K) @ Ŵᵀ (+ bias), x2 with a contiguous last dim."""
    M, K = x2.shape
    N, G = packed.shape[0], scales.shape[1]
    if out is None:
        out = torch.empty(M, N, dtype=x2.dtype, device=x2.device)
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]), triton.cdiv(N, meta["BLOCK_N"]))  # noqa: E731
    args = (x2, packed, scales, zeros if zeros is not None else scales, bias if bias is not None else scales, out,
            M, N, K, G, K // G, x2.stride(0) if M > 1 else K, out.stride(0) if M > 1 else N, _m_bucket(M))
    flags = dict(
        HAS_ZEROS=zeros is not None, HAS_BIAS=bias is not None,
        PREC="ieee" if x2.dtype == torch.float32 or _INTERPRET else "tf32",
        # the interpreter multiplies bfloat16 tiles as raw integers: give it fp32
        DOT_F32=x2.dtype == torch.float32 or _INTERPRET,
    )
    if _AUTOTUNE:
        _matmul_tuned[grid](*args, **flags)
    else:
        _matmul_2bit_kernel[grid](*args, **flags, **_default_config(M))
    return out


def dequantize_2bit(packed, scales, zeros, dtype, q_out=None, q_in=None, out=None):
    N, K = packed.shape[0], packed.shape[1] * 16
    G = scales.shape[1]
    if out is None:
        out = torch.empty(N, K, dtype=dtype, device=packed.device)
    if q_out is not None or q_in is not None:
        return _dequantize_folded(packed, scales, zeros, q_out, q_in, out)
    bn, words = (16, 4) if _INTERPRET else (32, 16)
    grid = (triton.cdiv(N, bn), triton.cdiv(K // 16, words))
    _dequantize_2bit_kernel[grid](packed, scales, zeros if zeros is not None else scales, out, N, K, G, K // G,
                                  HAS_ZEROS=zeros is not None, BLOCK_N=bn, WORDS=words)
    return out


def _dequantize_folded(packed, scales, zeros, q_out, q_in, out):
    """out = (Q_outᵀ ⊗ I) Ŵ or Ŵ (Q_in ⊗ I) (supports_dequantize: one of them)."""
    N, K = packed.shape[0], packed.shape[1] * 16
    G = scales.shape[1]
    gs = K // G
    fold_in = q_in is not None
    q = (q_in if fold_in else q_out).to(torch.float32).contiguous()
    m = q.shape[0]
    P = (K if fold_in else N) // m
    mp = max(16, 1 << (m - 1).bit_length())
    # a tile's places share a scale group (and, folding columns, lie in one chunk)
    span = min(gs, P) if fold_in else gs
    cols = 16
    while cols * 2 <= min(span, 128) and span % (cols * 2) == 0:
        cols *= 2
    lines = N if fold_in else P
    places = P if fold_in else K
    tiles = 1 if _INTERPRET else max(1, min(4, places // cols))
    grid = (lines * triton.cdiv(places, cols * tiles),)
    _dequantize_2bit_folded_kernel[grid](
        packed, scales, zeros if zeros is not None else scales, q, out, N, K, G, gs, m, P, lines,
        HAS_ZEROS=zeros is not None, FOLD_IN=fold_in, MP=mp, COLS=cols, TILES=tiles,
        EXACT_F32=_INTERPRET or out.dtype == torch.float32,  # float32: no bf16 split (its 2^-17 is float32-visible)
        num_warps=4)
    return out
