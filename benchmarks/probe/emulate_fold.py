"""Lane-by-lane emulation of csrc/dequantize_2bit.cu's folding kernel (pending/fold_q_prefill.patch)
on the CPU: its tile staging, its code -> bf16 byte-permutes, its mma fragments (m16n8k8 and
m16n8k16, PTX ISA layouts), its epilogue and stores, against reference/rht.py's fold_q.  It
checks the kernel's index logic without a GPU; a deliberately wrong fragment layout (--break)
must fail.

    python benchmarks/probe/emulate_fold.py
"""

from __future__ import annotations

import argparse
import struct

import torch

from quipkern.formats.two_bit import dequantize_2bit, pack_2bit
from quipkern.reference.rht import fold_q

WARPS = 4
CODES = (0x3F800000, 0x40404000)    # bf16 0, 1, 2, 3 as bytes of (lo, hi)
CENTRED = (0xBF00BFC0, 0x3FC03F00)  # bf16 -1.5, -0.5, 0.5, 1.5


def bf16_bits(v: float) -> int:
    return int(torch.tensor(v, dtype=torch.float32).to(torch.bfloat16).view(torch.int16).item()) & 0xFFFF


def bits_value(b: int) -> float:
    return struct.unpack("<f", struct.pack("<I", (b & 0xFFFF) << 16))[0]


def halves(r: int) -> tuple[float, float]:
    return bits_value(r), bits_value(r >> 16)


def split(a: float, b: float) -> tuple[int, int]:
    ha, hb = bf16_bits(a), bf16_bits(b)
    la, lb = bf16_bits(a - bits_value(ha)), bf16_bits(b - bits_value(hb))
    return ha | hb << 16, la | lb << 16


def byte_perm(x: int, y: int, s: int) -> int:
    src = (x & 0xFFFFFFFF) | (y & 0xFFFFFFFF) << 32
    return sum(((src >> (8 * ((s >> (4 * i)) & 7))) & 0xFF) << (8 * i) for i in range(4))


def code_pairs(w0, w1, sh, lo, hi):
    x = ((w0 >> sh) & 0xF) | (((w1 >> sh) & 0xF) << 8)
    return byte_perm(lo, hi, (x & 0x303) * 0x22 + 0x1010), byte_perm(lo, hi, ((x >> 2) & 0x303) * 0x22 + 0x1010)


def mma(a_regs, b_regs, k, swap=False):
    """D (16 x 8) from 32 lanes' A and B registers (bf16 pairs), m16n8k8 or m16n8k16."""
    A = torch.zeros(16, k, dtype=torch.float64)
    B = torch.zeros(k, 8, dtype=torch.float64)
    for lane in range(32):
        g, t2 = lane >> 2, 2 * (lane & 3)
        for r, reg in enumerate(a_regs[lane]):
            hi_row = 1 - (r & 1) if swap else r & 1  # --break: the two places of a lane swapped
            hi_col = r >> 1
            row, col = g + 8 * hi_row, t2 + 8 * hi_col
            A[row, col], A[row, col + 1] = halves(reg)
        for h, reg in enumerate(b_regs[lane]):
            B[t2 + 8 * h, g], B[t2 + 8 * h + 1, g] = halves(reg)
    return A @ B


