"""TernaryLinear: a drop-in nn.Linear with BitNet b1.58 ternary weights.

    y = S_out · T_Nᵀ · (Ŵ · (T_K · S_in · x)) + bias,   Ŵ = scale · trits

Either ternary layout of docs/FORMATS.md ("Ternary weights"): "base3" (1.6 bits/weight)
or "2bit"; scale per row or per tensor; the transforms are optional (BitNet b1.58 has
none; they help when a pretrained float model is quantized).  The forward is the op
torch.ops.quipkern.linear_ternary, or with act_bits (8 or 4) the W1.58A8 / A4 op
torch.ops.quipkern.linear_ternary_a8 (per-row absmax integer activations after the
input transform, exact integer matmul; inference only, layout "2bit").
"""

from __future__ import annotations

import torch
from torch import nn

from ..formats.ternary import base3_row_bytes, dequantize_ternary, pack_ternary_2bit, pack_ternary_base3
from ..formats.two_bit import K_MULTIPLE
from ..ops.linear_ternary import linear_ternary
from ..ops.linear_ternary_a8 import linear_ternary_a8
from ..reference.linear_ternary_a8 import ACT_BITS
from ..quantize import absmean_ternary
from .transformed import TransformedLinear

__all__ = ["TernaryLinear"]


class TernaryLinear(TransformedLinear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, layout: str = "base3",
                 per_row: bool = True, transform: bool = False, act_bits: int | None = None,
                 device=None, dtype=None):
        if layout not in ("base3", "2bit"):
            raise ValueError(f"TernaryLinear: layout must be 'base3' or '2bit'; got {layout!r}")
        if act_bits is not None and (act_bits not in ACT_BITS or layout != "2bit"):
            raise ValueError(f"TernaryLinear: act_bits must be None or one of {ACT_BITS}, with layout '2bit'; "
                             f"got act_bits={act_bits!r}, layout={layout!r}")
        # ternary-2bit pads K to its K_MULTIPLE; base-3 takes any K
        super().__init__(in_features, out_features, bias, transform, device, dtype,
                         in_multiple=K_MULTIPLE if layout == "2bit" else 1)
        self.layout, self.per_row, self.act_bits = layout, per_row, act_bits
        N, K = self.padded_out_features, self.padded_in_features
        shape = (N, K // 16) if layout == "2bit" else (N, base3_row_bytes(K))
        packed = torch.zeros(shape, dtype=torch.int32 if layout == "2bit" else torch.uint8, device=device)
        if layout == "base3":
            packed.fill_(121)  # all-zero trits
        else:
            packed.fill_(0x55555555)
        self._format_buffer("packed", packed)
        self._format_buffer("scale", torch.ones(N if per_row else 1, dtype=torch.float32, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_bits is not None:
            return linear_ternary_a8(x, self.packed, self.scale, self._bias_for(x), *self._transform_args(),
                                     self.act_bits)
        return linear_ternary(x, self.packed, self.scale, self._bias_for(x), *self._transform_args(),
                              self.padded_in_features)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        Wt = dequantize_ternary(self.packed, self.scale, self.padded_in_features, torch.float64)
        return self.weight_from_transformed(Wt).to(dtype or (self.bias.dtype if self.bias is not None else torch.float32))

    @torch.no_grad()
    def quantize_(self, W: torch.Tensor) -> None:
        self._check_matrix("W", W, (self.out_features, self.in_features))
        trits, scale = absmean_ternary(self.weight_to_transformed(W.detach().double().to(self.packed.device)),
                                       self.per_row, valid=None if self.transform else self.in_features)
        self.packed.copy_(pack_ternary_2bit(trits) if self.layout == "2bit" else pack_ternary_base3(trits))
        self.scale.copy_(scale)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, layout: str = "base3", per_row: bool = True,
                    transform: bool = False, act_bits: int | None = None, seed: int = 0) -> "TernaryLinear":
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, layout=layout,
                    per_row=per_row, transform=transform, act_bits=act_bits, device=linear.weight.device,
                    dtype=linear.weight.dtype)
        layer.init_signs(seed)
        layer.quantize_(linear.weight)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        return layer

    def bits_per_weight(self) -> float:
        return (8 * self.packed.element_size() * self.packed.numel() + 32 * self.scale.numel()) / (
            self.in_features * self.out_features)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", layout={self.layout!r}, per_row={self.per_row}"
                + (f", act_bits={self.act_bits}" if self.act_bits is not None else ""))
