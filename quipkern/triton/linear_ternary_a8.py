"""Triton int8 x ternary matmul (W1.58A8, docs/FORMATS.md "Ternary weights", 2-bit packing).

matmul_ternary_int8: out int32 (M, N) = q int8 (M, K) · tritsᵀ, exact.  A program owns a
BLOCK_M × BLOCK_N tile; per BLOCK_K step it loads the packed words once, expands code j of
every word ((word >> 2j) & 3) to the int8 trit code − 1 in registers and feeds the int8
tensor cores (tl.dot, int32 accumulation) with the matching columns 16w + j of q.  Under
Triton's interpreter the product is a broadcast sum in int32 (its dot would multiply in int8).

expand_trits_int8 + gemm_int8: M >= 9 in the ops (below, the CUDA int8 GEMV).  The trits are written once as
an int8 (N, K) copy (int32 words of four trits, at close to copy speed), then a plain
int8 GEMM multiplies both operands from shared memory (TMA + wgmma on Hopper; pointer
loads elsewhere), with scale_rows_cols's epilogue inside when the layer asks.  Expanding
in registers instead was 2-4x slower on the H100 (benchmarks/probe/a8_gemm.py).

quantize_rows: the per-row absmax quantization of quipkern/reference/linear_ternary_a8.py
in one kernel (a program a row: its absmax, then q = round_half_even(x / s) clamped),
bit-identical to the reference's float32 arithmetic.  scale_rows_cols: the epilogue
(acc · s_row) · scale_col in float32, rounded once to the output's dtype.  In the layer
these replace chains of elementwise torch passes over (M, K) and (M, N), which cost more
than the int8 GEMM at M = 4096.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import INTERPRET as _INTERPRET

__all__ = ["matmul_ternary_int8", "expand_trits_int8", "gemm_int8", "quantize_rows", "scale_rows_cols", "supports"]


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
def _expand_kernel(packed_ptr, out_ptr, N, KW, BLOCK_N: tl.constexpr, WORDS: tl.constexpr):
    # out viewed as int32 (N, 4·KW): element 4w + r holds trits 4r .. 4r + 3 of word w as
    # its four bytes (little-endian: byte b = column 16w + 4r + b), i.e. byte r of the word
    # with its 2-bit fields spread one a byte, then code − 1 in every byte at once
    # ((v | 0x80) − 1) ^ 0x80, which never borrows across bytes.
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    w_idx = tl.program_id(1) * WORDS + tl.arange(0, WORDS)
    ok = (offs_n[:, None] < N) & (w_idx[None, :] < KW)
    words = tl.load(packed_ptr + offs_n[:, None].to(tl.int64) * KW + w_idx[None, :], mask=ok, other=0)
    r = tl.arange(0, 4)
    byte = (words.to(tl.uint32, bitcast=True)[:, :, None] >> (8 * r).to(tl.uint32)[None, None, :]) & 0xFF
    spread = (byte & 0x03) | ((byte & 0x0C) << 6) | ((byte & 0x30) << 12) | ((byte & 0xC0) << 18)
    v = ((spread | 0x80808080) - 0x01010101) ^ 0x80808080
    v = tl.reshape(v, (BLOCK_N, 4 * WORDS)).to(tl.int32, bitcast=True)
    cols = 4 * (tl.program_id(1) * WORDS) + tl.arange(0, 4 * WORDS)
    tl.store(out_ptr + offs_n[:, None].to(tl.int64) * (4 * KW) + cols[None, :], v,
             mask=(offs_n[:, None] < N) & (cols[None, :] < 4 * KW))


def expand_trits_int8(packed, out=None):
    """The trits of a ternary-2bit weight as int8 (N, K): the operand of the prefill int8
    GEMM (gemm_int8).  Written as int32 words of four trits (one 16-byte store per
    thread and per four words) at close to copy speed."""
    N, K = packed.shape[0], packed.shape[1] * 16
    if out is None:
        out = torch.empty(N, K, dtype=torch.int8, device=packed.device)
    bn, words = (16, 16) if _INTERPRET else (32, 64)
    grid = (triton.cdiv(N, bn), triton.cdiv(K // 16, words))
    _expand_kernel[grid](packed, out.view(torch.int32), N, K // 16, BLOCK_N=bn, WORDS=words)
    return out


@triton.jit
def _tile_ids(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    # programs walk GROUP_M row tiles per column tile, so that a column tile of trits is
    # reused from L2
    pid = tl.program_id(0)
    per_group = GROUP_M * tl.cdiv(N, BLOCK_N)
    first_m = (pid // per_group) * GROUP_M
    rows = tl.minimum(tl.cdiv(M, BLOCK_M) - first_m, GROUP_M)
    return first_m + (pid % per_group) % rows, (pid % per_group) // rows


@triton.jit
def _store_tile(acc, out_ptr, s_ptr, scale_ptr, offs_m, offs_n, M, N, out_stride, SCALED: tl.constexpr,
                PER_ROW: tl.constexpr):
    m_ok, n_ok = offs_m < M, offs_n < N
    out_ptrs = out_ptr + offs_m[:, None].to(tl.int64) * out_stride + offs_n[None, :]
    ok = m_ok[:, None] & n_ok[None, :]
    if SCALED:  # the reference's float32 steps: (acc · s) · scale, rounded once to out's dtype
        sr = tl.load(s_ptr + offs_m, mask=m_ok, other=0.0)
        if PER_ROW:
            w = tl.load(scale_ptr + offs_n, mask=n_ok, other=0.0)
        else:
            w = tl.load(scale_ptr + offs_n * 0)
        y = (acc.to(tl.float32) * sr[:, None]) * w[None, :]
        tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=ok)
    else:
        tl.store(out_ptrs, acc, mask=ok)


@triton.jit
def _gemm_kernel(q_ptr, w_ptr, out_ptr, s_ptr, scale_ptr, M, N, K, q_stride, out_stride,
                 SCALED: tl.constexpr, PER_ROW: tl.constexpr, EVEN_K: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, SUM_DOT: tl.constexpr):
    # Both operands loaded through pointers as they are (q (M, K), the expanded trits
    # (N, K), both K-major): GPUs without TMA, strided q, and the interpreter.
    pid_m, pid_n = _tile_ids(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok, n_ok = offs_m < M, offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = q_ptr + offs_m[:, None].to(tl.int64) * q_stride + offs_k[None, :]
    b_ptrs = w_ptr + offs_n[None, :].to(tl.int64) * K + offs_k[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN_K:
            a = tl.load(a_ptrs, mask=m_ok[:, None], other=0)
            b = tl.load(b_ptrs, mask=n_ok[None, :], other=0)
        else:
            k_ok = k0 + offs_k < K
            a = tl.load(a_ptrs, mask=m_ok[:, None] & k_ok[None, :], other=0)
            b = tl.load(b_ptrs, mask=n_ok[None, :] & k_ok[:, None], other=0)
        if SUM_DOT:  # the interpreter's dot would multiply in int8
            acc += tl.sum(a.to(tl.int32)[:, :, None] * b.to(tl.int32)[None, :, :], axis=1)
        else:
            acc = tl.dot(a, b, acc, out_dtype=tl.int32)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    _store_tile(acc, out_ptr, s_ptr, scale_ptr, offs_m, offs_n, M, N, out_stride, SCALED, PER_ROW)


@triton.jit
def _gemm_tma_kernel(q_desc, w_desc, out_ptr, s_ptr, scale_ptr, M, N, K, out_stride,
                     SCALED: tl.constexpr, PER_ROW: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, STAGES: tl.constexpr):
    # Hopper and newer: both tiles through TMA (tiles past M, N or K arrive as zeros, so
    # no masks), wgmma on them in shared memory.
    pid_m, pid_n = _tile_ids(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k0 in tl.range(0, K, BLOCK_K, num_stages=STAGES):
        a = q_desc.load([pid_m * BLOCK_M, k0])
        b = w_desc.load([pid_n * BLOCK_N, k0])
        acc = tl.dot(a, b.T, acc, out_dtype=tl.int32)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    _store_tile(acc, out_ptr, s_ptr, scale_ptr, offs_m, offs_n, M, N, out_stride, SCALED, PER_ROW)


def _use_tma(q, w8) -> bool:
    if _INTERPRET or not q.is_cuda or torch.cuda.get_device_capability(q.device)[0] < 9:
        return False
    # TMA: 16-byte aligned bases and row strides
    return (q.stride(0) % 16 == 0 and q.data_ptr() % 16 == 0 and w8.is_contiguous() and w8.data_ptr() % 16 == 0
            and w8.shape[1] % 16 == 0)


def gemm_int8(q, w8, out=None, s=None, scale=None, config=None):
    """Prefill: q int8 (M, K) · w8 int8 (N, K)ᵀ (the trits of expand_trits_int8), exact
    int32 sums.  Without s / scale out is that int32 (M, N); with them (s float32 (M, 1),
    scale float32 (N,) or (1,)) out is scale_rows_cols's result in out's dtype, computed in
    the GEMM's epilogue (no int32 round trip through memory).  On Hopper the tiles come
    through TMA.  H100 (benchmarks/probe/a8_gemm.py, 8192², M = 4096, with the epilogue):
    415 µs with TMA (128×256×128 tiles, 4 stages, GROUP_M 16), 472 with pointer loads;
    cuBLAS's `_int_mm` (an sm80 kernel) 575 without it."""
    M, K = q.shape
    N = w8.shape[0]
    scaled = s is not None
    if out is None:
        out = torch.empty(M, N, dtype=torch.int32 if not scaled else torch.float32, device=q.device)
    if q.stride(1) != 1:
        q = q.contiguous()
    common = dict(SCALED=scaled, PER_ROW=scaled and scale.shape[0] > 1)
    s_arg, scale_arg = (s, scale) if scaled else (q, q)
    if _use_tma(q, w8):
        if M <= 64:  # small M: weight-bound, so more and narrower column tiles
            cfg = dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=256, GROUP_M=1, STAGES=4, num_warps=4)
        else:
            cfg = dict(BLOCK_M=128, BLOCK_N=256, BLOCK_K=128, GROUP_M=16, STAGES=4, num_warps=8)
        cfg.update(config or {})  # benchmarks/probe/a8_gemm.py tries others
        from triton.tools.tensor_descriptor import TensorDescriptor

        q_desc = TensorDescriptor.from_tensor(q, [cfg["BLOCK_M"], cfg["BLOCK_K"]])
        w_desc = TensorDescriptor.from_tensor(w8, [cfg["BLOCK_N"], cfg["BLOCK_K"]])
        grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
        _gemm_tma_kernel[grid](q_desc, w_desc, out, s_arg, scale_arg, M, N, K, out.stride(0), **common, **cfg)
        return out
    if _INTERPRET:
        cfg = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=32, GROUP_M=2, num_warps=4, num_stages=1)
    else:
        cfg = dict(BLOCK_M=128, BLOCK_N=256, BLOCK_K=128, GROUP_M=8, num_warps=8, num_stages=3)
    grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
    _gemm_kernel[grid](q, w8, out, s_arg, scale_arg, M, N, K, q.stride(0), out.stride(0),
                       EVEN_K=K % cfg["BLOCK_K"] == 0, SUM_DOT=_INTERPRET, **common, **cfg)
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


