"""Round-to-nearest onto the 2-bit grids of docs/FORMATS.md ("2-bit weights").

Symmetric grid s·{-1.5, -0.5, 0.5, 1.5}: per group, the scale is searched over a range
of clipping ratios for the least squared error (for Gaussian-like weights, as after
incoherence processing, the best step is ~1.0 σ, well inside the max-abs step).
Asymmetric grid s·(c - z): min-max with the same search over shrink ratios.
Scales and zeros are rounded to float16 before the codes are chosen, so that codes
and stored scales agree exactly.  Columns past `valid` (a weight zero-padded to a
format's width, docs/FORMATS.md) meet only zero inputs: they do not count in the search.
"""

from __future__ import annotations

import torch

__all__ = ["group_params", "quantize_with", "rtn_2bit", "column_mask"]

_RATIOS = torch.linspace(0.25, 1.0, 31)


def _grid(w, s, z):
    """codes and dequantized values of w (..., g) for scales / zeros (..., 1)."""
    c = torch.clamp(torch.round(w / s + z), 0, 3)
    return c, (c - z) * s


def group_params(w: torch.Tensor, asymmetric: bool, mask: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Best (scale, zero) of each row of w (G, g), by search; float16-representable.
    mask: bool, broadcastable to w, False where an element does not count (padding).
    Returns tensors of shape (G, 1); zero is 1.5 for the symmetric grid."""
    w = w.double()
    best_err = torch.full((w.shape[0], 1), float("inf"), dtype=w.dtype, device=w.device)
    best_s = torch.ones_like(best_err)
    best_z = torch.full_like(best_err, 1.5)
    if mask is not None:
        mask = mask.expand_as(w)
        if not bool(mask.any()):
            return best_s, best_z
        w = torch.where(mask, w, 0.0)
    amax = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    if mask is None:
        lo, hi = w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True)
    else:
        lo = torch.where(mask, w, float("inf")).amin(dim=1, keepdim=True)
        hi = torch.where(mask, w, float("-inf")).amax(dim=1, keepdim=True)
    for r in _RATIOS.tolist():
        if asymmetric:
            span = ((hi - lo) * r).clamp_min(1e-12)
            s = (span / 3).half().double().clamp_min(2**-24)
            mid = (hi + lo) / 2
            z = (1.5 - mid / s).half().double()
        else:
            s = (amax * r / 1.5).half().double().clamp_min(2**-24)
            z = torch.full_like(s, 1.5)
        _, q = _grid(w, s, z)
        err = (w - q) ** 2
        err = (err if mask is None else torch.where(mask, err, 0.0)).sum(dim=1, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_s = torch.where(better, s, best_s)
        best_z = torch.where(better, z, best_z)
    return best_s, best_z


def quantize_with(w: torch.Tensor, s: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Round w onto the grid (s, z) (broadcastable); returns (codes, dequantized)."""
    return _grid(w.double(), s.double(), z.double())


def column_mask(K: int, valid: int | None, start: int = 0, width: int | None = None, device=None):
    """(1, width) bool: which of the columns [start, start + width) are below `valid`."""
    width = K - start if width is None else width
    if valid is None or valid >= K:
        return None
    return (torch.arange(start, start + width, device=device) < valid)[None, :]


def rtn_2bit(W: torch.Tensor, group_size: int, asymmetric: bool = False, valid: int | None = None):
    """W (N, K) -> (codes int64 (N, K), scales fp16 (N, K/g), zeros fp16 (N, K/g) or None).
    valid: columns [valid, K) are zero padding that meets zero inputs (ignored by the search)."""
    N, K = W.shape
    g = K if group_size in (None, 0, -1) else group_size
    Wg = W.double().reshape(N * (K // g), g)
    mask = column_mask(K, valid, device=W.device)
    if mask is not None:
        mask = mask.view(1, K // g, g).expand(N, K // g, g).reshape(N * (K // g), g)
    s, z = group_params(Wg, asymmetric, mask)
    codes, _ = quantize_with(Wg, s, z)
    scales = s.reshape(N, K // g).half()
    zeros = z.reshape(N, K // g).half() if asymmetric else None
    return codes.reshape(N, K).long(), scales, zeros
