"""Argument checks shared by every op: each failure names the op, the argument, what it
got (shape, dtype, device) and what was expected.  Wrong type or dtype -> TypeError;
wrong shape, device, layout or alignment -> ValueError."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def describe(t: object) -> str:
    if not isinstance(t, torch.Tensor):
        return f"{type(t).__name__} {t!r}"[:200]
    return f"tensor of shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def _fmt_dtypes(dtypes: Iterable[torch.dtype]) -> str:
    return " or ".join(str(d) for d in dtypes)


def _fmt_shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"


def is_fake(t: torch.Tensor) -> bool:
    """True for meta / fake tensors, whose data pointer cannot be read."""
    if t.device.type == "meta":
        return True
    try:
        from torch._subclasses.fake_tensor import FakeTensor

        return isinstance(t, FakeTensor)
    except ImportError:  # pragma: no cover
        return False


def check_tensor(
    op: str,
    name: str,
    t: object,
    *,
    dtypes: Sequence[torch.dtype] | None = None,
    ndim: int | None = None,
    min_ndim: int | None = None,
    shape: Sequence[int | None] | None = None,
    device: torch.device | None = None,
    contiguous: bool = False,
    last_dim_contiguous: bool = False,
    align: int | None = None,
    what: str = "",
) -> torch.Tensor:
    """Validate one tensor argument; returns it.  `shape` may use None for any size."""
    hint = f" ({what})" if what else ""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: '{name}' must be a torch.Tensor{hint}; got {describe(t)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise TypeError(
            f"{op}: '{name}' must have dtype {_fmt_dtypes(dtypes)}{hint}; got {describe(t)}"
        )
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{op}: '{name}' must be {ndim}-D{hint}; got {describe(t)}")
    if min_ndim is not None and t.dim() < min_ndim:
        raise ValueError(f"{op}: '{name}' must have at least {min_ndim} dims{hint}; got {describe(t)}")
    if shape is not None:
        if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
            raise ValueError(
                f"{op}: '{name}' must have shape {_fmt_shape(shape)}{hint}; got {describe(t)}"
            )
    if device is not None and t.device != device:
        raise ValueError(
            f"{op}: '{name}' must be on device {device} (the device of the input); got {describe(t)}"
        )
    if contiguous and not t.is_contiguous():
        raise ValueError(
            f"{op}: '{name}' must be contiguous{hint}; got {describe(t)} with strides {t.stride()}"
        )
    if last_dim_contiguous and t.dim() > 0 and t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(
            f"{op}: '{name}' must have a contiguous last dimension{hint}; got {describe(t)} "
            f"with strides {t.stride()}"
        )
    if align is not None and t.numel() > 0 and not is_fake(t) and t.data_ptr() % align:
        raise ValueError(
            f"{op}: '{name}' must start at a {align}-byte aligned address{hint}; got {describe(t)} "
            f"at address {t.data_ptr():#x} (a slice of a larger tensor? pass .clone())"
        )
    return t


def check_optional(op: str, name: str, t: object, **kw) -> torch.Tensor | None:
    return None if t is None else check_tensor(op, name, t, **kw)
