"""Triton int8 x ternary matmul (W1.58A8, docs/FORMATS.md "Ternary weights", 2-bit packing).

matmul_ternary_int8: out int32 (M, N) = q int8 (M, K) · tritsᵀ, exact.  A program owns a
BLOCK_M × BLOCK_N tile; per BLOCK_K step it loads the packed words once, expands code j of
every word ((word >> 2j) & 3) to the int8 trit code − 1 in registers and feeds the int8
tensor cores (tl.dot, int32 accumulation) with the matching columns 16w + j of q.  Under
Triton's interpreter the product is a broadcast sum in int32 (its dot would multiply in int8).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import INTERPRET as _INTERPRET

__all__ = ["matmul_ternary_int8", "expand_trits_int8", "supports"]


@triton.jit
def _kernel(q_ptr, packed_ptr, out_ptr, M, N, K, q_stride, out_stride,
            BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SUM_DOT: tl.constexpr):
    # Column 16w + j of the K step is code j of word w: each word is loaded once and the
    # step is 16 int8 dots, one per code position j, against the strided columns 16w + j
    # of q (the 2-bit Triton kernel's scheme; no reshape back into column order).
    WORDS: tl.constexpr = BLOCK_K // 16
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = offs_m < M
    n_ok = offs_n < N
    KW = K // 16
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for w0 in range(0, KW, WORDS):
        w_idx = w0 + tl.arange(0, WORDS)
        w_ok = w_idx < KW
        # (WORDS, BLOCK_N); code 1 (trit 0) past the end
        words = tl.load(packed_ptr + offs_n[None, :].to(tl.int64) * KW + w_idx[:, None],
                        mask=n_ok[None, :] & w_ok[:, None], other=0x55555555)
        q_base = q_ptr + offs_m[:, None].to(tl.int64) * q_stride + 16 * w_idx[None, :]
        q_mask = m_ok[:, None] & w_ok[None, :]
        for j in tl.static_range(16):
            t = (((words >> (2 * j)) & 3) - 1).to(tl.int8)
            a = tl.load(q_base + j, mask=q_mask, other=0)
            if SUM_DOT:
                acc += tl.sum(a.to(tl.int32)[:, :, None] * t.to(tl.int32)[None, :, :], axis=1)
            else:
                acc = tl.dot(a, t, acc, out_dtype=tl.int32)
    tl.store(out_ptr + offs_m[:, None].to(tl.int64) * out_stride + offs_n[None, :], acc,
             mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _expand_kernel(packed_ptr, out_ptr, N, K, BLOCK_N: tl.constexpr, WORDS: tl.constexpr):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    w_idx = tl.program_id(1) * WORDS + tl.arange(0, WORDS)
    KW = K // 16
    ok = (offs_n[:, None] < N) & (w_idx[None, :] < KW)
    words = tl.load(packed_ptr + offs_n[:, None].to(tl.int64) * KW + w_idx[None, :], mask=ok, other=0)
    j = tl.arange(0, 16)
    t = (((words[:, :, None] >> (2 * j)[None, None, :]) & 3) - 1).to(tl.int8)
    ptrs = out_ptr + offs_n[:, None, None].to(tl.int64) * K + (16 * w_idx)[None, :, None] + j[None, None, :]
    tl.store(ptrs, t, mask=ok[:, :, None])


def expand_trits_int8(packed, out=None):
    """The trits of a ternary-2bit weight as int8 (N, K): the operand of an int8 GEMM
    (cuBLAS through torch._int_mm) when M is large enough to pay for writing it."""
    N, K = packed.shape[0], packed.shape[1] * 16
    if out is None:
        out = torch.empty(N, K, dtype=torch.int8, device=packed.device)
    bn, words = (16, 16) if _INTERPRET else (32, 64)
    grid = (triton.cdiv(N, bn), triton.cdiv(K // 16, words))
    _expand_kernel[grid](packed, out, N, K, BLOCK_N=bn, WORDS=words)
    return out


def _config(M: int) -> dict:
    """Tiles by M (BLOCK_K = 512: each of the 16 int8 dots then has K = 32, the mma's depth)."""
    if _INTERPRET:
        return dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=512, num_warps=4)
    if M <= 16:
        return dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=512, num_warps=4, num_stages=3)
    if M <= 64:
        return dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=512, num_warps=4, num_stages=3)
    return dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=512, num_warps=8, num_stages=3)


def supports(q, packed) -> str | None:
    if q.device.type == "cpu" and not _INTERPRET:
        return "CPU tensors run in Triton only under TRITON_INTERPRET=1"
    if q.device.type not in ("cpu", "cuda"):
        return f"device type {q.device.type} is not supported by Triton here"
    return None


def matmul_ternary_int8(q, packed, out=None):
    """Validated by quipkern/ops/linear_ternary_a8.py; returns out (M, N) int32."""
    M, K = q.shape
    N = packed.shape[0]
    if out is None:
        out = torch.empty(M, N, dtype=torch.int32, device=q.device)
    if q.stride(1) != 1:
        q = q.contiguous()
    cfg = _config(M)
    grid = (triton.cdiv(M, cfg["BLOCK_M"]), triton.cdiv(N, cfg["BLOCK_N"]))
    _kernel[grid](q, packed, out, M, N, K, q.stride(0), out.stride(0), SUM_DOT=_INTERPRET, **cfg)
    return out
