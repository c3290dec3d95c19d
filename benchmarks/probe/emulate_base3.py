"""NumPy emulation of every lane of the base-3 decode GEMV
(csrc/linear_ternary_base3.cu): the ring copies, the byte table, the digit-into-mantissa
bit tricks, the m16n8k16 fragment layouts and the warps' reduction, in float64, against
quipkern's reference.  Checks the index scheme without a GPU (not the timing, not the
fp32 rounding of the tensor cores).  Run from the repository root:

    python benchmarks/probe/emulate_base3.py      (about a minute)
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
from tests.layer_cases import ternary_case

def h2f(bits, dt):
    bits = np.uint32(bits) & 0xffff
    if dt == 'f16':
        return float(np.array([bits], dtype=np.uint16).view(np.float16)[0])
    return float(np.array([bits << 16], dtype=np.uint32).view(np.float32)[0])

def f2h(v, dt):  # value -> 16-bit pattern (x is exactly representable: we quantize x first)
    if dt == 'f16':
        return int(np.array([v], dtype=np.float16).view(np.uint16)[0])
    return int(np.array([v], dtype=np.float32).view(np.uint32)[0] >> 16)

KBIT = {'f16': 8, 'bf16': 5}; MAGIC = {'f16': 0x44004400, 'bf16': 0x40804080}; ONE = {'f16': 0x3C003C00, 'bf16': 0x3F803F80}
table = []
for v in range(256):
    e, r = 0, v
    for i in range(5):
        e |= (r % 3) << (2 * i); r //= 3
    table.append(e)

def digit_pair(P, I, dt):
    s = 2 * I - KBIT[dt]
    v = (P >> s) if s >= 0 else ((P << -s) & 0xffffffff)
    return (v & (0x00030003 << KBIT[dt])) | MAGIC[dt]

def mma(C, a_regs, b_regs, dt):
    # C: [32][4], a_regs [32][4] words, b_regs [32][2] words -> m16n8k16
    A = np.zeros((16, 16)); B = np.zeros((16, 8))
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        for r, (row, col) in enumerate([(g, 2*t), (g+8, 2*t), (g, 2*t+8), (g+8, 2*t+8)]):
            w = a_regs[lane][r]
            A[row, col] = h2f(w & 0xffff, dt); A[row, col+1] = h2f(w >> 16, dt)
        for r, k in enumerate([2*t, 2*t+8]):
            w = b_regs[lane][r]
            B[k, g] = h2f(w & 0xffff, dt); B[k+1, g] = h2f(w >> 16, dt)
    D = A @ B
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        C[lane][0] += D[g, 2*t]; C[lane][1] += D[g, 2*t+1]; C[lane][2] += D[g+8, 2*t]; C[lane][3] += D[g+8, 2*t+1]

def run(N, K, M, dt, per_row, seed):
    torch.manual_seed(seed)
    (packed, scale), W = ternary_case(N, K, "base3", per_row)
    pk = packed.numpy(); sc = scale.numpy()
    x = torch.randn(M, K).to(torch.float16 if dt == 'f16' else torch.bfloat16)
    xh = [[f2h(float(v), dt) for v in row] for row in x.float().numpy()]
    blocks = (K + 79) // 80; NT = 1 if M <= 8 else 2
    y = np.full((M, N), np.nan)
    for blk in range((N + 15) // 16):
        row0 = blk * 16
        red = {}
        for warp in range(8):
            acc = [[[0.0]*4 for _ in range(32)] for _ in range(NT)]; sx = [[[0.0]*4 for _ in range(32)] for _ in range(NT)]
            ub_begin, ub_end = blocks * warp // 8, blocks * (warp + 1) // 8  # the warp's run of blocks
            nc = (ub_end - ub_begin + 3) // 4
            for i in range(nc):
                ub0 = ub_begin + 4 * i
                stage = np.zeros((16, 80), dtype=np.uint8)  # rows x kRowBytes
                for lane in range(32):
                    prow, piece = lane >> 2, lane & 3
                    ok = ub0 + piece < ub_end
                    for rr in (prow, prow + 8):
                        src_row = min(row0 + rr, N - 1)
                        if ok:
                            off = ub0 * 16 + 16 * piece
                            stage[rr, 16*piece:16*piece+16] = pk[src_row, off:off+16]
                        else:
                            stage[rr, 16*piece:16*piece+16] = 0
                for ub in range(4):
                    u = ub0 + ub
                    if u >= ub_end: break
                    a_all = {d: [] for d in range(5)}; b_all = {(nt, d): [] for nt in range(NT) for d in range(5)}
                    for lane in range(32):
                        g, t = lane >> 2, lane & 3
                        for nt in range(NT):
                            b = g + 8 * nt
                            for d in range(5):
                                # k 2t, 2t+1 | 2t+8, 2t+9 stand for columns 4t, 4t+1 | 4t+2, 4t+3
                                col = 80*u + 16*d + 4*t
                                def ld(cc):
                                    if b < M and cc < K: return xh[b][cc] | (xh[b][cc+1] << 16)
                                    return 0
                                b_all[(nt, d)].append([ld(col), ld(col + 2)])
                        w0 = int(stage[g, 16*ub:16*ub+16].view('<u4')[t]); w1 = int(stage[g+8, 16*ub:16*ub+16].view('<u4')[t])
                        def pair_lo(w): return table[w & 0xff] | (table[(w >> 8) & 0xff] << 16)
                        def pair_hi(w): return table[(w >> 16) & 0xff] | (table[w >> 24] << 16)
                        P = [pair_lo(w0), pair_lo(w1), pair_hi(w0), pair_hi(w1)]
                        for d in range(5):
                            a_all[d].append([digit_pair(Pj, d, dt) for Pj in P])
                    for d in range(5):
                        for nt in range(NT):
                            mma(acc[nt], a_all[d], b_all[(nt, d)], dt)
                            mma(sx[nt], [[ONE[dt]]*4]*32, b_all[(nt, d)], dt)
            red[warp] = [[[acc[nt][lane][e] - 5*sx[nt][lane][e] for e in range(4)] for lane in range(32)] for nt in range(NT)]
        for lane in range(32):
            g, t = lane >> 2, lane & 3
            for nt in range(NT):
                for e in range(4):
                    v = sum(red[w][nt][lane][e] for w in range(8))
                    row = row0 + g + 8*(e >> 1); b = 2*t + (e & 1) + 8*nt
                    if row >= N or b >= M: continue
                    v *= sc[row if per_row else 0]
                    y[b, row] = v
    ref = x.double().numpy() @ W.numpy().T
    err = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    print(f"N={N} K={K} M={M} {dt} per_row={per_row}: rel err {err:.2e}  nan={np.isnan(y).sum()}")
    assert err < 1e-9, err

for args in [(16, 80, 1, 'bf16', True, 0), (20, 400, 3, 'f16', False, 1), (33, 100, 9, 'bf16', True, 2),
             (16, 2720, 16, 'f16', True, 3), (40, 2570, 5, 'bf16', False, 4)]:
    run(*args)
