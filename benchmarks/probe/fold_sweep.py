"""Launch parameters of Triton's folding dequantize (pending/fold_q_prefill.patch) against
the CUDA dequantize, by the suite's rig: what limits the fold (H100, session 15)."""
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench  # noqa: E402
import rig  # noqa: E402
import quipkern  # noqa: E402
from quipkern.triton import linear_2bit as tl2  # noqa: E402

for N, K, side in ((28672, 8192, "out"), (8192, 28672, "in")):
    sets, _, _ = bench._weights("2bit", N, K, rig.rotations(N * K // 4))
    m = 28
    q = torch.linalg.qr(torch.randn(m, m, dtype=torch.float64))[0].float().contiguous().cuda()
    out = torch.empty(N, K, dtype=torch.bfloat16, device="cuda")
    base = rig.time_graph(lambda p, s: quipkern.dequantize_2bit(p, s, None, torch.bfloat16), sets)
    print(f"== {N}x{K} fold {side}: CUDA dequantize {base * 1e6:.1f} us", flush=True)
    G = sets[0][1].shape[1]
    P = (K if side == "in" else N) // m
    lines, places, cols = (N, P, 128) if side == "in" else (P, K, 128)
    for exact in (False, True):
        for warps in (2, 4, 8):
            for tiles in (1, 2, 4, 8):
                for stages in (1, 2, 3):
                    if exact and (tiles, stages) != (4, 1):
                        continue
                    grid = (lines * triton.cdiv(places, cols * tiles),)

                    def f(p, s):
                        tl2._dequantize_2bit_folded_kernel[grid](
                            p, s, s, q, out, N, K, G, K // G, m, P, lines, HAS_ZEROS=False, FOLD_IN=side == "in",
                            MP=32, COLS=cols, TILES=tiles, EXACT_F32=exact, num_warps=warps, num_stages=stages)
                    try:
                        t = rig.time_graph(f, sets)
                        print(f"  exact={exact} warps={warps} tiles={tiles} stages={stages}: {t * 1e6:.1f} us", flush=True)
                    except Exception as e:  # noqa: BLE001
                        print(f"  warps={warps} tiles={tiles} stages={stages}: {type(e).__name__}", flush=True)
