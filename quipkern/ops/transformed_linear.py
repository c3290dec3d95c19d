"""What every transformed quantized linear op shares: the checks of x, bias and the two
transforms, and the backward in x through the frozen weight:

    y  = S_out · T_outᵀ · (Ŵ · (T_in · S_in · x)) + bias
    dx = S_in · T_inᵀ · (Ŵᵀ · (T_out · S_out · dy)),   dbias = sum(dy)

Padded layers (docs/FORMATS.md, "Widths without a cheap transform"): Ŵ is (N, K) and the
layer's in_features <= K, out_features <= N; x is zero-padded to K before T_in and
the output cut to out_features after T_outᵀ.  Both must be passed explicitly when they
differ from the weight's shape, so that a wrongly sized x is an error, not a padding.
"""

from __future__ import annotations

import torch

from .._checks import FLOAT_DTYPES, check_optional, check_tensor
from . import backend
from .rht import check_transform, rht

__all__ = ["check_x", "check_layer_args", "register_linear_autograd", "composed_forward", "dense_matmul"]


def check_x(op: str, x) -> None:
    check_tensor(op, "x", x, dtypes=FLOAT_DTYPES, min_ndim=1, last_dim_contiguous=True)


def resolve_features(op, N, K, in_features, out_features) -> tuple[int, int]:
    """The layer's (in_features, out_features) with -1 resolved to the weight's K and N."""
    fin = K if in_features == -1 else in_features
    fout = N if out_features == -1 else out_features
    if not 1 <= fin <= K:
        raise ValueError(f"{op}: in_features={in_features} must be in [1, K={K}] (the weight's in-dimension) "
                         f"or -1 for K")
    if not 1 <= fout <= N:
        raise ValueError(f"{op}: out_features={out_features} must be in [1, N={N}] (the weight's out-dimension) "
                         f"or -1 for N")
    return fin, fout


def check_layer_args(op, x, N, K, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
                     in_features=-1, out_features=-1) -> int:
    """Validate x, bias and the transforms for a weight Ŵ (N, K); returns out_features."""
    fin, fout = resolve_features(op, N, K, in_features, out_features)
    if x.shape[-1] != fin:
        pad = "" if fin == K else f" (the weight is padded to K={K})"
        raise ValueError(
            f"{op}: the last dim of 'x' must equal in_features={fin}{pad}; got shape {tuple(x.shape)}"
        )
    check_optional(op, "bias", bias, dtypes=(x.dtype, torch.float32), shape=(fout,), device=x.device,
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
    return fout


def register_linear_autograd(op, dequantize, n_weight_args: int) -> None:
    """Backward in x (and bias) for a custom op with signature
    (x, *weight_args, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
     in_features, out_features, *extra) (extra: further non-tensor arguments);
    `dequantize(x, *weight_args, *extra)` gives Ŵ (N, K) in x's dtype.  Weights are frozen."""

    def setup_context(ctx, inputs, output):
        x, rest = inputs[0], inputs[1:]
        weight_args, rest = rest[:n_weight_args], rest[n_weight_args:]
        bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out, _, _, *extra = rest
        ctx.save_for_backward(x, *weight_args, q_in, signs_in, q_out, signs_out)
        ctx.flags = (transform_in, transform_out)
        ctx.extra = tuple(extra)
        ctx.n_rest = len(rest)
        ctx.bias_dtype = None if bias is None else bias.dtype

    def backward(ctx, grad):
        x, *saved = ctx.saved_tensors
        weight_args, (q_in, signs_in, q_out, signs_out) = saved[:n_weight_args], saved[n_weight_args:]
        transform_in, transform_out = ctx.flags
        grad_x = grad_bias = None
        g = grad.contiguous()
        if ctx.needs_input_grad[0]:
            w = dequantize(x, *weight_args, *ctx.extra).to(g.dtype)
            N, K = w.shape
            if transform_out:
                g = rht(g, q_out, signs_out, None, 1.0, False, N)
            else:
                g = torch.nn.functional.pad(g, (0, N - g.shape[-1]))
            gx = torch.matmul(g, w)
            if transform_in:
                gx = rht(gx.contiguous(), q_in, None, signs_in, 1.0, True, K, x.shape[-1])
            else:
                gx = gx[..., : x.shape[-1]]
            grad_x = gx
        if ctx.bias_dtype is not None and ctx.needs_input_grad[1 + n_weight_args]:
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0).to(ctx.bias_dtype)
        return (grad_x,) + (None,) * n_weight_args + (grad_bias,) + (None,) * (ctx.n_rest - 1)

    op.register_autograd(backward, setup_context=setup_context)


def composed_forward(x, N, K, n_out, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
                     matmul, fuse_bias=True, out=None):
    """The forward of a backend built around its `matmul(x2, bias, out) -> (M, N)`.

    x2 (M, K) is x flattened and put through T_in·S_in (the rht op's dispatch, which also
    zero-pads x to K), or zero-padded to K without a transform.  matmul computes
    Ŵ·x2 (+ bias when handed one), into `out` when handed one; it is handed both only
    when its result is final (no output transform, nothing to cut, and fuse_bias).
    Then S_out·T_outᵀ and the cut to n_out columns, and the bias if matmul did not add it.
    Returns out (..., n_out), allocated here when not given."""
    dev = x.device.type
    x2 = x.reshape(-1, x.shape[-1])
    if transform_in:
        x2 = backend.dispatch("rht", dev, x2, q_in, signs_in, None, 1.0, False, K, K)
    elif x2.shape[-1] < K:
        x2 = torch.nn.functional.pad(x2, (0, K - x2.shape[-1]))
    if out is None:
        out = torch.empty(*x.shape[:-1], n_out, dtype=x.dtype, device=x.device)
    out2 = out.view(-1, n_out)
    direct = not transform_out and n_out == N  # the matmul can write the result itself
    fused_bias = bias if bias is not None and fuse_bias and direct else None
    y = matmul(x2, fused_bias, out2 if direct else None)
    if transform_out:
        backend.dispatch("rht", dev, y, q_out, None, signs_out, 1.0, True, N, n_out, out=out2)
    elif y is not out2:
        out2.copy_(y[:, :n_out])
    if bias is not None and fused_bias is None:
        out2.add_(bias)
    return out


def dense_matmul(x2, w, bias, out):
    """x2 (M, K) @ w (N, K)ᵀ (+ bias in x2's dtype) with cuBLAS: the prefill matmul of a
    dequantized weight, written straight into `out` when given (a copy of an (M, N)
    result would cost as much as the dequantize)."""
    if out is None:
        return torch.nn.functional.linear(x2, w, bias)
    if bias is None:
        return torch.mm(x2, w.t(), out=out)
    return torch.addmm(bias, x2, w.t(), out=out)
