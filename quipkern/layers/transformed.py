"""What QuipLinear and TernaryLinear share: the transform buffers (docs/FORMATS.md,
"Transforms"), moving weights and Hessians into and out of the transformed space, and
keeping the packed-format tensors' dtypes through .to() / .half() / .bfloat16().

    y = S_out · T_Nᵀ · (Ŵ · (T_K · S_in · x)) + bias,   Ŵ ≈ T_N · S_out · W · S_in · T_Kᵀ
"""

from __future__ import annotations

import torch
from torch import nn

from ..formats.signs import random_signs, signs_nbytes
from ..reference import rht
from ..transform_spec import transform_spec

__all__ = ["TransformedLinear"]


class TransformedLinear(nn.Module):
    """Base of the quantized Linear layers.  Subclasses register their packed tensors
    with `_format_buffer`, which keeps their dtype when the module changes dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool, transform: bool, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.transform = in_features, out_features, transform
        self._format_names: list[str] = []
        if transform:
            for name, n in (("in", in_features), ("out", out_features)):
                spec = transform_spec(n)  # ValueError names the width when none exists
                q = spec.q_matrix(torch.float32)
                self._format_buffer(f"q_{name}", None if q is None else q.to(device))
                self._format_buffer(f"signs_{name}", torch.zeros(signs_nbytes(n), dtype=torch.uint8, device=device))
        else:
            for name in ("q_in", "signs_in", "q_out", "signs_out"):
                self._format_buffer(name, None)
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype)) if bias else None

    def _format_buffer(self, name: str, value: torch.Tensor | None) -> None:
        self.register_buffer(name, value)
        self._format_names.append(name)

    def _apply(self, fn, recurse=True):
        # Format tensors follow device moves only: an integer probe sees just the device
        # part of fn (torch's conversions touch floating-point tensors' dtypes only).
        held = {n: self._buffers[n] for n in self._format_names if self._buffers.get(n) is not None}
        for n in held:
            self._buffers[n] = None
        try:
            super()._apply(fn, recurse)
        finally:
            for n, t in held.items():
                device = fn(torch.empty(0, dtype=torch.int8, device=t.device)).device
                self._buffers[n] = t.to(device)
        return self

    def init_signs(self, seed: int) -> None:
        """Draw fresh random sign vectors (the 'R' of RHT) from `seed`."""
        if self.transform:
            self.signs_in.copy_(random_signs(self.in_features, seed=2 * seed))
            self.signs_out.copy_(random_signs(self.out_features, seed=2 * seed + 1))

    # -- moving matrices between the original and the transformed space (float64) --
    def _q(self, name):
        q = getattr(self, name)
        return None if q is None else q.double()

    def weight_to_transformed(self, W: torch.Tensor) -> torch.Tensor:
        """T_N S_out W S_in T_Kᵀ."""
        if not self.transform:
            return W.double()
        A = rht(W.double(), self._q("q_in"), self.signs_in, None)  # rows: W S_in T_Kᵀ
        return rht(A.T.contiguous(), self._q("q_out"), self.signs_out, None).T.contiguous()

    def weight_from_transformed(self, Wt: torch.Tensor) -> torch.Tensor:
        """S_out T_Nᵀ Wt T_K S_in (the inverse of weight_to_transformed)."""
        if not self.transform:
            return Wt.double()
        A = rht(Wt.double().T.contiguous(), self._q("q_out"), None, self.signs_out, transpose=True).T.contiguous()
        return rht(A, self._q("q_in"), None, self.signs_in, transpose=True)

    def hessian_to_transformed(self, H: torch.Tensor) -> torch.Tensor:
        """T_K S_in H S_in T_Kᵀ: the proxy Hessian of the transformed inputs."""
        if not self.transform:
            return H.double()
        A = rht(H.double(), self._q("q_in"), self.signs_in, None)
        return rht(A.T.contiguous(), self._q("q_in"), self.signs_in, None).T.contiguous()

    def _transform_args(self):
        return (self.q_in, self.signs_in, self.q_out, self.signs_out, self.transform, self.transform)

    def _bias_for(self, x: torch.Tensor):
        b = self.bias
        if b is not None and b.dtype not in (x.dtype, torch.float32):
            b = b.to(x.dtype)
        return b

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, transform={self.transform}")
