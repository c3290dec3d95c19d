"""Hugging Face transformers' BitNet packing (integrations/bitnet.py, the layout of the
BitNet b1.58 2B4T release) <-> quipkern's ternary layouts.  Specified in
docs/FORMATS.md, "Hugging Face BitNet checkpoints".

    weight        uint8, shape (ceil(N / 4), K); R = ceil(N / 4)
                  bits [2i, 2i+2) of weight[r, k] hold t[i·R + r, k] + 1     (i = 0..3)
                  i.e. each quarter of the output rows owns one 2-bit slot.
    weight_scale  one value; BitLinear divides by it (W = t / weight_scale),
                  AutoBitLinear multiplies (W = t · weight_scale).
"""

from __future__ import annotations

import torch

from .._checks import check_tensor
from .ternary import pack_ternary_2bit, pack_ternary_base3, unpack_ternary

__all__ = ["pack_hf_bitnet", "unpack_hf_bitnet", "from_hf_bitnet", "to_hf_bitnet", "LINEAR_CLASSES"]

LINEAR_CLASSES = ("bitlinear", "autobitlinear")


def pack_hf_bitnet(trits: torch.Tensor) -> torch.Tensor:
    """trits (N, K) in {-1, 0, 1} -> HF's uint8 (ceil(N/4), K)."""
    check_tensor("pack_hf_bitnet", "trits", trits, ndim=2)
    if trits.numel() and (int(trits.min()) < -1 or int(trits.max()) > 1):
        raise ValueError("pack_hf_bitnet: trits must lie in {-1, 0, 1}")
    N, K = trits.shape
    R = -(-N // 4)
    codes = torch.ones(4 * R, K, dtype=torch.int32, device=trits.device)  # padding rows: t = 0
    codes[:N] = trits.to(torch.int32) + 1
    shifts = 2 * torch.arange(4, dtype=torch.int32, device=trits.device).view(4, 1, 1)
    return (codes.view(4, R, K) << shifts).sum(dim=0).to(torch.uint8)


def unpack_hf_bitnet(weight: torch.Tensor, out_features: int) -> torch.Tensor:
    """HF's uint8 (ceil(N/4), K) -> trits int8 (N, K); ValueError on the code 3."""
    check_tensor("unpack_hf_bitnet", "weight", weight, dtypes=(torch.uint8,), ndim=2)
    R = weight.shape[0]
    if R != -(-out_features // 4):
        raise ValueError(f"unpack_hf_bitnet: 'weight' has {R} rows; out_features={out_features} needs "
                         f"ceil({out_features}/4) = {-(-out_features // 4)}")
    shifts = 2 * torch.arange(4, dtype=torch.int32, device=weight.device).view(4, 1, 1)
    codes = (weight.to(torch.int32).unsqueeze(0) >> shifts) & 3  # [i, r, k]
    if codes.numel() and int(codes.max()) > 2:
        raise ValueError("unpack_hf_bitnet: 'weight' holds the 2-bit code 3, which is not a trit")
    return (codes.reshape(4 * R, -1)[:out_features] - 1).to(torch.int8)


def _check_class(op: str, linear_class: str) -> None:
    if linear_class not in LINEAR_CLASSES:
        raise ValueError(f"{op}: linear_class must be one of {LINEAR_CLASSES} (the checkpoint's "
                         f"quantization_config.linear_class); got {linear_class!r}")


def from_hf_bitnet(weight: torch.Tensor, weight_scale: torch.Tensor, out_features: int,
                   linear_class: str = "bitlinear", layout: str = "base3"):
    """An HF BitNet layer's (weight, weight_scale) -> quipkern (packed, scale (1,) float32)."""
    _check_class("from_hf_bitnet", linear_class)
    check_tensor("from_hf_bitnet", "weight_scale", weight_scale, dtypes=(torch.float16, torch.bfloat16, torch.float32),
                 shape=(1,))
    trits = unpack_hf_bitnet(weight, out_features)
    ws = weight_scale.to(torch.float64)
    scale = (1.0 / ws if linear_class == "bitlinear" else ws).to(torch.float32)
    if layout == "base3":
        return pack_ternary_base3(trits), scale
    if layout == "2bit":
        return pack_ternary_2bit(trits), scale
    raise ValueError(f"from_hf_bitnet: layout must be 'base3' or '2bit'; got {layout!r}")


def to_hf_bitnet(packed: torch.Tensor, scale: torch.Tensor, in_features: int, linear_class: str = "bitlinear",
                 dtype: torch.dtype = torch.bfloat16):
    """quipkern (packed, per-tensor scale) -> HF's (weight uint8, weight_scale (1,) of dtype)."""
    _check_class("to_hf_bitnet", linear_class)
    check_tensor("to_hf_bitnet", "scale", scale, dtypes=(torch.float32,), ndim=1)
    if scale.numel() != 1 and not bool((scale == scale[0]).all()):
        raise ValueError("to_hf_bitnet: HF BitNet layers have one scale per tensor; this weight has per-row scales")
    trits = unpack_ternary(packed, in_features)
    s = scale[:1].double()
    weight_scale = (1.0 / s if linear_class == "bitlinear" else s).to(dtype)
    return pack_hf_bitnet(trits), weight_scale
