"""Quantization algorithms (offline, above the ops): RTN and LDLQ onto the 2-bit grid,
BitNet's absmean ternary, and proxy-Hessian collection."""

from .absmean import absmean_ternary
from .hessian import collect_hessians, run_calibration
from .ldlq import damped_hessian, ldlq_2bit
from .rtn import rtn_2bit

__all__ = ["rtn_2bit", "ldlq_2bit", "damped_hessian", "absmean_ternary", "collect_hessians", "run_calibration"]
