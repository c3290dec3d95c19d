"""torch.ops.quipkern.linear_2bit: the fused 2-bit layer

    y = S_out · T_outᵀ · (Ŵ · (T_in · S_in · x)) + bias

x: (..., K) float16 / bfloat16 / float32 / float64, last dim contiguous.
packed, scales, zeros: the 2-bit weight of docs/FORMATS.md ("2-bit weights"), Ŵ: (N, K).
bias: None or (N,) in x's dtype or float32.
q_in, signs_in (width K) and q_out, signs_out (width N): the transforms, used only when
transform_in / transform_out is set (see ops/rht.py for their form).
in_features, out_features: the layer's sizes when the weight is padded (docs/FORMATS.md,
"Widths without a cheap transform"; -1: K and N): x is (..., in_features) and is
zero-padded to K, the result is cut to out_features, bias is (out_features,).
Returns (..., out_features) in x's dtype.  Differentiable in x and bias; the weight is frozen.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from .. import _ext
from .. import triton as _triton
from ..formats.two_bit import check_2bit_weight
from ..reference import linear_2bit as _reference
from . import backend
from .dequantize_2bit import CUDA_HADAMARD_K, dequantize_2bit
from .transformed_linear import check_layer_args, check_x, composed_forward, dense_matmul, register_linear_autograd

__all__ = ["linear_2bit"]


def _check(x, packed, scales, zeros, bias, q_in, signs_in, q_out, signs_out,
           transform_in, transform_out, in_features, out_features, check_data):
    op = "linear_2bit"
    check_x(op, x)
    N, K, _ = check_2bit_weight(op, packed, scales, zeros, x.device, check_data)
    return check_layer_args(op, x, N, K, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
                            in_features, out_features)


@torch.library.custom_op("quipkern::linear_2bit", mutates_args=())
def linear_2bit(
    x: torch.Tensor,
    packed: torch.Tensor,
    scales: torch.Tensor,
    zeros: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    q_in: Optional[torch.Tensor] = None,
    signs_in: Optional[torch.Tensor] = None,
    q_out: Optional[torch.Tensor] = None,
    signs_out: Optional[torch.Tensor] = None,
    transform_in: bool = False,
    transform_out: bool = False,
    in_features: int = -1,
    out_features: int = -1,
) -> torch.Tensor:
    args = (x, packed, scales, zeros, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out)
    N = _check(*args, in_features, out_features, True)
    if x.numel() == 0:
        return x.new_empty((*x.shape[:-1], N))
    return backend.dispatch("linear_2bit", x.device.type, *args, in_features, N)


@linear_2bit.register_fake
def _(x, packed, scales, zeros=None, bias=None, q_in=None, signs_in=None, q_out=None,
      signs_out=None, transform_in=False, transform_out=False, in_features=-1, out_features=-1):
    N = _check(x, packed, scales, zeros, bias, q_in, signs_in, q_out, signs_out,
               transform_in, transform_out, in_features, out_features, False)
    return x.new_empty((*x.shape[:-1], N))


register_linear_autograd(
    linear_2bit,
    lambda x, packed, scales, zeros: dequantize_2bit(packed, scales, zeros, x.dtype),
    n_weight_args=3,
)

# Dispatch by the number of rows M of x (flattened): the CUDA decode kernel takes
# M <= 16; Triton's fused GEMM takes any M; from DEQUANT_GEMM_MIN_M rows on, the Triton
# backend dequantizes Ŵ once and multiplies with cuBLAS instead.  The default, 17, is
# measured: on the H100 the fused Triton GEMM ran at 0.06-0.17x bf16 for M = 64 and
# 512 and 0.5-0.75x at 4096 (benchmarks/BENCHMARKS.md), while dequantize + cuBLAS costs
# one write and read of a bf16 weight more than bf16 itself.  QUIPKERN_DEQUANT_MIN_M
# overrides the threshold (e.g. to measure the fused GEMM).
CUDA_GEMV_MAX_M = 16
DEQUANT_GEMM_MIN_M = int(os.environ.get("QUIPKERN_DEQUANT_MIN_M", "17"))
# Where the CUDA GEMV stages x in shared memory (M <= 8, M·K·2 <= 32 KB) it multiplies on
# integer tensor cores with x in 15-bit fixed point per row (Linear2bitParams::fixed_x in
# csrc/include/quipkern/linear_2bit.h: exact for elements within 2^6 of the row's largest,
# else rounded at 2^-15 of it), at batch 1 only: at M = 2 it was as fast as the fp16/bf16
# kernel, at M = 4 up to 22 % slower (H100, session 9: every block converts all M rows of
# x, and two rows of planes cost a block slot per SM at K = 8192).
# QUIPKERN_GEMV_FIXED_X=0 keeps x as it is (fp16/bf16 mma) at M = 1 too.
GEMV_FIXED_X = os.environ.get("QUIPKERN_GEMV_FIXED_X", "1") != "0"
GEMV_FIXED_X_MAX_M = 1
# Prefill with a transform's Q factor folded into the weight.  T = Q ⊗ H splits as
# (Q ⊗ I)(I ⊗ H) with commuting factors, so
#     y = S_out·(I ⊗ H)·[(Q_outᵀ ⊗ I)·Ŵ·(Q_in ⊗ I)]·(I ⊗ H)·S_in·x.
# The dequantize that this path pays anyway writes the bracket (dequantize_2bit's q_out /
# q_in: one tensor-core product a tile) and the activation transform on that side runs
# without its Q stage (the rht backends' Q = I_m form), which is most of its time at
# large M (H100, M = 4096, width 28672: 390 µs with Q, 180 without; BENCHMARKS.md,
# sessions 15-16).  One side is folded (the dequantize kernel takes one factor): the wider
# of those with m > 1.  From FOLD_MIN_M rows (QUIPKERN_FOLD_MIN_M): the Q stage costs
# ~0.05 µs a row at width 28672 (0.024 at 14336) and the CUDA folding dequantize adds
# 40-120 µs to the plain one's 200 (40 to 54 at 14336 x 4096), so the fold breaks even
# near 2300 (1700) rows; measured, it lost at M = 512, was mixed at 2048 and won at 4096.
# Only factors the CUDA kernel folds (m <= FOLD_MAX_M; Triton's fold costs about twice
# the plain dequantize).
#
# Every fold also costs cuBLAS time: the GEMM at these sizes is held by the GPU's power
# limit, and its speed depends on the bits it multiplies.  F.linear at 8192², M = 4096
# (H100, session 17, alternating rounds): random bf16 weights 805 µs, the plain dequantized
# weight (four levels a group) 774, the same weight with T_in folded (full mantissas) 810,
# zeros 656.  So a fold gives back the ~4 % that the plain 2-bit weight saves in the GEMM,
# and only measurements of the whole layer decide (benchmarks/probe/fold_ab.py, which
# times the rules in alternation): folding the input side of 8192 x 28672 (Q_in, m = 28)
# won in two such runs, 3323 -> 3242 and 3338 -> 3271 µs, after a session-16 series timed
# in sequence had it losing.
FOLD_MIN_M = int(os.environ.get("QUIPKERN_FOLD_MIN_M", "3072"))
# Where no Q is folded and T_in is a pure Hadamard transform (K = 2^k, m = 1), the whole of
# T_in·S_in can go into the weight instead ("hadamard_in": dequantize_2bit's hadamard_in,
# the CUDA kernel of csrc/rht.cu that dequantizes rows in registers and transforms them on
# the way out): y = S_out·T_outᵀ·[Ŵ·T_in·S_in]·x, and x is not transformed at all.  It
# trades the transform of x's M rows for that of the weight's N rows, at about a third of
# the cost a row because it rides on the dequantize's write, which this path pays anyway
# (H100, M = 4096: the folding dequantize 100 µs against the plain 61 at 8192², 30 against
# 19 at 4096², while T_in took 66 and 37), plus the GEMM's ~4 % above.  Whole layer,
# alternating rounds (session 17): 4096² M = 2048 152 -> 144 µs, M = 4096 281 -> 263;
# 8192² M = 8192 1919 -> 1825; 8192² M = 4096 mixed (956 -> 995 in alternation on one
# machine, 1012 -> 965 and 1033 -> 962 in sequence on others).  So it folds where
# rows · FOLD_HADAMARD_N_PER_ROW >= N (QUIPKERN_FOLD_HADAMARD_N_PER_ROW), and only where
# the CUDA kernel folds it (Triton's two passes would cost more than they save).
FOLD_HADAMARD_N_PER_ROW = int(os.environ.get("QUIPKERN_FOLD_HADAMARD_N_PER_ROW", "2"))
FOLD_SIDES = ("out", "in", "hadamard_in")
FOLD_MAX_M = 32


def _rows(x):
    return x.numel() // x.shape[-1]


def composed(matmul, after_t_in=False):
    """A backend implementation of linear_2bit from `matmul(x2, packed, scales, zeros, bias, out)`
    (out (M, N) = x2 (M, K) @ Ŵᵀ + bias), through composed_forward (transforms, padding, cut).
    With after_t_in, matmul also gets `after_t_in=transform_in`: whether the kernel right
    before it on the stream is the layer's T_in."""

    def impl(x, packed, scales, zeros, bias, q_in, signs_in, q_out, signs_out, transform_in, transform_out,
             in_features=-1, out_features=-1, out=None):
        N, K = packed.shape[0], packed.shape[1] * 16
        extra = {"after_t_in": bool(transform_in)} if after_t_in else {}
        return composed_forward(
            x, N, K, N if out_features == -1 else out_features, bias, q_in, signs_in, q_out, signs_out,
            transform_in, transform_out, lambda x2, b, o: matmul(x2, packed, scales, zeros, b, o, **extra),
            fuse_bias=bias is not None and bias.dtype == x.dtype, out=out)

    return impl


