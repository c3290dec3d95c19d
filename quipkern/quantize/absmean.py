"""BitNet b1.58's absmean ternary quantizer (docs/FORMATS.md, "Ternary weights"):
scale = mean |W| (per row or per tensor), trits = clamp(round(W / scale), -1, 1)."""

from __future__ import annotations

import torch

__all__ = ["absmean_ternary"]


def absmean_ternary(W: torch.Tensor, per_row: bool = True, eps: float = 1e-8, valid: int | None = None):
    """W (N, K) -> (trits int64 (N, K), scale float32 (N,) or (1,)).
    valid: the mean is over columns [0, valid) (the rest is a format's zero padding)."""
    W = W.double()
    A = W[:, :valid].abs() if valid is not None else W.abs()
    s = A.mean(dim=1) if per_row else A.mean().reshape(1)
    s = s.clamp_min(eps)
    trits = torch.clamp(torch.round(W / s.view(-1, 1)), -1, 1).long()
    return trits, s.float()
