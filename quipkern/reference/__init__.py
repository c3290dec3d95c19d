"""Pure-PyTorch references: the ground truth every kernel is tested against.  Any
device, any float dtype (float64 included); the pack / unpack / dequantize references
live beside their layouts in quipkern/formats/."""

from ..formats import dequantize_2bit, dequantize_ternary
from .linear_2bit import linear_2bit
from .linear_ternary import linear_ternary
from .rht import fwht, rht

__all__ = ["rht", "fwht", "linear_2bit", "linear_ternary", "dequantize_2bit", "dequantize_ternary"]
