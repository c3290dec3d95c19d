"""QuipLinear: a drop-in nn.Linear with 2-bit weights and incoherence processing.

    y = S_out · T_Nᵀ · (Ŵ · (T_K · S_in · x)) + bias [+ L · (R · x)]

Ŵ in the 2-bit format of docs/FORMATS.md ("2-bit weights"); the forward is the op
torch.ops.quipkern.linear_2bit (every backend, torch.compile, autograd in x).  An
optional low-rank term L·R (ReALLM / LQ-LoRA) stays in high precision and trainable.
"""

from __future__ import annotations

import torch
from torch import nn

from ..formats.two_bit import GROUP_SIZES, K_MULTIPLE, dequantize_2bit, pack_2bit
from ..ops.linear_2bit import linear_2bit
from ..quantize import ldlq_2bit, rtn_2bit
from .transformed import TransformedLinear

__all__ = ["QuipLinear"]


class QuipLinear(TransformedLinear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, group_size: int = 128,
                 asymmetric: bool = False, transform: bool = True, rank: int = 0, device=None, dtype=None):
        per_row = group_size in (None, 0, -1)
        if not per_row and group_size not in GROUP_SIZES:
            raise ValueError(f"QuipLinear: group_size={group_size} must be one of {GROUP_SIZES}, "
                             f"or -1 for one scale per row")
        if rank < 0 or rank > min(in_features, out_features):
            raise ValueError(f"QuipLinear: rank={rank} must be in [0, {min(in_features, out_features)}]")
        # K is padded to a multiple of the group size (and of the format's K_MULTIPLE)
        super().__init__(in_features, out_features, bias, transform, device, dtype,
                         in_multiple=K_MULTIPLE if per_row else max(K_MULTIPLE, group_size))
        N, K = self.padded_out_features, self.padded_in_features
        g = K if per_row else group_size
        self.group_size, self.asymmetric, self.rank = g, asymmetric, rank
        G = K // g
        self._format_buffer("packed", torch.zeros(N, K // 16, dtype=torch.int32, device=device))
        self._format_buffer("scales", torch.ones(N, G, dtype=torch.float16, device=device))
        self._format_buffer("zeros", torch.zeros(N, G, dtype=torch.float16, device=device) if asymmetric else None)
        if rank:
            self.lora_L = nn.Parameter(torch.zeros(out_features, rank, device=device, dtype=dtype))
            self.lora_R = nn.Parameter(torch.zeros(rank, in_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = linear_2bit(x, self.packed, self.scales, self.zeros, self._bias_for(x), *self._transform_args())
        if self.rank:
            y = y + nn.functional.linear(nn.functional.linear(x, self.lora_R.to(x.dtype)), self.lora_L.to(x.dtype))
        return y

    def quantized_weight(self, dtype=torch.float64) -> torch.Tensor:
        """Ŵ in the transformed space (N, K): padded widths (padded_out_features, padded_in_features)."""
        return dequantize_2bit(self.packed, self.scales, self.zeros, dtype)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The float weight this layer applies: S_out T_Nᵀ Ŵ T_K S_in (+ L R)."""
        W = self.weight_from_transformed(self.quantized_weight(torch.float64))
        if self.rank:
            W = W + self.lora_L.double() @ self.lora_R.double()
        return W.to(dtype or (self.bias.dtype if self.bias is not None else torch.float32))

    @torch.no_grad()
    def quantize_(self, W: torch.Tensor, hessian: torch.Tensor | None = None, method: str = "rtn",
                  damp: float = 0.01, lowrank_iters: int = 4) -> None:
        """Fill the layer from a float weight W (N, K): RTN, or LDLQ with the proxy
        Hessian of the inputs; with rank > 0, alternate quantization and a truncated SVD
        of the residual (W ≈ Ŵ + L R)."""
        if method not in ("rtn", "ldlq"):
            raise ValueError(f"QuipLinear.quantize_: method must be 'rtn' or 'ldlq'; got {method!r}")
        if method == "ldlq" and hessian is None:
            raise ValueError("QuipLinear.quantize_: method 'ldlq' needs the proxy Hessian of the inputs")
        self._check_matrix("W", W, (self.out_features, self.in_features))
        W = W.detach().double().to(self.packed.device)
        Ht = None if hessian is None else self.hessian_to_transformed(hessian.to(W.device))
        lowrank = torch.zeros_like(W)
        for _ in range(max(1, lowrank_iters if self.rank else 1)):
            Wt = self.weight_to_transformed(W - lowrank)
            # without transforms the padded columns stay apart and meet zero inputs only
            valid = None if self.transform else self.in_features
            if method == "ldlq":
                codes, scales, zeros = ldlq_2bit(Wt, Ht, self.group_size, self.asymmetric, damp, valid=valid)
            else:
                codes, scales, zeros = rtn_2bit(Wt, self.group_size, self.asymmetric, valid=valid)
            self.packed.copy_(pack_2bit(codes))
            self.scales.copy_(scales)
            if zeros is not None:
                self.zeros.copy_(zeros)
            if self.rank:
                U, S, Vh = torch.linalg.svd(W - self.weight_from_transformed(self.quantized_weight()), full_matrices=False)
                root = S[: self.rank].sqrt()
                L, R = U[:, : self.rank] * root, root[:, None] * Vh[: self.rank]
                lowrank = L @ R
                self.lora_L.copy_(L)
                self.lora_R.copy_(R)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, group_size: int = 128, asymmetric: bool = False,
                    transform: bool = True, method: str = "rtn", hessian: torch.Tensor | None = None,
                    damp: float = 0.01, rank: int = 0, seed: int = 0) -> "QuipLinear":
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size=group_size,
                    asymmetric=asymmetric, transform=transform, rank=rank, device=linear.weight.device,
                    dtype=linear.weight.dtype)
        layer.init_signs(seed)
        layer.quantize_(linear.weight, hessian, method, damp)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        return layer

    def bits_per_weight(self) -> float:
        """Stored bits over weights: codes, scales, zeros and the low-rank factors."""
        bits = 32 * self.packed.numel() + 16 * self.scales.numel() + (16 * self.zeros.numel() if self.asymmetric else 0)
        if self.rank:
            bits += 8 * (self.lora_L.numel() * self.lora_L.element_size() + self.lora_R.numel() * self.lora_R.element_size())
        return bits / (self.in_features * self.out_features)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", group_size={self.group_size}, asymmetric={self.asymmetric}"
                + (f", rank={self.rank}" if self.rank else ""))
