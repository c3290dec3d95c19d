"""What every transformed quantized linear op shares: the checks of x, bias and the two
transforms, and the backward in x through the frozen weight:

    y  = S_out · T_outᵀ · (Ŵ · (T_in · S_in · x)) + bias
    dx = S_in · T_inᵀ · (Ŵᵀ · (T_out · S_out · dy)),   dbias = sum(dy)
"""

from __future__ import annotations

import torch

from .._checks import FLOAT_DTYPES, check_optional, check_tensor
from .rht import check_transform, rht

__all__ = ["check_x", "check_layer_args", "register_linear_autograd"]


def check_x(op: str, x) -> None:
    check_tensor(op, "x", x, dtypes=FLOAT_DTYPES, min_ndim=1, last_dim_contiguous=True)


def check_layer_args(op, x, N, K, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out):
    if x.shape[-1] != K:
        raise ValueError(
            f"{op}: the last dim of 'x' must equal the weight's in_features K={K}; got {tuple(x.shape)}"
        )
    check_optional(op, "bias", bias, dtypes=(x.dtype, torch.float32), shape=(N,), device=x.device,
                   contiguous=True, what="one value per output feature")
    for flag_name, flag, q_name, q, s_name, s, n, width_of in (
        ("transform_in", transform_in, "q_in", q_in, "signs_in", signs_in, K, "in_features K"),
        ("transform_out", transform_out, "q_out", q_out, "signs_out", signs_out, N, "out_features N"),
    ):
        if flag:
            check_transform(op, n, q_name, q, [(s_name, s)], x.device, width_of)
        elif q is not None or s is not None:
            raise ValueError(
                f"{op}: '{q_name}'/'{s_name}' were given but '{flag_name}' is False; "
                f"set {flag_name}=True to apply that transform, or pass None"
            )


def register_linear_autograd(op, dequantize, n_weight_args: int) -> None:
    """Backward in x (and bias) for a custom op with signature
    (x, *weight_args, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out);
    `dequantize(x, *weight_args)` gives Ŵ (N, K) in x's dtype.  Weights are frozen."""

    def setup_context(ctx, inputs, output):
        x, rest = inputs[0], inputs[1:]
        weight_args, rest = rest[:n_weight_args], rest[n_weight_args:]
        bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out = rest
        ctx.save_for_backward(x, *weight_args, q_in, signs_in, q_out, signs_out)
        ctx.flags = (transform_in, transform_out)
        ctx.bias_dtype = None if bias is None else bias.dtype

    def backward(ctx, grad):
        x, *saved = ctx.saved_tensors
        weight_args, (q_in, signs_in, q_out, signs_out) = saved[:n_weight_args], saved[n_weight_args:]
        transform_in, transform_out = ctx.flags
        grad_x = grad_bias = None
        g = grad.contiguous()
        if ctx.needs_input_grad[0]:
            if transform_out:
                g = rht(g, q_out, signs_out, None, 1.0, False)
            gx = torch.matmul(g, dequantize(x, *weight_args).to(g.dtype))
            if transform_in:
                gx = rht(gx.contiguous(), q_in, None, signs_in, 1.0, True)
            grad_x = gx
        if ctx.bias_dtype is not None and ctx.needs_input_grad[1 + n_weight_args]:
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0).to(ctx.bias_dtype)
        return (grad_x,) + (None,) * n_weight_args + (grad_bias, None, None, None, None, None, None)

    op.register_autograd(backward, setup_context=setup_context)