@triton.jit
def _round_clamp(t, QMAX: tl.constexpr):
    # round half to even (torch.round), from exact steps: |t| <= Q, so f and t - f are exact
    f = tl.floor(t)
    d = t - f
    odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
    r = f + tl.where((d > 0.5) | ((d == 0.5) & odd), 1.0, 0.0)
    return tl.minimum(tl.maximum(r, -QMAX), QMAX).to(tl.int8)


@triton.jit
def _quantize_rows_kernel(x_ptr, q_ptr, s_ptr, K, x_stride, q_stride, QMAX: tl.constexpr, BLOCK: tl.constexpr,
                          ONE_PASS: tl.constexpr):
    # the reference's float32 steps, each correctly rounded: s = amax / Q, then x / s.
    # ONE_PASS (K <= BLOCK): the row stays in registers between the two steps.
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_stride
    if ONE_PASS:
        offs = tl.arange(0, BLOCK)
        ok = offs < K
        v = tl.load(x_row + offs, mask=ok, other=0.0).to(tl.float32)
        a = tl.max(tl.abs(v), axis=0)
        s = tl.where(a > 0, tl.div_rn(a, QMAX), 1.0)
        tl.store(s_ptr + row, s)
        tl.store(q_ptr + row * q_stride + offs, _round_clamp(tl.div_rn(v, s), QMAX), mask=ok)
    else:
        amax = tl.zeros((BLOCK,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK):
            offs = k0 + tl.arange(0, BLOCK)
            v = tl.load(x_row + offs, mask=offs < K, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.abs(v))
        a = tl.max(amax, axis=0)
        s = tl.where(a > 0, tl.div_rn(a, QMAX), 1.0)
        tl.store(s_ptr + row, s)
        for k0 in range(0, K, BLOCK):
            offs = k0 + tl.arange(0, BLOCK)
            ok = offs < K
            t = tl.div_rn(tl.load(x_row + offs, mask=ok, other=0.0).to(tl.float32), s)
            tl.store(q_ptr + row * q_stride + offs, _round_clamp(t, QMAX), mask=ok)


def quantize_rows(x, bits=8):
    """x (M, K) float16 / bfloat16 / float32, last dim contiguous -> (q int8 (M, K),
    s float32 (M, 1)): reference.quantize_act_rows on the GPU, the same integers."""
    M, K = x.shape
    q = torch.empty(M, K, dtype=torch.int8, device=x.device)
    s = torch.empty(M, 1, dtype=torch.float32, device=x.device)
    if _INTERPRET:
        block = 128 if K > 256 else triton.next_power_of_2(K)  # both paths under test
    else:
        block = min(8192, triton.next_power_of_2(K))
    _quantize_rows_kernel[(M,)](x, q, s, K, x.stride(0), q.stride(0), QMAX=float(2 ** (bits - 1) - 1),
                                BLOCK=block, ONE_PASS=K <= block, num_warps=4 if block <= 1024 else 8)
    return q, s


@triton.jit
def _scale_kernel(acc_ptr, s_ptr, scale_ptr, out_ptr, M, N, acc_stride, out_stride,
                  PER_ROW: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # the epilogue gemm_int8 runs in its own tiles, here over an int32 result in memory
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    a = tl.load(acc_ptr + offs_m[:, None].to(tl.int64) * acc_stride + offs_n[None, :], mask=ok, other=0)
    _store_tile(a, out_ptr, s_ptr, scale_ptr, offs_m, offs_n, M, N, out_stride, True, PER_ROW)


def scale_rows_cols(acc, s, scale, out):
    """out (M, N) = (acc int32 (M, N) · s float32 (M, 1)) · scale float32 (N,) or (1,),
    computed in float32 and rounded once to out's dtype; out's last dim contiguous."""
    M, N = acc.shape
    bm, bn = (16, 16) if _INTERPRET else (32, 128)
    grid = (triton.cdiv(M, bm), triton.cdiv(N, bn))
    _scale_kernel[grid](acc, s, scale, out, M, N, acc.stride(0), out.stride(0),
                        PER_ROW=scale.shape[0] > 1, BLOCK_M=bm, BLOCK_N=bn, num_warps=4)
    return out
