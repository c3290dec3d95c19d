"""Emulation of scale_swizzle (benchmarks/pending/gemv_scale_swizzle.patch, for
csrc/linear_2bit.cu): the group scales' places in shared memory as copy_scales writes them
and as both GEMV kernels' group closes read them; the plain layout (main's) is scale_swizzle = 0.

For every G (groups a row) the kernel can see, and both row tiles (16 / 32 rows):
  * the copy is a permutation of the block's pieces that keeps every piece in its row;
  * the reader (row g + 8h, group grp, XOR sxor of lane row g) finds the value the writer put;
  * where G % 8 == 0, the eight rows g = 0..7 that one LDS reads (same grp) fall in eight
    distinct banks, for every grp; the plain layout's worst conflict is printed beside.
It checks the index scheme, not the CUDA code.  python benchmarks/probe/emulate_scale_swizzle.py
"""


def scale_swizzle(G, r):
    if G == 0 or G % 8:
        return 0
    w = (G // 2) & 31
    low = 32 if w == 0 else (w & -w)
    return (r & 7) * low // 32


def ways(words):
    """The most distinct words one bank serves: the LDS's replays."""
    per_bank = {}
    for w in words:
        per_bank[w % 32] = per_bank.get(w % 32, 0) + 1
    return max(per_bank.values())


def check(G, rows):
    per_row = max(1, G // 8)
    pieces = rows * G // 8
    dest = {}
    for piece in range(pieces):  # copy_scales: piece -> slot
        r = piece // per_row
        to = piece ^ scale_swizzle(G, r)
        assert to // per_row == r or G % 8, f"G={G}: piece {piece} left row {r}"
        dest[to] = piece
    assert sorted(dest) == list(range(pieces)), f"G={G}: not a permutation"
    halves = {}  # half index in shared memory -> (row, group) it holds
    for slot, piece in dest.items():
        for i in range(8):
            h = 8 * piece + i
            halves[8 * slot + i] = (h // G, h % G)
    worst_plain = worst = 1
    for grp in range(G):
        words, plain = set(), set()  # the 32-bit words one LDS touches (one word twice: a broadcast)
        for g in range(8):
            sxor = 8 * scale_swizzle(G, g)
            for hh in range(rows // 8):
                r = g + 8 * hh
                at = r * G + (grp ^ sxor)
                assert halves[at] == (r, grp), f"G={G} row {r} group {grp}: reads {halves[at]}"
            words.add((g * G + (grp ^ sxor)) // 2)
            plain.add((g * G + grp) // 2)
        worst = max(worst, ways(words))
        worst_plain = max(worst_plain, ways(plain))
    return worst_plain, worst


def main():
    # K / group for K = 256 .. 16384 (the x16 kernel's range) and groups 64, 128
    Gs = sorted({K // g for g in (64, 128) for K in range(256, 16385, 64) if K % g == 0})
    bad = []
    for G in Gs:
        for rows in (16, 32):
            plain, swz = check(G, rows)
            if G % 8 == 0 and swz != 1:
                bad.append((G, swz))
        if G in (16, 32, 64, 86, 128, 172, 256):
            print(f"G={G:4d}: ways of the worst conflict, plain {plain}, swizzled {swz}")
    print("ok" if not bad else f"CONFLICTS LEFT: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