backend.register("linear_2bit", "reference", backend.with_out(_reference))

def fold_side(rows, N, K, q_in, q_out, transform_in, transform_out, cuda_fold=True):
    """What the prefill path folds into the weight: "out" or "in" (that transform's Q),
    "hadamard_in" (all of T_in·S_in), or None.  A Q fold comes first (the dequantize folds
    one thing a call, and the Q stage is the dearer transform).  cuda_fold: the CUDA
    dequantize kernel is there to take the call (hadamard_in goes only there)."""
    if rows < DEQUANT_GEMM_MIN_M:
        return None
    sides = []
    if rows >= FOLD_MIN_M:
        if "out" in FOLD_SIDES and transform_out and q_out is not None and 1 < q_out.shape[0] <= FOLD_MAX_M:
            sides.append((N, 1, "out"))
        if ("in" in FOLD_SIDES and transform_in and q_in is not None and 1 < q_in.shape[0] <= FOLD_MAX_M
                and (K // q_in.shape[0]) % 16 == 0):
            sides.append((K, 0, "in"))
    if sides:
        return max(sides)[2]
    if ("hadamard_in" in FOLD_SIDES and cuda_fold and rows * FOLD_HADAMARD_N_PER_ROW >= N and transform_in
            and q_in is None and CUDA_HADAMARD_K[0] <= K <= CUDA_HADAMARD_K[1]):
        return "hadamard_in"
    return None


if _triton.AVAILABLE:
    from ..triton import linear_2bit as _tl

    def _triton_linear(x, packed, scales, zeros, bias, q_in, signs_in, q_out, signs_out, transform_in,
                       transform_out, in_features=-1, out_features=-1, out=None):
        N, K = packed.shape[0], packed.shape[1] * 16
        cuda_fold = x.is_cuda and "cuda" in backend.available("dequantize_2bit")
        fold = fold_side(_rows(x), N, K, q_in, q_out, transform_in, transform_out, cuda_fold)
        fq_out, fq_in = (q_out if fold == "out" else None), (q_in if fold == "in" else None)
        fh = fold == "hadamard_in"

        def matmul(x2, b, o):
            if fold is not None or (x2.shape[0] >= DEQUANT_GEMM_MIN_M and x2.is_cuda):
                # dequantize_2bit's dispatch: the CUDA kernel where it is built, else Triton's;
                # either folds fq_out / fq_in / T_in
                w = backend.dispatch("dequantize_2bit", x2.device.type, packed, scales, zeros, x2.dtype,
                                     fq_out, fq_in, fh, signs_in if fh else None)
                return dense_matmul(x2, w, b, o)
            return _tl.matmul_2bit(x2, packed, scales, zeros, b, o)

        # a folded side's transform gets its order m instead of Q: Q = I_m (ops/rht.py);
        # T_in folded whole: x is not transformed
        return composed_forward(
            x, N, K, N if out_features == -1 else out_features, bias,
            q_in.shape[0] if fold == "in" else q_in, signs_in, q_out.shape[0] if fold == "out" else q_out,
            signs_out, transform_in and not fh, transform_out, matmul,
            fuse_bias=bias is not None and bias.dtype == x.dtype, out=out)

    def _triton_supports(x, packed, scales, zeros, bias, *rest):
        return _tl.supports_matmul(x, packed, scales, zeros, bias)

    backend.register("linear_2bit", "triton", _triton_linear, _triton_supports)

if _ext.AVAILABLE:

    def _cuda_gemv(x2, packed, scales, zeros, bias, out, after_t_in=False):
        # Right after the layer's T_in (quipkern's rht, which lets its dependents start
        # early) the GEMV is launched with PDL, so its first weight loads overlap the
        # transform; after any other kernel it measured slower (csrc/linear_2bit.h).
        if x2.stride(0) % 8 or x2.data_ptr() % 16:
            x2 = x2.clone() if x2.is_contiguous() else x2.contiguous()
        # the kernel copies group scales (and zeros) as 16-byte pieces
        if scales.shape[1] > 1 and scales.data_ptr() % 16:
            scales = scales.clone()
        if zeros is not None and zeros.shape[1] > 1 and zeros.data_ptr() % 16:
            zeros = zeros.clone()
        if out is None or out.stride(-1) != 1:
            out = torch.empty(x2.shape[0], packed.shape[0], dtype=x2.dtype, device=x2.device)
        fixed_x = GEMV_FIXED_X and x2.shape[0] <= GEMV_FIXED_X_MAX_M
        torch.ops.quipkern._linear_2bit_gemv_cuda(x2, packed, scales, zeros, bias, out, after_t_in, fixed_x)
        return out

    def _cuda_supports(x, packed, scales, zeros, bias, *rest):
        if x.dtype not in (torch.float16, torch.bfloat16):
            return f"the CUDA decode kernel takes float16 or bfloat16 activations, got {x.dtype}"
        if _rows(x) > CUDA_GEMV_MAX_M:
            return f"the CUDA decode kernel takes at most {CUDA_GEMV_MAX_M} rows, got {_rows(x)}"
        return None

    backend.register("linear_2bit", "cuda", composed(_cuda_gemv, after_t_in=True), _cuda_supports)
