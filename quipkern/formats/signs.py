"""Sign vectors of the randomized transform, stored as bitmasks (docs/FORMATS.md, "Sign vectors").

    signs: uint8 tensor of shape (ceil(n / 8),)
    element i is multiplied by -1 iff bit (i % 8) of byte i // 8 is set (bit 0 = LSB).

A bitmask has no invalid values: every byte string is a valid sign vector.  Bits past n
in the last byte are ignored.
"""

from __future__ import annotations

import torch

__all__ = ["pack_signs", "unpack_signs", "random_signs", "signs_nbytes"]


def signs_nbytes(n: int) -> int:
    return (n + 7) // 8


def pack_signs(pm1: torch.Tensor) -> torch.Tensor:
    """A 1-D tensor of +-1 values (any real dtype) -> its uint8 bitmask."""
    if pm1.dim() != 1:
        raise ValueError(f"pack_signs: 'pm1' must be 1-D, got shape {tuple(pm1.shape)}")
    bad = (pm1 != 1) & (pm1 != -1)
    if bool(bad.any()):
        raise ValueError(
            f"pack_signs: 'pm1' must hold only +1 and -1; element {int(bad.nonzero()[0])} is "
            f"{pm1[bad][0].item()}"
        )
    n = pm1.numel()
    neg = (pm1 < 0).to(torch.int32)
    neg = torch.nn.functional.pad(neg, (0, signs_nbytes(n) * 8 - n)).view(-1, 8)
    weights = (1 << torch.arange(8, dtype=torch.int32, device=pm1.device))
    return (neg * weights).sum(dim=1).to(torch.uint8)


def unpack_signs(bits: torch.Tensor, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 bitmask -> +-1 vector of length n in `dtype`."""
    if bits.dtype != torch.uint8 or bits.dim() != 1 or bits.numel() < signs_nbytes(n):
        raise ValueError(
            f"unpack_signs: 'bits' must be a 1-D uint8 tensor of at least {signs_nbytes(n)} bytes "
            f"for n={n}; got shape {tuple(bits.shape)}, dtype {bits.dtype}"
        )
    i = torch.arange(n, device=bits.device)
    neg = (bits[i // 8].to(torch.int32) >> (i % 8)) & 1
    return (1 - 2 * neg).to(dtype)


def random_signs(n: int, generator: torch.Generator | None = None, seed: int | None = None) -> torch.Tensor:
    """A uniformly random sign bitmask for width n (bits past n are zero)."""
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    neg = torch.randint(0, 2, (n,), generator=generator)
    return pack_signs((1 - 2 * neg).to(torch.float32))
