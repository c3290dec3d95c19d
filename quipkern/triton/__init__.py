"""Triton kernels, one file per op (same names as quipkern/ops/).  Importable only when
Triton is installed; CPU tensors need TRITON_INTERPRET=1 (set before importing)."""

import os

try:
    import triton  # noqa: F401

    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the installation
    AVAILABLE = False

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
SUPPORTED_DTYPES = ("float16", "bfloat16", "float32")


def unsupported(device, dtype, what: str = "dtype") -> str | None:
    """Why the Triton kernels cannot take a tensor on `device` of `dtype` (None: they can)."""
    if device.type == "cpu" and not INTERPRET:
        return "CPU tensors run in Triton only under TRITON_INTERPRET=1"
    if device.type not in ("cpu", "cuda"):
        return f"device type {device.type} is not supported by Triton here"
    if str(dtype).removeprefix("torch.") not in SUPPORTED_DTYPES:
        return f"{what} {dtype} is not supported ({', '.join(SUPPORTED_DTYPES)})"
    return None
