"""Ternary (BitNet b1.58) weight formats (docs/FORMATS.md, "Ternary weights").

Trits t[n, k] in {-1, 0, +1}, W[n, k] = scale[n or 0] · t[n, k].

"ternary-2bit" (2.0 bits/weight, fastest unpack): the 2-bit layout of two_bit.py with
    code = t + 1 in {0, 1, 2} (3 is invalid); packed int32 (N, K/16), K % 64 == 0.
"ternary-base3" (1.6 bits/weight + row padding): uint8 (N, 16·ceil(K/80)); each row is
    a sequence of 16-byte blocks of 80 trits; in block b, byte j (0..15) holds
        sum_{i=0..4} (t[n, 80 b + 16 i + j] + 1) · 3^i        (a value in 0..242)
    trits past K are 0 (code 1).  Digit i of the 16 bytes = 16 consecutive trits.
scale: float32, shape (N,) per row or (1,) per tensor (BitNet's absmean).
"""

from __future__ import annotations

import torch

from .._checks import check_tensor
from .two_bit import CODES_PER_WORD, K_MULTIPLE, pack_2bit, unpack_2bit

__all__ = [
    "TRITS_PER_BLOCK",
    "BLOCK_BYTES",
    "base3_row_bytes",
    "pack_ternary_2bit",
    "pack_ternary_base3",
    "unpack_ternary",
    "dequantize_ternary",
    "check_ternary_weight",
    "ternary_layout",
]

TRITS_PER_BLOCK = 80
BLOCK_BYTES = 16


def _pow3(device) -> torch.Tensor:
    # made on the device (no host-to-device copy: capturable in a CUDA graph)
    return 3 ** torch.arange(5, dtype=torch.int32, device=device)


def base3_row_bytes(K: int) -> int:
    return BLOCK_BYTES * -(-K // TRITS_PER_BLOCK)


def _check_trits(op: str, trits: torch.Tensor) -> None:
    check_tensor(op, "trits", trits, ndim=2)
    if trits.is_floating_point() or trits.is_complex() or trits.dtype == torch.bool:
        raise TypeError(f"{op}: 'trits' must be an integer tensor; got dtype {trits.dtype}")
    if trits.numel() and (int(trits.min()) < -1 or int(trits.max()) > 1):
        raise ValueError(
            f"{op}: trits must lie in {{-1, 0, 1}}; got min {int(trits.min())}, max {int(trits.max())}"
        )


def pack_ternary_2bit(trits: torch.Tensor) -> torch.Tensor:
    """trits (N, K) in {-1, 0, 1} -> int32 (N, K/16), code = t + 1."""
    _check_trits("pack_ternary_2bit", trits)
    return pack_2bit(trits.to(torch.int64) + 1)


def pack_ternary_base3(trits: torch.Tensor) -> torch.Tensor:
    """trits (N, K) in {-1, 0, 1} -> uint8 (N, 16·ceil(K/80))."""
    _check_trits("pack_ternary_base3", trits)
    N, K = trits.shape
    nblk = -(-K // TRITS_PER_BLOCK)
    codes = torch.ones(N, nblk * TRITS_PER_BLOCK, dtype=torch.int32, device=trits.device)
    codes[:, :K] = trits.to(torch.int32) + 1
    codes = codes.view(N, nblk, 5, BLOCK_BYTES)  # [n, b, i, j] = code of k = 80 b + 16 i + j
    byte = (codes * _pow3(codes.device).view(1, 1, 5, 1)).sum(dim=2)
    return byte.view(N, nblk * BLOCK_BYTES).to(torch.uint8).contiguous()


def ternary_layout(packed: torch.Tensor) -> str:
    """'2bit' for int32 storage, 'base3' for uint8 storage."""
    return "2bit" if packed.dtype == torch.int32 else "base3"


def check_ternary_weight(op, packed, scale, K, device=None, check_data=True):
    """Validate a ternary weight (packed, scale) for in_features K; returns N."""
    check_tensor(op, "packed", packed, dtypes=(torch.int32, torch.uint8), ndim=2, device=device,
                 contiguous=True, align=16 if check_data else None,
                 what="ternary weight: int32 (N, K/16) for ternary-2bit or uint8 (N, 16·ceil(K/80)) for ternary-base3")
    N = packed.shape[0]
    if packed.dtype == torch.int32:
        if K % K_MULTIPLE or packed.shape[1] * CODES_PER_WORD != K:
            raise ValueError(
                f"{op}: int32 'packed' (ternary-2bit) must have shape (N, K/16) with K % {K_MULTIPLE} == 0; "
                f"got shape {tuple(packed.shape)} for in_features K={K}"
            )
    elif packed.shape[1] != base3_row_bytes(K):
        raise ValueError(
            f"{op}: uint8 'packed' (ternary-base3) must have shape (N, 16·ceil(K/80)) = (N, {base3_row_bytes(K)}) "
            f"for in_features K={K}; got shape {tuple(packed.shape)}"
        )
    check_tensor(op, "scale", scale, dtypes=(torch.float32,), ndim=1, device=device,
                 contiguous=True, what="per-row (N,) or per-tensor (1,) scale")
    if scale.shape[0] not in (1, N):
        raise ValueError(f"{op}: 'scale' must have shape ({N},) or (1,); got shape {tuple(scale.shape)}")
    return N


def unpack_ternary(packed: torch.Tensor, K: int, check: bool = True) -> torch.Tensor:
    """Either ternary layout -> trits int8 (N, K).  With check, ValueError on codes no
    packer writes (a device-to-host sync; the dequantize path skips it so that it can be
    captured in a CUDA graph, and maps such codes like the kernels do)."""
    op = "unpack_ternary"
    check_tensor(op, "packed", packed, dtypes=(torch.int32, torch.uint8), ndim=2)
    if packed.dtype == torch.int32:
        codes = unpack_2bit(packed)[:, :K]
        if check and codes.numel() and int(codes.max()) > 2:
            raise ValueError(f"{op}: ternary-2bit 'packed' holds code 3, which is not a trit")
        return (codes.to(torch.int8) - 1)
    N = packed.shape[0]
    if packed.shape[1] % BLOCK_BYTES or packed.shape[1] < base3_row_bytes(K):
        raise ValueError(f"{op}: uint8 'packed' of shape {tuple(packed.shape)} cannot hold K={K} trits")
    b = packed.to(torch.int32)
    if check and b.numel() and int(b.max()) > 242:
        raise ValueError(f"{op}: ternary-base3 'packed' holds a byte > 242 (3^5 - 1), which is not 5 trits")
    nblk = packed.shape[1] // BLOCK_BYTES
    b = b.view(N, nblk, 1, BLOCK_BYTES)
    digits = (b // _pow3(b.device).view(1, 1, 5, 1)) % 3  # [n, blk, i, j]
    return (digits.view(N, nblk * TRITS_PER_BLOCK)[:, :K] - 1).to(torch.int8)


def dequantize_ternary(packed, scale, K, dtype=torch.float32):
    """Reference dequantization -> (N, K) of `dtype`."""
    check_ternary_weight("dequantize_ternary", packed, scale, K, check_data=False)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    t = unpack_ternary(packed, K, check=False).to(acc)
    return (t * scale.to(acc).unsqueeze(-1)).to(dtype)
