"""The private CUDA ops (csrc/bindings.cpp) turn bad input into a Python RuntimeError
that names the problem — they never take the process down.  Each case runs in a fresh
interpreter so that a crash shows up as a failed test, not as a dead test worker."""

import subprocess
import sys
import textwrap

import pytest

from quipkern import _ext

from .utils import HAS_CUDA


def _gemv(M, scale_rows):
    """A call of the decode kernel with M rows of x and a (scale_rows, 2) scales tensor
    (N = 64, K = 128)."""
    return f"""
        x = torch.randn({M}, 128, device="cuda").half()
        torch.ops.quipkern._linear_2bit_gemv_cuda(
            x, torch.zeros(64, 8, dtype=torch.int32, device="cuda"),
            torch.ones({scale_rows}, 2, dtype=torch.float16, device="cuda"), None, None,
            torch.empty({M}, 64, device="cuda").half())
        """


CASES = {
    "gemv M=17": (_gemv(17, 64), "_linear_2bit_gemv_cuda: M=17 rows; the decode kernel takes 1..16"),
    "gemv scales shape": (_gemv(2, 63), "'scales' must be contiguous float16 (N, K/g)"),
    "gemv float32 group scales": (
        """
        torch.ops.quipkern._linear_2bit_gemv_cuda(
            torch.randn(1, 128, device="cuda").half(), torch.zeros(64, 8, dtype=torch.int32, device="cuda"),
            torch.ones(64, 2, device="cuda"), None, None, torch.empty(1, 64, device="cuda").half())
        """,
        "float32 'scales' must be one per row, (N, 1) with rows 0 or 1 apart; got (64, 2) with strides (2, 1)"),
    "dequantize out shape": (
        """
        torch.ops.quipkern._dequantize_2bit_cuda(
            torch.zeros(64, 8, dtype=torch.int32, device="cuda"), torch.ones(64, 2, dtype=torch.float16, device="cuda"),
            None, torch.empty(64, 64, device="cuda").half())
        """,
        "_dequantize_2bit_cuda: 'out' must be (N, K) = (64, 128)"),
    "ternary base-3 odd K": (
        """
        x = torch.randn(2, 81, device="cuda").half()
        torch.ops.quipkern._linear_ternary_base3_gemv_cuda(
            x, torch.zeros(16, 32, dtype=torch.uint8, device="cuda"), torch.ones(16, device="cuda"), None,
            torch.empty(2, 16, device="cuda").half(), 81)
        """,
        "_linear_ternary_base3_gemv_cuda: K=81 must be even"),
    "ternary base-3 packed shape": (
        """
        x = torch.randn(2, 160, device="cuda").half()
        torch.ops.quipkern._linear_ternary_base3_gemv_cuda(
            x, torch.zeros(16, 16, dtype=torch.uint8, device="cuda"), torch.ones(16, device="cuda"), None,
            torch.empty(2, 16, device="cuda").half(), 160)
        """,
        "'packed' must be a contiguous uint8 (N, 16·ceil(K/80)) = (N, 32) tensor; got (16, 16)"),
    "ternary a8 M·K": (
        """
        torch.ops.quipkern._ternary_a8_gemv_cuda(
            torch.randn(2, 16384, device="cuda").half(), torch.zeros(64, 1024, dtype=torch.int32, device="cuda"),
            torch.ones(64, device="cuda"), None, torch.empty(2, 64, device="cuda").half(), 127)
        """,
        "_ternary_a8_gemv_cuda: x of shape (2, 16384): the kernel takes M = 1..8 rows, K a multiple of 64 and M·K <= 16384"),
    "ternary a8 qmax": (
        """
        torch.ops.quipkern._ternary_a8_gemv_cuda(
            torch.randn(1, 128, device="cuda").half(), torch.zeros(64, 8, dtype=torch.int32, device="cuda"),
            torch.ones(64, device="cuda"), None, torch.empty(1, 64, device="cuda").half(), 100)
        """,
        "_ternary_a8_gemv_cuda: qmax must be 127 (int8 activations) or 7 (int4); got 100"),
    "ternary int8 M=17": (
        """
        torch.ops.quipkern._ternary_int8_gemv_cuda(
            torch.zeros(17, 128, dtype=torch.int8, device="cuda"), torch.zeros(64, 8, dtype=torch.int32, device="cuda"),
            torch.empty(17, 64, dtype=torch.int32, device="cuda"))
        """,
        "_ternary_int8_gemv_cuda: q of shape (17, 128): the decode kernel takes M = 1..16 rows"),
    "ternary int8 epilogue without scale": (
        """
        torch.ops.quipkern._ternary_int8_gemv_cuda(
            torch.zeros(2, 128, dtype=torch.int8, device="cuda"), torch.zeros(64, 8, dtype=torch.int32, device="cuda"),
            torch.empty(2, 64, dtype=torch.bfloat16, device="cuda"), torch.ones(2, device="cuda"))
        """,
        "_ternary_int8_gemv_cuda: 'scale' is needed with 'act_scale'"),
    "ternary int8 epilogue act_scale size": (
        """
        torch.ops.quipkern._ternary_int8_gemv_cuda(
            torch.zeros(2, 128, dtype=torch.int8, device="cuda"), torch.zeros(64, 8, dtype=torch.int32, device="cuda"),
            torch.empty(2, 64, dtype=torch.bfloat16, device="cuda"), torch.ones(3, device="cuda"), torch.ones(64, device="cuda"))
        """,
        "'act_scale' must be contiguous float32 with M = 2 elements"),
    "ternary int8 epilogue int32 out": (
        """
        torch.ops.quipkern._ternary_int8_gemv_cuda(
            torch.zeros(2, 128, dtype=torch.int8, device="cuda"), torch.zeros(64, 8, dtype=torch.int32, device="cuda"),
            torch.empty(2, 64, dtype=torch.int32, device="cuda"), torch.ones(2, device="cuda"), torch.ones(64, device="cuda"))
        """,
        "with 'act_scale', 'out' must be float16 or bfloat16 (M, N) = (2, 64)"),
    "ternary int8 scale without act_scale": (
        """
        torch.ops.quipkern._ternary_int8_gemv_cuda(
            torch.zeros(2, 128, dtype=torch.int8, device="cuda"), torch.zeros(64, 8, dtype=torch.int32, device="cuda"),
            torch.empty(2, 64, dtype=torch.int32, device="cuda"), None, torch.ones(64, device="cuda"))
        """,
        "'scale' and 'bias' go with 'act_scale'"),
    "ternary int8 K too long": (
        """
        K = (1 << 22) + 64
        torch.ops.quipkern._ternary_int8_gemv_cuda(
            torch.zeros(1, K, dtype=torch.int8, device="cuda"), torch.zeros(8, K // 16, dtype=torch.int32, device="cuda"),
            torch.empty(1, 8, dtype=torch.int32, device="cuda"))
        """,
        "K a multiple of 64 up to 4194304"),
    "rht width": (
        """
        x = torch.randn(3, 48, device="cuda")
        torch.ops.quipkern._rht_cuda(x, None, None, None, 1.0, False, 48, torch.empty_like(x))
        """,
        "_rht_cuda: n / m = 48 is not a power of two"),
    "rht out shape": (
        """
        x = torch.randn(3, 64, device="cuda")
        torch.ops.quipkern._rht_cuda(x, None, None, None, 1.0, False, 64, torch.empty(4, 64, device="cuda"))
        """,
        "'out' must be 2-D (rows, n_out) in x's dtype with x's rows"),
}


@pytest.mark.skipif(not (HAS_CUDA and _ext.AVAILABLE), reason="needs a GPU and the CUDA extension")
@pytest.mark.parametrize("case", sorted(CASES))
def test_private_cuda_ops_raise_instead_of_crashing(case):
    body, message = CASES[case]
    script = "import torch, quipkern, quipkern._ext as e\nassert e.AVAILABLE, e.LOAD_ERROR\ntry:\n" + \
        textwrap.indent(textwrap.dedent(body), "    ") + \
        "\nexcept RuntimeError as err:\n    print('RAISED', str(err).splitlines()[0])\nelse:\n    print('NO ERROR')\n"
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"the process died (exit {r.returncode}): {r.stderr[-2000:]}"
    assert "RAISED" in r.stdout and message in r.stdout, r.stdout + r.stderr[-2000:]
