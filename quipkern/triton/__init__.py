"""Triton kernels, one file per op (same names as quipkern/ops/).  Importable only when
Triton is installed; CPU tensors need TRITON_INTERPRET=1 (set before importing)."""

try:
    import triton  # noqa: F401

    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the installation
    AVAILABLE = False
