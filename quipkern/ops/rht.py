"""torch.ops.quipkern.rht: the randomized Hadamard transform as a torch op.

    y = scale · S_out · T · S_in · x          (Tᵀ when transpose=True)

x: (..., n_in) float16 / bfloat16 / float32 / float64, last dim contiguous.
n: the transform width (-1: n_in).  A padded width (docs/FORMATS.md, "Widths without a
   cheap transform") has n > n_in: x is read as if zero-padded to n.
n_out: how many leading outputs to keep, 1 <= n_out <= n (-1: n).
q: None (n = 2^k) or the orthonormal (m, m) factor, float32 or float64, n = m · 2^k.
signs_in, signs_out: None or uint8 bitmasks of ceil(n/8) bytes (formats/signs.py).
rht returns a new contiguous tensor (..., n_out) in x's dtype; it is differentiable in x
(the backward is the transposed transform with the sign vectors swapped and n_in/n_out
exchanged).  rht_ writes the result into x in place (no padding).
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import _ext
from .. import triton as _triton
from .._checks import FLOAT_DTYPES, check_optional, check_tensor
from ..formats.signs import signs_nbytes
from ..reference import rht as _reference
from ..reference.rht import order as _order
from . import backend

__all__ = ["rht", "rht_", "check_transform", "check_rht_args"]


def check_transform(op: str, n: int, q_name: str, q, signs: list, device, width_of: str) -> int:
    """Validate a transform of width n: its factor `q` and its sign bitmasks, given as
    (name, tensor) pairs.  Returns m."""
    check_optional(op, q_name, q, dtypes=(torch.float32, torch.float64), ndim=2, device=device,
                   contiguous=True, what=f"orthonormal dense factor of the transform of width {n}")
    m = 1 if q is None else q.shape[0]
    if q is not None and q.shape[1] != m:
        raise ValueError(f"{op}: '{q_name}' must be square; got shape {tuple(q.shape)}")
    p = n // m if m else 0
    if m == 0 or n % m or p & (p - 1) or p == 0:
        raise ValueError(
            f"{op}: {width_of} = {n} is not m·2^k for m = {m} (the size of '{q_name}'); "
            f"use quipkern.transform_spec({n}) to get a supported factorization"
        )
    for name, s in signs:
        check_optional(op, name, s, dtypes=(torch.uint8,), shape=(signs_nbytes(n),), device=device,
                       contiguous=True, what=f"sign bitmask of width {n}")
    return m


def check_rht_args(x, q, signs_in, signs_out, scale, transpose, n=-1, n_out=-1, op="rht") -> tuple[int, int]:
    """Validate the arguments; returns (n, n_out) with the defaults resolved."""
    check_tensor(op, "x", x, dtypes=FLOAT_DTYPES, min_ndim=1, last_dim_contiguous=True)
    if x.shape[-1] == 0:
        raise ValueError(f"{op}: 'x' must have a non-empty last dimension; got shape {tuple(x.shape)}")
    n = x.shape[-1] if n == -1 else n
    n_out = n if n_out == -1 else n_out
    if n < x.shape[-1]:
        raise ValueError(f"{op}: the transform width n={n} must be at least the last dim of 'x' "
                         f"(shape {tuple(x.shape)}); x is zero-padded up to n, never cut")
    if not 1 <= n_out <= n:
        raise ValueError(f"{op}: n_out={n_out} must be in [1, n={n}] (or -1 for n)")
    check_transform(op, n, "q", q, [("signs_in", signs_in), ("signs_out", signs_out)], x.device,
                    "the last dim of 'x'" if n == x.shape[-1] else "the transform width n")
    return n, n_out


@torch.library.custom_op("quipkern::rht", mutates_args=())
def rht(
    x: torch.Tensor,
    q: Optional[torch.Tensor] = None,
    signs_in: Optional[torch.Tensor] = None,
    signs_out: Optional[torch.Tensor] = None,
    scale: float = 1.0,
    transpose: bool = False,
    n: int = -1,
    n_out: int = -1,
) -> torch.Tensor:
    n, n_out = check_rht_args(x, q, signs_in, signs_out, scale, transpose, n, n_out)
    if x.numel() == 0:
        return torch.empty((*x.shape[:-1], n_out), dtype=x.dtype, device=x.device)
    return backend.dispatch("rht", x.device.type, x, q, signs_in, signs_out, float(scale), transpose, n, n_out)


@rht.register_fake
def _(x, q=None, signs_in=None, signs_out=None, scale=1.0, transpose=False, n=-1, n_out=-1):
    n, n_out = check_rht_args(x, q, signs_in, signs_out, scale, transpose, n, n_out)
    return torch.empty((*x.shape[:-1], n_out), dtype=x.dtype, device=x.device)


def _setup_context(ctx, inputs, output):
    x, q, signs_in, signs_out, scale, transpose, n, n_out = inputs
    ctx.save_for_backward(q, signs_in, signs_out)
    ctx.scale, ctx.transpose = scale, transpose
    ctx.n_in, ctx.n = x.shape[-1], (x.shape[-1] if n == -1 else n)
    ctx.n_out = ctx.n if n_out == -1 else n_out


def _backward(ctx, grad):
    q, signs_in, signs_out = ctx.saved_tensors
    # d/dx of (T · pad(x))[:n_out] is pad-then-Tᵀ of the gradient, cut to x's width
    gx = rht(grad.contiguous(), q, signs_out, signs_in, ctx.scale, not ctx.transpose, ctx.n, ctx.n_in)
    return gx, None, None, None, None, None, None, None


rht.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("quipkern::rht_", mutates_args=("x",))
def rht_(
    x: torch.Tensor,
    q: Optional[torch.Tensor] = None,
    signs_in: Optional[torch.Tensor] = None,
    signs_out: Optional[torch.Tensor] = None,
    scale: float = 1.0,
    transpose: bool = False,
) -> None:
    """In-place rht: x <- scale · S_out · T · S_in · x (no autograd, no padding)."""
    check_rht_args(x, q, signs_in, signs_out, scale, transpose, op="rht_")
    n = x.shape[-1]
    if x.numel():
        backend.dispatch("rht", x.device.type, x, q, signs_in, signs_out, float(scale), transpose, n, n, out=x)


@rht_.register_fake
def _(x, q=None, signs_in=None, signs_out=None, scale=1.0, transpose=False):
    check_rht_args(x, q, signs_in, signs_out, scale, transpose, op="rht_")


# Backend implementations: fn(x, q, signs_in, signs_out, scale, transpose, n, n_out, out=None)
# -> out, of shape (..., n_out).  `out` (last dim contiguous) may be x itself when
# x's width == n == n_out.  Besides a tensor or None, q may be an int m here (not in the
# op): Q = I_m, H_p on each of the m chunks — what is left of T once its Q factor is
# folded into a dequantized weight (ops/linear_2bit.py, prefill).


def _cuda_supports(x, q, signs_in, signs_out, scale, transpose, n, n_out):
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"dtype {x.dtype} is not supported by the CUDA kernel (float16, bfloat16, float32)"
    if n > 32768 or _order(q) > 64:
        return f"width {n} (m = {_order(q)}) is beyond the CUDA kernel's n <= 32768, m <= 64"
    return None


def _rows(t: torch.Tensor) -> torch.Tensor:
    """t as (rows, n) without a copy: raises if the leading dims cannot be flattened."""
    return t.view(-1, t.shape[-1]) if t.dim() != 2 else t


def _cuda(x, q, signs_in, signs_out, scale, transpose, n, n_out, out=None):
    if out is None:
        out = torch.empty((*x.shape[:-1], n_out), dtype=x.dtype, device=x.device)
    try:
        x2, o2 = _rows(x), _rows(out)
    except RuntimeError:  # leading dims not flattenable: go through contiguous copies
        res = _cuda(x.contiguous(), q, signs_in, signs_out, scale, transpose, n, n_out)
        return out.copy_(res)
    if isinstance(q, int):  # Q = I_m
        torch.ops.quipkern._rht_cuda(x2, None, signs_in, signs_out, scale, transpose, n, o2, q)
        return out
    qf = None if q is None else q.to(torch.float32).contiguous()
    torch.ops.quipkern._rht_cuda(x2, qf, signs_in, signs_out, scale, transpose, n, o2)
    return out


backend.register("rht", "reference", backend.with_out(_reference))
if _triton.AVAILABLE:
    from ..triton import rht as _triton_rht

    backend.register("rht", "triton", _triton_rht.rht, _triton_rht.supports)
if _ext.AVAILABLE:
    backend.register("rht", "cuda", _cuda, _cuda_supports)
