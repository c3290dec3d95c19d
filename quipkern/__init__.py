"""quipkern: fused incoherence-processing + low-bit matmul kernels for PyTorch.

Layouts: docs/FORMATS.md.  Ops: torch.ops.quipkern.* (quipkern/ops/), each with a
pure-PyTorch reference (quipkern/reference/).
"""

from . import formats, reference
from .ops import (
    dequantize_2bit,
    dequantize_ternary,
    linear_2bit,
    linear_ternary,
    rht,
    rht_,
    use_backend,
)
from .transform_spec import MAX_DENSE_M, TransformSpec, transform_spec

__version__ = "0.1.0"

__all__ = [
    "rht",
    "rht_",
    "linear_2bit",
    "linear_ternary",
    "dequantize_2bit",
    "dequantize_ternary",
    "use_backend",
    "transform_spec",
    "TransformSpec",
    "MAX_DENSE_M",
    "formats",
    "reference",
]
