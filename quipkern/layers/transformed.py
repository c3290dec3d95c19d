"""What QuipLinear and TernaryLinear share: the transform buffers (docs/FORMATS.md,
"Transforms"), moving weights and Hessians into and out of the transformed space, and
keeping the packed-format tensors' dtypes through .to() / .half() / .bfloat16().

    y = S_out · T_Nᵀ · (Ŵ · (T_K · S_in · x)) + bias,   Ŵ ≈ T_N · S_out · W · S_in · T_Kᵀ

Padding (docs/FORMATS.md, "Widths without a cheap transform"): K and N are the padded
widths of quipkern.width_plan (K also a multiple of what the weight format needs); W is
zero-padded to (N, K) once here, x is zero-padded to K inside the ops, and the output
is cut back to out_features.
"""

from __future__ import annotations

import torch
from torch import nn

from ..formats.signs import random_signs, signs_nbytes
from ..reference import rht
from ..transform_spec import width_plan

__all__ = ["TransformedLinear"]


class TransformedLinear(nn.Module):
    """Base of the quantized Linear layers.  Subclasses register their packed tensors
    with `_format_buffer`, which keeps their dtype when the module changes dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool, transform: bool, device=None, dtype=None,
                 in_multiple: int = 1):
        """in_multiple: what the weight format needs the in-dimension K to be a multiple of."""
        super().__init__()
        for what, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{type(self).__name__}: {what} must be a positive int; got {v!r}")
        self.in_features, self.out_features, self.transform = in_features, out_features, transform
        self.in_plan = width_plan(in_features, in_multiple, transform)
        self.out_plan = width_plan(out_features, 1, transform)
        self._format_names: list[str] = []
        if transform:
            for name, plan in (("in", self.in_plan), ("out", self.out_plan)):
                q = plan.spec.q_matrix(torch.float32)
                self._format_buffer(f"q_{name}", None if q is None else q.to(device))
                self._format_buffer(f"signs_{name}",
                                    torch.zeros(signs_nbytes(plan.padded), dtype=torch.uint8, device=device))
        else:
            for name in ("q_in", "signs_in", "q_out", "signs_out"):
                self._format_buffer(name, None)
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype)) if bias else None

    @property
    def padded_in_features(self) -> int:
        """K: the weight's in-dimension (in_features padded, docs/FORMATS.md)."""
        return self.in_plan.padded

    @property
    def padded_out_features(self) -> int:
        """N: the weight's out-dimension (out_features padded)."""
        return self.out_plan.padded

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
            self.signs_in.copy_(random_signs(self.padded_in_features, seed=2 * seed))
            self.signs_out.copy_(random_signs(self.padded_out_features, seed=2 * seed + 1))

    # -- moving matrices between the original and the transformed space (float64) --
    def _q(self, name):
        q = getattr(self, name)
        return None if q is None else q.double()

    def _check_matrix(self, what: str, t: torch.Tensor, shape: tuple[int, int]) -> None:
        if t.dim() != 2 or tuple(t.shape) != shape:
            raise ValueError(f"{type(self).__name__}: '{what}' must have shape {shape}; got {tuple(t.shape)}")

    def weight_to_transformed(self, W: torch.Tensor) -> torch.Tensor:
        """T_N S_out W S_in T_Kᵀ (N, K), W (out_features, in_features) zero-padded first."""
        self._check_matrix("W", W, (self.out_features, self.in_features))
        N, K = self.padded_out_features, self.padded_in_features
        W = W.double()
        if not self.transform:
            return torch.nn.functional.pad(W, (0, K - self.in_features, 0, N - self.out_features))
        A = rht(W, self._q("q_in"), self.signs_in, None, n=K)  # rows: W S_in T_Kᵀ
        return rht(A.T.contiguous(), self._q("q_out"), self.signs_out, None, n=N).T.contiguous()

    def weight_from_transformed(self, Wt: torch.Tensor) -> torch.Tensor:
        """S_out T_Nᵀ Wt T_K S_in, cut to (out_features, in_features) (the inverse of
        weight_to_transformed on the unpadded part)."""
        self._check_matrix("Wt", Wt, (self.padded_out_features, self.padded_in_features))
        Wt = Wt.double()
        if not self.transform:
            return Wt[: self.out_features, : self.in_features].contiguous()
        A = rht(Wt.T.contiguous(), self._q("q_out"), None, self.signs_out, transpose=True,
                n_out=self.out_features).T.contiguous()
        return rht(A, self._q("q_in"), None, self.signs_in, transpose=True, n_out=self.in_features)

    def hessian_to_transformed(self, H: torch.Tensor) -> torch.Tensor:
        """T_K S_in H S_in T_Kᵀ: the proxy Hessian of the transformed (zero-padded) inputs."""
        self._check_matrix("hessian", H, (self.in_features, self.in_features))
        K = self.padded_in_features
        H = H.double()
        if not self.transform:
            return torch.nn.functional.pad(H, (0, K - self.in_features, 0, K - self.in_features))
        A = rht(H, self._q("q_in"), self.signs_in, None, n=K)
        return rht(A.T.contiguous(), self._q("q_in"), self.signs_in, None, n=K).T.contiguous()

    def _transform_args(self):
        return (self.q_in, self.signs_in, self.q_out, self.signs_out, self.transform, self.transform,
                self.in_features, self.out_features)

    def _bias_for(self, x: torch.Tensor):
        b = self.bias
        if b is not None and b.dtype not in (x.dtype, torch.float32):
            b = b.to(x.dtype)
        return b

    def extra_repr(self) -> str:
        pad = ""
        if (self.padded_in_features, self.padded_out_features) != (self.in_features, self.out_features):
            pad = f", padded=({self.padded_out_features}, {self.padded_in_features})"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, transform={self.transform}{pad}")
