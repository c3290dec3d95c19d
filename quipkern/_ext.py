"""Loads the CUDA extension quipkern._C (csrc/), which registers the private ops
torch.ops.quipkern._<name>_cuda.  Absent on CPU-only installs; a present but broken
extension (built for another torch, say) is reported, not hidden."""

from __future__ import annotations

import importlib.util
import warnings

LOAD_ERROR: str | None = None
try:
    from . import _C  # noqa: F401

    AVAILABLE = True
except ImportError as e:
    AVAILABLE = False
    if importlib.util.find_spec("quipkern._C") is not None:
        LOAD_ERROR = str(e)
        warnings.warn(f"quipkern: the CUDA extension quipkern._C exists but failed to load ({e}); "
                      f"only the Triton and reference backends are available", RuntimeWarning)
