"""The 2-bit weight format (docs/FORMATS.md, "2-bit weights").  Reference pack / unpack /
dequantize; every kernel that reads this format cites the same section.

    W: (N, K), N = out_features (rows), K = in_features, K % 64 == 0
    codes c[n, k] in {0, 1, 2, 3}
    packed: int32 (N, K/16), row-major, contiguous, 16-byte aligned
            bits [2j, 2j+2) of packed[n, w] hold c[n, 16 w + j]  (j = 0 in the LSBs)
    scales: float16 (N, K/g), g in {64, 128} or g = K (one scale per row)
    zeros:  None -> symmetric grid, z = 1.5: values s·{-1.5, -0.5, 0.5, 1.5}
            float16 (N, K/g) -> asymmetric: values s·(c - z)
    W[n, k] = scales[n, k // g] · (c[n, k] - z[n, k // g])
"""

from __future__ import annotations

import torch

from .._checks import check_optional, check_tensor

__all__ = [
    "K_MULTIPLE",
    "GROUP_SIZES",
    "SYMMETRIC_ZERO",
    "CODES_PER_WORD",
    "pack_2bit",
    "unpack_2bit",
    "dequantize_2bit",
    "check_2bit_weight",
]

CODES_PER_WORD = 16
K_MULTIPLE = 64  # each row is a whole number of 16-byte vectors
GROUP_SIZES = (64, 128)  # besides g = K
SYMMETRIC_ZERO = 1.5



def _shifts(device, dtype=torch.int32) -> torch.Tensor:
    # made on the device (no host-to-device copy: capturable in a CUDA graph)
    return torch.arange(0, 32, 2, dtype=dtype, device=device)


def pack_2bit(codes: torch.Tensor) -> torch.Tensor:
    """codes (N, K) integers in [0, 3] -> packed int32 (N, K/16)."""
    check_tensor("pack_2bit", "codes", codes, ndim=2)
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise TypeError(f"pack_2bit: 'codes' must be an integer tensor; got dtype {codes.dtype}")
    N, K = codes.shape
    if K % K_MULTIPLE:
        raise ValueError(f"pack_2bit: K={K} (codes.shape[1]) must be a multiple of {K_MULTIPLE}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > 3):
        raise ValueError(
            f"pack_2bit: codes must lie in [0, 3]; got min {int(codes.min())}, max {int(codes.max())}"
        )
    c = codes.to(torch.int64).view(N, K // CODES_PER_WORD, CODES_PER_WORD)
    words = (c << _shifts(c.device, torch.int64)).sum(dim=-1)  # in [0, 2^32)
    words = torch.where(words >= 2**31, words - 2**32, words)  # reinterpret as int32
    return words.to(torch.int32).contiguous()


def unpack_2bit(packed: torch.Tensor) -> torch.Tensor:
    """packed int32 (N, K/16) -> codes uint8 (N, K)."""
    check_tensor("unpack_2bit", "packed", packed, dtypes=(torch.int32,), ndim=2)
    N, W = packed.shape
    # arithmetic shift of a negative word sign-extends, but & 3 keeps only the two bits
    c = (packed.unsqueeze(-1) >> _shifts(packed.device)) & 3
    return c.view(N, W * CODES_PER_WORD).to(torch.uint8)


def check_2bit_weight(op, packed, scales, zeros, device=None, check_data=True):
    """Validate a 2-bit weight triple; returns (N, K, group_size)."""
    align = 16 if check_data else None
    check_tensor(op, "packed", packed, dtypes=(torch.int32,), ndim=2, device=device,
                 contiguous=True, align=align, what="2-bit codes, 16 per int32 word, shape (N, K/16)")
    N, K = packed.shape[0], packed.shape[1] * CODES_PER_WORD
    if K == 0 or K % K_MULTIPLE:
        raise ValueError(
            f"{op}: 'packed' has K = 16·{packed.shape[1]} = {K} columns; the 2-bit format needs K "
            f"to be a positive multiple of {K_MULTIPLE} (pad the weight's input dimension)"
        )
    check_tensor(op, "scales", scales, dtypes=(torch.float16,), ndim=2, device=device,
                 contiguous=True, what="group scales, shape (N, K/group_size)")
    G = scales.shape[1]
    if scales.shape[0] != N or G == 0 or K % G or (G != 1 and K // G not in GROUP_SIZES):
        raise ValueError(
            f"{op}: 'scales' must have shape (N, K/g) = ({N}, K/g) with g in {GROUP_SIZES} or g = K={K}; "
            f"got shape {tuple(scales.shape)}"
        )
    check_optional(op, "zeros", zeros, dtypes=(torch.float16,), shape=(N, G), device=device,
                   contiguous=True, what="asymmetric zero points, same shape as 'scales'")
    return N, K, K // G


def dequantize_2bit(packed, scales, zeros=None, dtype=torch.float32):
    """Reference dequantization -> (N, K) tensor of `dtype` (computed in float64 when
    dtype is float64, else float32)."""
    N, K, g = check_2bit_weight("dequantize_2bit", packed, scales, zeros, check_data=False)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    c = unpack_2bit(packed).to(acc).view(N, K // g, g)
    z = SYMMETRIC_ZERO if zeros is None else zeros.to(acc).unsqueeze(-1)
    w = (c - z) * scales.to(acc).unsqueeze(-1)
    return w.view(N, K).to(dtype)
