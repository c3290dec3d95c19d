"""Probe: which int8 GEMM can carry W1.58A8 prefill on this GPU (NOTES session 9).

Times, at one shape (default 8192 x 8192, M = 4096), each checked exact against cuBLAS:
  cublas     torch._int_mm(q, W8ᵀ) on trits expanded to an (N, K) int8 copy beforehand
  expand     the expansion alone (quipkern.triton.linear_ternary_a8.expand_trits_int8)
  triton8    a plain Triton int8 GEMM on the same expanded copy (both operands loaded)
  fusedA-*   trits expanded from the packed words in registers and fed as the *left*
             operand (acc (BN, BM) = W·qᵀ), so Hopper's wgmma can read them from
             registers; q's tile is the right operand from shared memory, K-major.
             -b: from bytes (packed viewed as uint8, 4 codes a byte); -w: from int32 words.
  gemm_int8  the layer's GEMM (quipkern.triton.linear_ternary_a8.gemm_int8, scale epilogue)
             by tile configuration (on Hopper its TMA kernel; session 9's run 7 also timed
             TMA descriptors made on the device: 432 µs at 128×256×128, 4 stages, the same
             as the host-made ones gemm_int8 uses)
    python benchmarks/probe/a8_gemm.py [--n 8192 --k 8192 --m 4096] [--all]
"""

from __future__ import annotations

import argparse

import torch
import triton
import triton.language as tl


@triton.jit
def _grouped(pid, n_a, n_b, GROUP: tl.constexpr):
    per_group = GROUP * n_b
    first = (pid // per_group) * GROUP
    rows = tl.minimum(n_a - first, GROUP)
    return first + (pid % per_group) % rows, (pid % per_group) // rows


@triton.jit
def _plain_kernel(q_ptr, w_ptr, out_ptr, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                  GROUP: tl.constexpr):
    pid_m, pid_n = _grouped(tl.program_id(0), tl.cdiv(M, BM), tl.cdiv(N, BN), GROUP)
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    offs_k = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.int32)
    for k0 in range(0, K, BK):
        a = tl.load(q_ptr + offs_m[:, None].to(tl.int64) * K + k0 + offs_k[None, :])
        b = tl.load(w_ptr + offs_n[None, :].to(tl.int64) * K + k0 + offs_k[:, None])
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
    tl.store(out_ptr + offs_m[:, None].to(tl.int64) * N + offs_n[None, :], acc)


