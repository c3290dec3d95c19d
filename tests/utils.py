"""Helpers shared by the tests."""

from __future__ import annotations

import os

import torch

from quipkern.ops import backend

HAS_CUDA = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

# Bounds on ||out - ref|| / ||ref|| against a float64 reference, by output dtype:
# a few times the dtype's own rounding (bf16 ~1.7e-3 rms, fp16 ~2e-4, fp32 ~6e-8), with
# room for fp32 / tf32 accumulation.  Triton's interpreter truncates fp32 -> bf16
# (twice the error of rounding), still inside the bf16 bound.
REL_TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
# A whole layer rounds to the dtype up to three times (after each transform and the
# matmul); the interpreter's truncation makes that ~1.5x worse for bfloat16.
LAYER_TOL = {**REL_TOL, torch.bfloat16: 1.6e-2 if INTERPRET else 1e-2, torch.float16: 3e-3}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double().cpu(), ref.double().cpu()
    assert torch.isfinite(out).all(), "output has NaN/Inf (unwritten or poisoned elements?)"
    return ((out - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def kernel_backends(op: str) -> list[tuple[str, str]]:
    """(backend, device) pairs on which `op`'s kernels can be tested here."""
    pairs = []
    avail = backend.available(op)
    if HAS_CUDA:
        pairs += [(b, "cuda") for b in ("cuda", "triton") if b in avail]
    elif "triton" in avail and INTERPRET:
        pairs.append(("triton", "cpu"))
    return pairs


def poison_like(t: torch.Tensor) -> torch.Tensor:
    """An output buffer full of NaN, so that unwritten elements fail the check."""
    return torch.full_like(t, float("nan"))
