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


def supports_dequantize(packed, scales, zeros, dtype) -> str | None:
    return unsupported(packed.device, dtype, "output dtype")


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


def dequantize_2bit(packed, scales, zeros, dtype, out=None):
    N, K = packed.shape[0], packed.shape[1] * 16
    G = scales.shape[1]
    if out is None:
        out = torch.empty(N, K, dtype=dtype, device=packed.device)
    bn, words = (16, 4) if _INTERPRET else (32, 16)
    grid = (triton.cdiv(N, bn), triton.cdiv(K // 16, words))
    _dequantize_2bit_kernel[grid](packed, scales, zeros if zeros is not None else scales, out, N, K, G, K // G,
                                  HAS_ZEROS=zeros is not None, BLOCK_N=bn, WORDS=words)
    return out
