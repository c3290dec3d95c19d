"""Which implementation runs an op: the dispatch rule, in one place.

Every op has up to three implementations ("backends"):
    cuda       quipkern._C, the CUDA C++ kernels in csrc/ (built by setup.py)
    triton     the Triton kernels in quipkern/triton/
    reference  the pure-PyTorch references in quipkern/reference/ and quipkern/formats/

Rule, for each call:
  1. A forced backend (`with quipkern.use_backend("triton"):` or the environment variable
     QUIPKERN_BACKEND) runs the call or raises: never a silent fall-back.
  2. Otherwise, on a CUDA device: the first of cuda, triton, reference that is available
     and supports the call (dtype, sizes, alignment: each backend's `supports` says why
     not).  On any other device: reference.  Triton runs CPU tensors only when forced and
     TRITON_INTERPRET=1 (its interpreter; used by the tests).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from typing import Callable, Iterator

BACKENDS = ("cuda", "triton", "reference")

Supports = Callable[..., "str | None"]  # returns None when it can run the call, else why not


@dataclasses.dataclass(frozen=True)
class Impl:
    fn: Callable
    supports: Supports


_REGISTRY: dict[str, dict[str, Impl]] = {}
_FORCED: contextvars.ContextVar[str | None] = contextvars.ContextVar("quipkern_backend", default=None)


def _always(*args, **kwargs) -> None:
    return None


def register(op: str, backend: str, fn: Callable, supports: Supports = _always) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"register: unknown backend {backend!r}; expected one of {BACKENDS}")
    _REGISTRY.setdefault(op, {})[backend] = Impl(fn, supports)


def available(op: str) -> tuple[str, ...]:
    """The backends that have an implementation of `op` in this installation."""
    impls = _REGISTRY.get(op, {})
    return tuple(b for b in BACKENDS if b in impls)


def forced_backend() -> str | None:
    forced = _FORCED.get() or os.environ.get("QUIPKERN_BACKEND") or None
    if forced is not None and forced not in BACKENDS:
        raise ValueError(f"QUIPKERN_BACKEND / use_backend: unknown backend {forced!r}; expected one of {BACKENDS}")
    return forced


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Force every quipkern op in this context to `name` (None: back to the rule)."""
    if name is not None and name not in BACKENDS:
        raise ValueError(f"use_backend: unknown backend {name!r}; expected one of {BACKENDS}")
    token = _FORCED.set(name)
    try:
        yield
    finally:
        _FORCED.reset(token)


def choose(op: str, device_type: str, *args) -> Impl:
    impls = _REGISTRY.get(op, {})
    forced = forced_backend()
    if forced is not None:
        impl = impls.get(forced)
        if impl is None:
            raise RuntimeError(
                f"{op}: backend '{forced}' was forced but has no implementation here "
                f"(available: {', '.join(available(op)) or 'none'}; is the CUDA extension built / Triton installed?)"
            )
        why = impl.supports(*args)
        if why:
            raise ValueError(f"{op}: forced backend '{forced}' cannot run this call: {why}")
        return impl
    order = ("cuda", "triton", "reference") if device_type == "cuda" else ("reference",)
    for name in order:
        impl = impls.get(name)
        if impl is not None and not impl.supports(*args):
            return impl
    raise RuntimeError(f"{op}: no backend can run this call on device type '{device_type}'")


def implementation(op: str, name: str) -> Callable:
    """The raw implementation of `op` in backend `name` (tests call it with poisoned outputs)."""
    try:
        return _REGISTRY[op][name].fn
    except KeyError:
        raise RuntimeError(f"{op}: backend '{name}' has no implementation here "
                           f"(available: {', '.join(available(op)) or 'none'})") from None


def why_not(op: str, name: str, *args) -> str | None:
    """Why backend `name` cannot run `op` on these arguments (None: it can)."""
    implementation(op, name)  # raises when the backend has no implementation
    return _REGISTRY[op][name].supports(*args)


def with_out(fn: Callable) -> Callable:
    """An implementation that can write into a given `out` from one that returns a new
    tensor (the references)."""

    def impl(*args, out=None):
        y = fn(*args)
        return y if out is None else out.copy_(y)

    return impl


def dispatch(op: str, device_type: str, *args, **kwargs):
    return choose(op, device_type, *args).fn(*args, **kwargs)




def chosen(op: str, device_type: str, *args) -> str:
    """Name of the backend `dispatch` would use (for tests and benchmarks)."""
    impl = choose(op, device_type, *args)
    return next(b for b, i in _REGISTRY[op].items() if i is impl)
