"""Proxy Hessians H = E[x xᵀ] of Linear layers' inputs, collected with forward hooks
while the user's calibration batches run through the model."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch

__all__ = ["collect_hessians", "run_calibration"]


@contextlib.contextmanager
def collect_hessians(modules: dict[str, torch.nn.Linear]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the context, every forward of the given Linear modules adds its inputs to
    a float64 running mean of x xᵀ; the dict holds the means on exit."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def hook(name):
        def fn(module, args):
            x = args[0].detach().reshape(-1, module.in_features).double()
            if name not in sums:
                sums[name] = torch.zeros(module.in_features, module.in_features, dtype=torch.float64,
                                         device=x.device)
                counts[name] = 0
            sums[name] += x.T @ x
            counts[name] += x.shape[0]
        return fn

    for name, m in modules.items():
        handles.append(m.register_forward_pre_hook(hook(name)))
    result: dict[str, torch.Tensor] = {}
    try:
        yield result
    finally:
        for h in handles:
            h.remove()
        for name in sums:
            result[name] = sums[name] / max(1, counts[name])


def run_calibration(model: torch.nn.Module, calibration) -> None:
    """Run the calibration data: a callable(model), or an iterable of batches (a tensor,
    a tuple of positional args, or a dict of keyword args)."""
    with torch.no_grad():
        if callable(calibration):
            calibration(model)
            return
        if not isinstance(calibration, Iterable):
            raise TypeError(f"calibration must be a callable or an iterable of batches; got {type(calibration).__name__}")
        for batch in calibration:
            if isinstance(batch, dict):
                model(**batch)
            elif isinstance(batch, (tuple, list)):
                model(*batch)
            else:
                model(batch)
