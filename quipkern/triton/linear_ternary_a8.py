"""Triton int8 x ternary matmul (W1.58A8, docs/FORMATS.md "Ternary weights", 2-bit packing).

matmul_ternary_int8: out int32 (M, N) = q int8 (M, K) · tritsᵀ, exact.  A program owns a
BLOCK_M × BLOCK_N tile; per BLOCK_K step it loads the int8 activations and the packed
words, expands code (word >> 2(k % 16)) & 3 to the int8 trit code - 1 in registers and
feeds the int8 tensor cores (tl.dot, int32 accumulation).  Under Triton's interpreter
the product is a broadcast sum in int32 (its dot would multiply in int8).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import INTERPRET as _INTERPRET

__all__ = ["matmul_ternary_int8", "supports"]


@triton.jit
def _kernel(q_ptr, packed_ptr, out_ptr, M, N, K, q_stride, out_stride,
            BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SUM_DOT: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    KW = K // 16
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + offs_k
        a = tl.load(q_ptr + offs_m[:, None].to(tl.int64) * q_stride + k[None, :],
                    mask=(offs_m[:, None] < M) & (k[None, :] < K), other=0)
        w = tl.load(packed_ptr + offs_n[None, :].to(tl.int64) * KW + (k // 16)[:, None],
                    mask=(offs_n[None, :] < N) & (k[:, None] < K), other=0x55555555)  # code 1: trit 0
        t = (((w >> (2 * (k % 16))[:, None]) & 3) - 1).to(tl.int8)  # (BLOCK_K, BLOCK_N)
        if SUM_DOT:
            acc += tl.sum(a.to(tl.int32)[:, :, None] * t.to(tl.int32)[None, :, :], axis=1)
        else:
            acc = tl.dot(a, t, acc, out_dtype=tl.int32)
    tl.store(out_ptr + offs_m[:, None].to(tl.int64) * out_stride + offs_n[None, :], acc,
             mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


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
    bm = 16 if M <= 16 else 64
    bn, bk = (32, 32) if _INTERPRET else (128, 128)
    grid = (triton.cdiv(M, bm), triton.cdiv(N, bn))
    _kernel[grid](q, packed, out, M, N, K, q.stride(0), out.stride(0),
                  BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, SUM_DOT=_INTERPRET, num_warps=4)
    return out