@triton.jit
def _fused_kernel(q_ptr, p_ptr, out_ptr, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                  GROUP: tl.constexpr, BYTES: tl.constexpr):
    # programs walk GROUP weight tiles per q tile; the weight tile is the left operand
    pid_n, pid_m = _grouped(tl.program_id(0), tl.cdiv(N, BN), tl.cdiv(M, BM), GROUP)
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    offs_k = tl.arange(0, BK)
    acc = tl.zeros((BN, BM), dtype=tl.int32)
    for k0 in range(0, K, BK):
        if BYTES:  # p_ptr: uint8 (N, K / 4), byte b holds codes 4b .. 4b + 3 at bits 0, 2, 4, 6
            byt = tl.load(p_ptr + offs_n[:, None].to(tl.int64) * (K // 4) + k0 // 4 + tl.arange(0, BK // 4)[None, :])
            sh = (2 * tl.arange(0, 4)).to(tl.uint8)
            c = (byt[:, :, None] >> sh[None, None, :]) & 3
        else:  # p_ptr: int32 (N, K / 16)
            wd = tl.load(p_ptr + offs_n[:, None].to(tl.int64) * (K // 16) + k0 // 16 + tl.arange(0, BK // 16)[None, :])
            c = (wd[:, :, None] >> (2 * tl.arange(0, 16))[None, None, :]) & 3
        w = (tl.reshape(c, (BN, BK)).to(tl.int8) - 1).to(tl.int8)
        x = tl.load(q_ptr + offs_m[:, None].to(tl.int64) * K + k0 + offs_k[None, :])  # (BM, BK)
        acc = tl.dot(w, tl.trans(x), acc, out_dtype=tl.int32)
    tl.store(out_ptr + offs_m[None, :].to(tl.int64) * N + offs_n[:, None], acc)


def _launch(kernel, grid, out, *args, **kw):
    def fn():
        kernel[grid](*args, **kw)
        return out
    return fn


def _interpret_check():
    """TRITON_INTERPRET=1: the index arithmetic of both kernels at a small shape (the
    interpreter's dot sums in int8, so q is sparse to keep the sums in range)."""
    from quipkern.triton.linear_ternary_a8 import expand_trits_int8

    M, N, K = 32, 32, 128
    g = torch.Generator().manual_seed(0)
    packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, generator=g)
    q = torch.randint(-3, 4, (M, K), dtype=torch.int8, generator=g) * (torch.rand(M, K, generator=g) < 0.03)
    w8 = expand_trits_int8(packed)
    ref = (q.double() @ w8.double().t()).to(torch.int32)
    out = torch.full((M, N), -7, dtype=torch.int32)
    _launch(_plain_kernel, (4,), out, q, w8, out, M, N, K, BM=16, BN=16, BK=32, GROUP=2)()
    print("triton8", "exact" if torch.equal(out, ref) else "WRONG")
    for BYTES, src in ((True, packed.view(torch.uint8)), (False, packed)):
        out.fill_(-7)
        _launch(_fused_kernel, (4,), out, q, src, out, M, N, K, BM=16, BN=16, BK=32, GROUP=2, BYTES=BYTES)()
        print("fusedA", "bytes" if BYTES else "words", "exact" if torch.equal(out, ref) else "WRONG")


def main():
    from quipkern.triton.linear_ternary_a8 import expand_trits_int8

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--k", type=int, default=8192)
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--all", action="store_true", help="also the in-register expansion variants (slow)")
    a = ap.parse_args()
    N, K, M = a.n, a.k, a.m
    g = torch.Generator(device="cuda").manual_seed(0)
    packed = torch.randint(-2**31, 2**31 - 1, (N, K // 16), dtype=torch.int32, device="cuda", generator=g)
    q = torch.randint(-127, 128, (M, K), dtype=torch.int8, device="cuda", generator=g)
    w8 = expand_trits_int8(packed)
    ref = torch._int_mm(q, w8.t())
    flops = 2 * M * N * K
    print(f"M={M} N={N} K={K}  {torch.cuda.get_device_name()}  triton {triton.__version__}")

    def report(name, fn, out=None):
        try:
            if out is not None:
                out.fill_(-7)  # poison: an unwritten element fails the check
            o = fn()
            torch.cuda.synchronize()
            ok = "exact" if out is None or torch.equal(o, ref) else "WRONG"
            t = triton.testing.do_bench(fn, warmup=50, rep=300)
            print(f"{name:28s} {t * 1e3:9.1f} us  {flops / t / 1e9:7.0f} TOPS  {ok}", flush=True)
        except Exception as e:  # a config that does not compile is a result too
            print(f"{name:28s} failed: {type(e).__name__}: {str(e).splitlines()[0][:150]}", flush=True)

    report("cublas _int_mm", lambda: torch._int_mm(q, w8.t()))
    report("expand", lambda: expand_trits_int8(packed, w8))
    out = torch.empty(M, N, dtype=torch.int32, device="cuda")
    for BM, BN, BK, warps, stages in [(128, 256, 128, 8, 3), (128, 128, 128, 8, 4), (256, 128, 128, 8, 3)]:
        grid = (triton.cdiv(M, BM) * triton.cdiv(N, BN),)
        report(f"triton8 {BM}x{BN}x{BK} w{warps}s{stages}",
               _launch(_plain_kernel, grid, out, q, w8, out, M, N, K, BM=BM, BN=BN, BK=BK, GROUP=8,
                       num_warps=warps, num_stages=stages), out)
    # the layer's GEMM (quipkern.triton.linear_ternary_a8.gemm_int8, scale epilogue, bf16 out) by tile config
    from quipkern.triton.linear_ternary_a8 import gemm_int8, quantize_rows

    sr = torch.rand(M, 1, device="cuda") * 0.01
    sc = torch.rand(N, device="cuda") * 0.05
    yb = torch.empty(M, N, dtype=torch.bfloat16, device="cuda")
    xb = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    report("quantize_rows (bf16 x)", lambda: quantize_rows(xb))
    # (on Hopper gemm_int8 takes its TMA kernel: STAGES is its pipeline depth)
    for BM, BN, BK, warps, stages, group in [(128, 256, 128, 8, 4, 8), (128, 256, 128, 8, 3, 8), (128, 256, 128, 8, 5, 8),
                                             (256, 128, 128, 8, 4, 8), (128, 256, 128, 8, 4, 16), (128, 128, 128, 4, 4, 8)]:
        cfg = dict(BLOCK_M=BM, BLOCK_N=BN, BLOCK_K=BK, GROUP_M=group, num_warps=warps, STAGES=stages)
        report(f"gemm_int8+epi {BM}x{BN}x{BK} w{warps}s{stages}g{group}",
               lambda: gemm_int8(q, w8, yb, sr, sc, config=cfg))

    if not a.all:
        return
    for BYTES, src in ((True, packed.view(torch.uint8)), (False, packed)):
        for BN, BM, BK, warps, stages in [(128, 256, 128, 8, 3), (128, 128, 128, 8, 3), (128, 256, 64, 8, 4),
                                          (256, 128, 64, 8, 3), (64, 256, 128, 4, 3)]:
            grid = (triton.cdiv(M, BM) * triton.cdiv(N, BN),)
            report(f"fusedA-{'b' if BYTES else 'w'} {BN}x{BM}x{BK} w{warps}s{stages}",
                   _launch(_fused_kernel, grid, out, q, src, out, M, N, K, BM=BM, BN=BN, BK=BK, GROUP=8,
                           BYTES=BYTES, num_warps=warps, num_stages=stages), out)


if __name__ == "__main__":
    import os

    _interpret_check() if os.environ.get("TRITON_INTERPRET") == "1" else main()
