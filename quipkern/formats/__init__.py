"""Packed layouts, one file per layout; each is specified in docs/FORMATS.md."""

from .signs import pack_signs, random_signs, signs_nbytes, unpack_signs
from .ternary import (
    base3_row_bytes,
    dequantize_ternary,
    pack_ternary_2bit,
    pack_ternary_base3,
    unpack_ternary,
)
from .two_bit import dequantize_2bit, pack_2bit, unpack_2bit

__all__ = [
    "pack_signs",
    "unpack_signs",
    "random_signs",
    "signs_nbytes",
    "pack_2bit",
    "unpack_2bit",
    "dequantize_2bit",
    "pack_ternary_2bit",
    "pack_ternary_base3",
    "unpack_ternary",
    "dequantize_ternary",
    "base3_row_bytes",
]