def emulate(packed, scales, zeros, q, fold_in, swap=False):
    N, K = packed.shape[0], packed.shape[1] * 16
    G, gs, m = scales.shape[1], K // scales.shape[1], q.shape[0]
    kk = 8 if m <= 8 else 16 if m <= 16 else 32
    nts = pairs = kk // 8
    places = 512 if kk == 32 else 1024  # a tile (fold_places)
    epochs, warp_places = places // 64, places // WARPS
    lo, hi = CODES if zeros is not None else CENTRED
    P = K // m if fold_in else N // m
    span, lines = (P, N) if fold_in else (K, P)
    out = torch.full((N, K), float("nan"), dtype=torch.float64)
    words_all = packed.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    qs = torch.zeros(kk, kk, dtype=torch.float32)
    qs[:m, :m] = q.float()
    for line in range(lines):
        row_of = (lambda a: line) if fold_in else (lambda a: a * P + line)
        col_of = (lambda a, j: a * P + j) if fold_in else (lambda a, j: j)
        for j0 in range(0, span, places):
            words = [[0] * (places // 16) for _ in range(kk)]
            ss = torch.zeros(kk, epochs, dtype=torch.float32)
            szs = torch.zeros(kk, epochs, dtype=torch.float32)
            for a in range(m):
                for w in range(places // 16):
                    if j0 + 16 * w < span:
                        words[a][w] = int(words_all[row_of(a), col_of(a, j0) // 16 + w])
                for e in range(epochs):
                    if j0 + 64 * e < span:
                        gidx = col_of(a, j0 + 64 * e) // gs
                        s = scales[row_of(a), gidx].float()
                        z = zeros[row_of(a), gidx].float() if zeros is not None else 0.0
                        ss[a, e], szs[a, e] = s, s * z
            for warp, run in ((w, r) for w in range(WARPS) for r in range(warp_places // 128)):
                jw = j0 + warp_places * warp + 128 * run
                if jw >= span:
                    continue
                ot = torch.zeros(kk, 128, dtype=torch.float64)
                for eh in range(2):
                    e = (jw - j0) // 64 + eh
                    if j0 + 64 * e >= span:
                        break
                    bhi, blo, bias = {}, {}, {}
                    for lane in range(32):
                        g, t2 = lane >> 2, 2 * (lane & 3)
                        for nt in range(nts):
                            a = 8 * nt + g
                            for i in range(pairs):
                                a2 = t2 + 8 * i
                                bhi[lane, nt, i], blo[lane, nt, i] = split(float(qs[a2, a] * ss[a2, e]),
                                                                           float(qs[a2 + 1, a] * ss[a2 + 1, e]))
                            for h in range(2):
                                ac = 8 * nt + t2 + h
                                bias[lane, nt, h] = float((qs[:, ac] * szs[:, e]).sum()) if zeros is not None else 0.0
                    for ws in range(4):
                        wl = 4 * e + ws
                        a0, a1 = {}, {}
                        for lane in range(32):
                            g, t2 = lane >> 2, 2 * (lane & 3)
                            for i in range(pairs):
                                a0[lane, i], a1[lane, i] = code_pairs(words[t2 + 8 * i][wl], words[t2 + 8 * i + 1][wl],
                                                                      4 * g, lo, hi)
                        for nt in range(nts):
                            d = torch.zeros(16, 8, dtype=torch.float64)
                            for s in range(max(1, kk // 16)):
                                if kk == 8:
                                    ar = [[a0[ln, 0], a1[ln, 0]] for ln in range(32)]
                                    bh = [[bhi[ln, nt, 0]] for ln in range(32)]
                                    bl = [[blo[ln, nt, 0]] for ln in range(32)]
                                else:
                                    ar = [[a0[ln, 2 * s], a1[ln, 2 * s], a0[ln, 2 * s + 1], a1[ln, 2 * s + 1]]
                                          for ln in range(32)]
                                    bh = [[bhi[ln, nt, 2 * s], bhi[ln, nt, 2 * s + 1]] for ln in range(32)]
                                    bl = [[blo[ln, nt, 2 * s], blo[ln, nt, 2 * s + 1]] for ln in range(32)]
                                k = 8 if kk == 8 else 16
                                d += mma(ar, bh, k, swap) + mma(ar, bl, k, swap)
                            for lane in range(32):
                                g, t2 = lane >> 2, 2 * (lane & 3)
                                col = 64 * eh + 16 * ws + 2 * g
                                for h in range(2):  # d[g, t2 + h] (place 2g), d[g + 8, t2 + h] (place 2g + 1)
                                    ot[8 * nt + t2 + h, col] = d[g, t2 + h] - bias[lane, nt, h]
                                    ot[8 * nt + t2 + h, col + 1] = d[g + 8, t2 + h] - bias[lane, nt, h]
                run = min(128, span - jw)
                for a in range(m):
                    c0 = col_of(a, jw)
                    out[row_of(a), c0:c0 + run] = ot[a, :run]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--break", dest="swap", action="store_true", help="swap A's register order (must fail)")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    ok = True
    for N, K, g, m, fold_in, asym in ((14, 1024, 128, 7, False, False), (6, 640, 64, 3, False, True),
                                      (40, 640, 64, 20, False, True), (2, 384, 128, 12, True, True),
                                      (1, 2048, 2048, 4, True, False), (12, 128, 64, 12, False, False),
                                      (1, 7 * 192, 64, 7, True, True), (3, 12 * 32, 64, 12, True, False),
                                      (7, 2432, 64, 7, False, True)):
        codes = torch.randint(0, 4, (N, K))
        scales = (torch.rand(N, K // g) * 0.05 + 0.01).half()
        zeros = (torch.rand(N, K // g) * 3).half() if asym else None
        packed = pack_2bit(codes)
        q = torch.linalg.qr(torch.randn(m, m, dtype=torch.float64))[0].float()
        ref = fold_q(dequantize_2bit(packed, scales, zeros, torch.float64), None if fold_in else q.double(),
                     q.double() if fold_in else None)
        got = emulate(packed, scales, zeros, q, fold_in, a.swap)
        err = ((got - ref).norm() / ref.norm()).item()
        good = not torch.isnan(got).any() and err < 1e-4
        ok &= good
        print(f"N={N} K={K} g={g} m={m} fold_in={fold_in} asym={asym}: rel err {err:.2e} {'ok' if good else 'FAIL'}")
    print("all ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
