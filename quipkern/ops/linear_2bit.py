"""torch.ops.quipkern.linear_2bit: the fused 2-bit layer

    y = S_out · T_outᵀ · (Ŵ · (T_in · S_in · x)) + bias

x: (..., K) float16 / bfloat16 / float32 / float64, last dim contiguous.
packed, scales, zeros: the 2-bit weight of docs/FORMATS.md ("2-bit weights"), Ŵ: (N, K).
bias: None or (N,) in x's dtype or float32.
q_in, signs_in (width K) and q_out, signs_out (width N): the transforms, used only when
transform_in / transform_out is set (see ops/rht.py for their form).
Returns (..., N) in x's dtype.  Differentiable in x and bias; the weight is frozen.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..formats.two_bit import check_2bit_weight
from ..reference import linear_2bit as _reference
from . import backend
from .dequantize_2bit import dequantize_2bit
from .transformed_linear import check_layer_args, check_x, register_linear_autograd

__all__ = ["linear_2bit"]


def _check(x, packed, scales, zeros, bias, q_in, signs_in, q_out, signs_out,
           transform_in, transform_out, check_data):
    op = "linear_2bit"
    check_x(op, x)
    N, K, _ = check_2bit_weight(op, packed, scales, zeros, x.device, check_data)
    check_layer_args(op, x, N, K, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out)
    return N


@torch.library.custom_op("quipkern::linear_2bit", mutates_args=())
def linear_2bit(
    x: torch.Tensor,
    packed: torch.Tensor,
    scales: torch.Tensor,
    zeros: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    q_in: Optional[torch.Tensor] = None,
    signs_in: Optional[torch.Tensor] = None,
    q_out: Optional[torch.Tensor] = None,
    signs_out: Optional[torch.Tensor] = None,
    transform_in: bool = False,
    transform_out: bool = False,
) -> torch.Tensor:
    args = (x, packed, scales, zeros, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out)
    N = _check(*args, True)
    if x.numel() == 0:
        return x.new_empty((*x.shape[:-1], N))
    return backend.dispatch("linear_2bit", x.device.type, *args)


@linear_2bit.register_fake
def _(x, packed, scales, zeros=None, bias=None, q_in=None, signs_in=None, q_out=None,
      signs_out=None, transform_in=False, transform_out=False):
    N = _check(x, packed, scales, zeros, bias, q_in, signs_in, q_out, signs_out,
               transform_in, transform_out, False)
    return x.new_empty((*x.shape[:-1], N))


register_linear_autograd(
    linear_2bit,
    lambda x, packed, scales, zeros: dequantize_2bit(packed, scales, zeros, x.dtype),
    n_weight_args=3,
)
backend.register("linear_2bit", "reference", _reference)
