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
    linear_ternary_a8,
    matmul_ternary_int8,
    rht,
    rht_,
    use_backend,
)
from .layers import QuipLinear, TernaryLinear
from .model import QuantConfig, QuantReport, load_quantized, prepare_model, quantize_model, save_quantized
from .transform_spec import MAX_DENSE_M, TransformSpec, WidthPlan, transform_spec, width_plan

__version__ = "0.1.0"

__all__ = [
    "QuipLinear",
    "TernaryLinear",
    "QuantConfig",
    "QuantReport",
    "quantize_model",
    "prepare_model",
    "save_quantized",
    "load_quantized",
    "rht",
    "rht_",
    "linear_2bit",
    "linear_ternary",
    "linear_ternary_a8",
    "matmul_ternary_int8",
    "dequantize_2bit",
    "dequantize_ternary",
    "use_backend",
    "transform_spec",
    "width_plan",
    "WidthPlan",
    "TransformSpec",
    "MAX_DENSE_M",
    "formats",
    "reference",
]
