"""The torch ops (torch.ops.quipkern.*): registration, fake impls, autograd, dispatch.
Importing this package registers them; ops/backend.py states the dispatch rule."""

from .backend import available, chosen, use_backend
from .dequantize_2bit import dequantize_2bit
from .dequantize_ternary import dequantize_ternary
from .linear_2bit import linear_2bit
from .linear_ternary import linear_ternary
from .linear_ternary_a8 import linear_ternary_a8, matmul_ternary_int8
from .rht import rht, rht_

__all__ = [
    "rht",
    "rht_",
    "linear_2bit",
    "linear_ternary",
    "linear_ternary_a8",
    "matmul_ternary_int8",
    "dequantize_2bit",
    "dequantize_ternary",
    "use_backend",
    "available",
    "chosen",
]
