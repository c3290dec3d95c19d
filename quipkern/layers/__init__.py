"""Drop-in replacements for nn.Linear (above the ops; they never call kernels directly)."""

from .quip_linear import QuipLinear
from .ternary_linear import TernaryLinear

__all__ = ["QuipLinear", "TernaryLinear"]
