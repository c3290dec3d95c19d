"""Triton kernels for the 2-bit format (docs/FORMATS.md, "2-bit weights").

matmul_2bit: out (M, N) = x (M, K) @ Ŵᵀ (+ bias).  One kernel for every M: a program owns
a BLOCK_M × BLOCK_N tile of out; per BLOCK_K step it loads BLOCK_N × BLOCK_K/16 words,
expands them to codes with one broadcast shift ((word >> 2j) & 3 for j = 0..15, which is
the format's column order), applies the group scale (and zero) in fp32, and feeds
tensor cores with tl.dot.  Small M uses BLOCK_M = 16, the smallest dot tile.

dequantize_2bit: the same unpacking, written out as a dense (N, K) tensor; for large M
the ops layer multiplies that with cuBLAS when it is faster (ops/linear_2bit.py).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["matmul_2bit", "dequantize_2bit", "supports_matmul", "supports_dequantize"]

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# QUIPKERN_AUTOTUNE=0 skips autotuning (the tests set it: they check values, not speed)
_AUTOTUNE = os.environ.get("QUIPKERN_AUTOTUNE", "1") != "0" and not _INTERPRET


@triton.jit
def _unpack_tile(packed_ptr, scales_ptr, zeros_ptr, offs_n, k0, N, K, G, group_size,
                 HAS_ZEROS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Ŵ[offs_n, k0 : k0 + BLOCK_K] in fp32 (zero outside the matrix)."""
    WORDS: tl.constexpr = BLOCK_K // 16
    w_idx = k0 // 16 + tl.arange(0, WORDS)
    n_ok = offs_n < N
    words = tl.load(packed_ptr + offs_n[:, None].to(tl.int64) * (K // 16) + w_idx[None, :],
                    mask=n_ok[:, None] & (w_idx[None, :] < K // 16), other=0)
    shifts = 2 * tl.arange(0, 16)
    codes = (words[:, :, None] >> shifts[None, None, :]) & 3
    codes = tl.reshape(codes, (BLOCK_N, BLOCK_K)).to(tl.float32)
    offs_k = k0 + tl.arange(0, BLOCK_K)
    k_ok = offs_k < K
    sidx = offs_n[:, None].to(tl.int64) * G + (offs_k // group_size)[None, :]
    smask = n_ok[:, None] & k_ok[None, :]
    s = tl.load(scales_ptr + sidx, mask=smask, other=0.0).to(tl.float32)
    if HAS_ZEROS:
        z = tl.load(zeros_ptr + sidx, mask=smask, other=0.0).to(tl.float32)
    else:
        z = 1.5
    return (codes - z) * s


@triton.jit
def _matmul_2bit_kernel(
    x_ptr, packed_ptr, scales_ptr, zeros_ptr, bias_ptr, out_ptr,
    M, N, K, G, group_size, x_stride, out_stride, M_BUCKET,
    HAS_ZEROS: tl.constexpr, HAS_BIAS: tl.constexpr, PREC: tl.constexpr, DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_m[:, None].to(tl.int64) * x_stride + offs_k[None, :],
                    mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
        w = _unpack_tile(packed_ptr, scales_ptr, zeros_ptr, offs_n, k0, N, K, G, group_size,
                         HAS_ZEROS, BLOCK_N, BLOCK_K)
        if DOT_F32:
            acc += tl.dot(x.to(tl.float32), tl.trans(w), input_precision=PREC)
        else:
            acc += tl.dot(x, tl.trans(w.to(x.dtype)), input_precision=PREC)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + offs_m[:, None].to(tl.int64) * out_stride + offs_n[None, :],
             acc.to(out_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.jit
def _dequantize_2bit_kernel(packed_ptr, scales_ptr, zeros_ptr, out_ptr, N, K, G, group_size,
                            HAS_ZEROS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k0 = tl.program_id(1) * BLOCK_K
    offs_k = k0 + tl.arange(0, BLOCK_K)
    w = _unpack_tile(packed_ptr, scales_ptr, zeros_ptr, offs_n, k0, N, K, G, group_size,
                     HAS_ZEROS, BLOCK_N, BLOCK_K)
    tl.store(out_ptr + offs_n[:, None].to(tl.int64) * K + offs_k[None, :], w.to(out_ptr.dtype.element_ty),
             mask=(offs_n[:, None] < N) & (offs_k[None, :] < K))


def _default_config(M: int) -> dict:
    """The config used without autotuning."""
    if _INTERPRET:
        return dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64, num_warps=4)
    if M <= 16:
        return dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=256, num_warps=4, num_stages=4)
    if M <= 64:
        return dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=4)
    return dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, num_warps=8, num_stages=4)


def _configs():
    out = []
    for bm, bn, bk, w, s in [
        (16, 32, 256, 4, 4), (16, 64, 256, 4, 4), (16, 32, 512, 4, 3), (16, 128, 128, 4, 4),
        (32, 64, 256, 4, 4), (64, 64, 128, 4, 4), (64, 128, 128, 8, 3), (128, 128, 64, 8, 4),
        (128, 256, 64, 8, 3), (128, 128, 128, 8, 3),
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
    if x.device.type == "cpu" and not _INTERPRET:
        return "CPU tensors run in Triton only under TRITON_INTERPRET=1"
    if x.device.type not in ("cpu", "cuda"):
        return f"device type {x.device.type} is not supported by Triton here"
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"dtype {x.dtype} is not supported (float16, bfloat16, float32)"
    return None


def supports_dequantize(packed, scales, zeros, dtype) -> str | None:
    if packed.device.type == "cpu" and not _INTERPRET:
        return "CPU tensors run in Triton only under TRITON_INTERPRET=1"
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"output dtype {dtype} is not supported (float16, bfloat16, float32)"
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


def dequantize_2bit(packed, scales, zeros, dtype, out=None):
    N, K = packed.shape[0], packed.shape[1] * 16
    G = scales.shape[1]
    if out is None:
        out = torch.empty(N, K, dtype=dtype, device=packed.device)
    bn, bk = (32, 64) if _INTERPRET else (64, 256)
    grid = (triton.cdiv(N, bn), triton.cdiv(K, bk))
    _dequantize_2bit_kernel[grid](packed, scales, zeros if zeros is not None else scales, out, N, K, G, K // G,
                                  HAS_ZEROS=zeros is not None, BLOCK_N=bn, BLOCK_K=bk)
    return out
