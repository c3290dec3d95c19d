"""Triton kernel for the ternary base-3 packing (docs/FORMATS.md, "Ternary weights").

matmul_base3: out (M, N) = x (M, K) @ (scale · trits)ᵀ (+ bias) with the trits stored 5
per byte: byte j of 80-column block b holds digit i = trit(80b + 16i + j) + 1 in base 3.
So for a fixed digit i, the 16 bytes of a block give 16 *contiguous* columns of x
(80b + 16i .. 80b + 16i + 15): a program loads BLOCKS blocks of bytes (BLOCK_N × 16·BLOCKS)
once, and for each digit i = 0..4 extracts (byte // 3^i) % 3 - 1 and feeds tensor cores
with tl.dot against the matching columns of x.  No bytes are expanded in memory: the
weights are read at 1.6 bits each (the ternary-2bit layout runs on the 2-bit kernels).

dequantize_base3: the same layout -> (N, K) scale · trits, for prefill (M large), where
one dense copy of the weight and cuBLAS beat the fused kernel above.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import INTERPRET as _INTERPRET
from . import unsupported

__all__ = ["matmul_base3", "dequantize_base3", "supports"]


@triton.jit
def _matmul_base3_kernel(
    x_ptr, packed_ptr, scale_ptr, bias_ptr, out_ptr,
    M, N, x_cols, row_bytes, x_stride, out_stride,
    PER_ROW: tl.constexpr, HAS_BIAS: tl.constexpr, DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCKS: tl.constexpr,
):
    BYTES: tl.constexpr = 16 * BLOCKS
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok, n_ok = offs_m < M, offs_n < N
    jj = tl.arange(0, BYTES)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for byte0 in range(0, row_bytes, BYTES):
        bidx = byte0 + jj
        b_ok = bidx < row_bytes
        bytes_ = tl.load(packed_ptr + offs_n[:, None].to(tl.int64) * row_bytes + bidx[None, :],
                         mask=n_ok[:, None] & b_ok[None, :], other=121).to(tl.int32)  # 121: five zero trits
        # column of digit i for byte bidx: 80 · (bidx // 16) + 16 i + bidx % 16
        col0 = 80 * (bidx // 16) + bidx % 16
        for i in tl.static_range(5):
            t = (bytes_ % 3 - 1).to(tl.float32)  # digit i: (BLOCK_N, BYTES)
            bytes_ = bytes_ // 3
            col = col0 + 16 * i
            xi = tl.load(x_ptr + offs_m[:, None].to(tl.int64) * x_stride + col[None, :],
                         mask=m_ok[:, None] & (b_ok & (col < x_cols))[None, :], other=0.0)
            if DOT_F32:
                acc += tl.dot(xi.to(tl.float32), tl.trans(t), input_precision="ieee")
            else:
                acc += tl.dot(xi, tl.trans(t.to(xi.dtype)))  # trits are exact in fp16/bf16
    if PER_ROW:
        s = tl.load(scale_ptr + offs_n, mask=n_ok, other=0.0)
    else:
        s = tl.load(scale_ptr + offs_n * 0)
    acc = acc * s[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + offs_m[:, None].to(tl.int64) * out_stride + offs_n[None, :],
             acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _dequantize_base3_kernel(packed_ptr, scale_ptr, out_ptr, N, K, row_bytes, out_stride,
                             PER_ROW: tl.constexpr, BLOCK_N: tl.constexpr, BYTES: tl.constexpr):
    # a program: BLOCK_N rows x BYTES bytes (BYTES / 16 blocks of 80 columns); for digit i
    # the 16 bytes of a block write 16 contiguous columns
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    bidx = tl.program_id(1) * BYTES + tl.arange(0, BYTES)
    n_ok = offs_n < N
    b_ok = bidx < row_bytes
    bytes_ = tl.load(packed_ptr + offs_n[:, None].to(tl.int64) * row_bytes + bidx[None, :],
                     mask=n_ok[:, None] & b_ok[None, :], other=121).to(tl.int32)
    if PER_ROW:
        s = tl.load(scale_ptr + offs_n, mask=n_ok, other=0.0)
    else:
        s = tl.load(scale_ptr + offs_n * 0)
    col0 = 80 * (bidx // 16) + bidx % 16
    for i in tl.static_range(5):
        t = (bytes_ % 3 - 1).to(tl.float32)
        bytes_ = bytes_ // 3
        col = col0 + 16 * i
        tl.store(out_ptr + offs_n[:, None].to(tl.int64) * out_stride + col[None, :],
                 (t * s[:, None]).to(out_ptr.dtype.element_ty),
                 mask=n_ok[:, None] & (b_ok & (col < K))[None, :])


def dequantize_base3(packed, scale, K, dtype, out=None):
    """(N, K) tensor of `dtype` (into `out` when given, row-contiguous): scale · trits of
    the ternary-base3 weight `packed` (N, ceil(K / 80) · 16), scale float32 (N,) or (1,)."""
    N, row_bytes = packed.shape
    if out is None:
        out = torch.empty(N, K, dtype=dtype, device=packed.device)
    bn, nbytes = (16, 16) if _INTERPRET else (32, 128)
    grid = (triton.cdiv(N, bn), triton.cdiv(row_bytes, nbytes))
    _dequantize_base3_kernel[grid](packed, scale, out, N, K, row_bytes, out.stride(0),
                                   PER_ROW=scale.shape[0] > 1, BLOCK_N=bn, BYTES=nbytes, num_warps=4)
    return out


def supports(x, packed, scale) -> str | None:
    if packed.dtype != torch.uint8:
        return "this kernel takes the ternary-base3 layout (uint8)"
    return unsupported(x.device, x.dtype)


def matmul_base3(x2, packed, scale, bias=None, out=None):
    """out (M, N) = x2 (M, K') @ (scale · trits)ᵀ (+ bias), x2 with a contiguous last dim,
    read as if zero-padded to the packed width (its columns past K' are never read)."""
    M, x_cols = x2.shape
    N, row_bytes = packed.shape
    if out is None:
        out = torch.empty(M, N, dtype=x2.dtype, device=x2.device)
    if _INTERPRET:
        bm, bn, blocks, warps = 16, 16, 1, 4
    else:
        bm, bn, blocks, warps = (16, 64, 4, 4) if M <= 16 else (64, 64, 4, 4)
    grid = (triton.cdiv(M, bm), triton.cdiv(N, bn))
    _matmul_base3_kernel[grid](
        x2, packed, scale, bias if bias is not None else scale, out,
        M, N, x_cols, row_bytes, x2.stride(0) if M > 1 else x_cols, out.stride(0) if M > 1 else N,
        PER_ROW=scale.shape[0] > 1, HAS_BIAS=bias is not None,
        DOT_F32=x2.dtype == torch.float32 or _INTERPRET,
        BLOCK_M=bm, BLOCK_N=bn, BLOCKS=blocks, num_warps=warps,
    )
    return out
