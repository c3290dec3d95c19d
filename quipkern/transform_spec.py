"""Which orthogonal transform quipkern uses for a width n (docs/FORMATS.md, "Transforms").

    T_n = Q_m ⊗ (H_p / sqrt(p)),   n = m · p,  p = 2^k

H_p is the Sylvester-ordered Walsh–Hadamard matrix, H_p[i, j] = (-1)^popcount(i & j).
Q_m is orthonormal: a Hadamard matrix / sqrt(m) where quipkern can build one of order
m = o·2^j (o the odd part of n, smallest such j), else a seeded random orthogonal
matrix of order o (QuIP's Kronecker-of-orthogonals idea).  Dense factors are bounded
by MAX_DENSE_M because every element of the transform costs m multiply-adds in that
factor, against log2(p) additions in the butterfly part.

Index convention: element i of a row is (a, b) = divmod(i, p): the row is viewed as an
m × p matrix X (row-major) and T_n x = vec(Q_m · X · H_p) / sqrt(p).

Widths with no such transform (odd part > MAX_DENSE_M, e.g. Falcon's 4544 = 71·64) are
padded: width_plan(n) picks the smallest width n' >= n that has one; activations are
zero-padded to n' on the fly, weights once at quantization time, and outputs trimmed
back to n (docs/FORMATS.md, "Widths without a cheap transform").
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from .hadamard_matrices import hadamard_matrix, has_hadamard

__all__ = [
    "MAX_DENSE_M",
    "TransformSpec",
    "transform_spec",
    "random_orthogonal",
    "WidthPlan",
    "width_plan",
]

# Largest dense factor.  Beyond it the m-term dot products per element outweigh the
# memory traffic of the transform; such widths are not supported (yet) by the spec.
MAX_DENSE_M = 64

# Seed of the random orthogonal factor of order m (stable, documented in FORMATS.md):
# SEED_BASE + m, fed to splitmix64.
SEED_BASE = 0x5155495000000000  # "QUIP" << 32

_U64 = np.uint64


def _splitmix64(seed: int, count: int) -> np.ndarray:
    """count outputs of splitmix64 started at `seed` (uint64 arithmetic, wrapping)."""
    with np.errstate(over="ignore"):
        i = np.arange(1, count + 1, dtype=_U64)
        z = _U64(seed & 0xFFFFFFFFFFFFFFFF) + i * _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


@functools.lru_cache(maxsize=None)
def _random_orthogonal_np(m: int, seed: int) -> np.ndarray:
    z = _splitmix64(seed, 2 * m * m)
    u = (z >> _U64(11)).astype(np.float64) * 2.0**-53  # [0, 1)
    u1, u2 = u[0::2], u[1::2]
    g = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)  # Box–Muller
    q, r = np.linalg.qr(g.reshape(m, m))
    q = q * np.sign(np.diag(r))[None, :]  # unique Q with diag(R) > 0
    q.setflags(write=False)
    return q


def random_orthogonal(m: int, seed: int | None = None) -> torch.Tensor:
    """The seeded random orthogonal m × m matrix (float64) quipkern uses for odd m."""
    return torch.from_numpy(_random_orthogonal_np(m, SEED_BASE + m if seed is None else seed).copy())


def _odd_part(n: int) -> tuple[int, int]:
    e = 0
    while n % 2 == 0:
        n //= 2
        e += 1
    return n, e


@dataclasses.dataclass(frozen=True)
class TransformSpec:
    """The transform of width n = m · p.

    kind: "hadamard" (Q = H_m / sqrt(m)) or "random_orthogonal" (Q seeded, see FORMATS.md).
    """

    n: int
    m: int
    kind: str
    seed: int | None = None

    @property
    def p(self) -> int:
        return self.n // self.m

    @property
    def log2_p(self) -> int:
        return self.p.bit_length() - 1

    def q_matrix(self, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
        """The orthonormal dense factor Q_m as passed to the ops, or None when m == 1."""
        if self.m == 1:
            return None
        return self._q64().to(dtype)

    def _q64(self) -> torch.Tensor:
        if self.kind == "hadamard":
            h = torch.from_numpy(hadamard_matrix(self.m).astype(np.float64))
            return h / self.m**0.5
        return random_orthogonal(self.m, self.seed)

    def dense(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The whole n × n matrix T_n (for tests and small widths only)."""
        b = torch.arange(self.p)
        pop = torch.zeros(self.p, self.p, dtype=torch.int64)
        and_ = b[:, None] & b[None, :]
        while bool(and_.any()):
            pop += and_ & 1
            and_ = and_ >> 1
        h = (1 - 2 * (pop % 2)).to(torch.float64) / self.p**0.5
        return torch.kron(self._q64(), h).to(dtype)


@functools.lru_cache(maxsize=None)
def transform_spec(n: int) -> TransformSpec:
    """The transform quipkern uses for width n, or ValueError naming why none exists.

    Rule: let n = o · 2^e with o odd.  Take the smallest m = o · 2^j (j <= e) for which a
    Hadamard matrix is known and m <= MAX_DENSE_M; otherwise, if o <= MAX_DENSE_M, a
    random orthogonal factor of order o.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"transform_spec: width n must be a positive int, got {n!r}")
    o, e = _odd_part(n)
    if o == 1:
        return TransformSpec(n=n, m=1, kind="hadamard")
    for j in range(e + 1):
        m = o << j
        if m > MAX_DENSE_M:
            break
        if has_hadamard(m):
            return TransformSpec(n=n, m=m, kind="hadamard")
    if o <= MAX_DENSE_M:
        return TransformSpec(n=n, m=o, kind="random_orthogonal", seed=SEED_BASE + o)
    raise ValueError(
        f"transform_spec: width {n} = {o}·2^{e} has an odd part {o} > MAX_DENSE_M={MAX_DENSE_M}; "
        f"no cheap orthogonal transform of this width is supported"
    )


@dataclasses.dataclass(frozen=True)
class WidthPlan:
    """How a layer width n is transformed: the transform of width `padded` >= n, applied
    to the vector zero-padded to `padded` (nothing is padded when padded == n)."""

    n: int
    padded: int
    spec: TransformSpec | None  # None: no transform (the layer has transform=False)

    @property
    def pad(self) -> int:
        return self.padded - self.n

    @property
    def extra_fraction(self) -> float:
        """Extra weight bytes and activation traffic from the padding, over the unpadded."""
        return self.padded / self.n - 1.0

    @property
    def ops_per_element(self) -> int:
        """Arithmetic of the transform per (padded) element: m multiply-adds in the
        dense factor (when m > 1) plus log2(p) additions in the butterflies."""
        if self.spec is None:
            return 0
        return (self.spec.m if self.spec.m > 1 else 0) + self.spec.log2_p

    def describe(self) -> str:
        if self.spec is None:
            t = "no transform"
        else:
            q = "" if self.spec.m == 1 else (
                f"H_{self.spec.m} ⊗ " if self.spec.kind == "hadamard" else f"random orthogonal Q_{self.spec.m} ⊗ ")
            t = f"{q}H_{self.spec.p}"
        pad = "not padded" if self.pad == 0 else f"padded {self.n} -> {self.padded} (+{100 * self.extra_fraction:.2f}%)"
        return f"width {self.n}: {t}, {pad}, {self.ops_per_element} ops/element"


@functools.lru_cache(maxsize=None)
def width_plan(n: int, multiple_of: int = 1, transform: bool = True) -> WidthPlan:
    """The transform and padded width quipkern uses for a layer width n.

    Rule: if n is a multiple of `multiple_of` (a power of two: what a weight format needs,
    64 for 2-bit in-features) and transform_spec(n) exists, n is used as is.  Otherwise
    the smallest n' >= n that is a multiple of `multiple_of` and has a transform_spec.
    With transform=False only the format's multiple matters.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"width_plan: width n must be a positive int, got {n!r}")
    if multiple_of < 1 or multiple_of & (multiple_of - 1):
        raise ValueError(f"width_plan: multiple_of must be a power of two, got {multiple_of!r}")
    padded = -(-n // multiple_of) * multiple_of
    if not transform:
        return WidthPlan(n=n, padded=padded, spec=None)
    while True:  # ends at the next power of two at the latest
        try:
            return WidthPlan(n=n, padded=padded, spec=transform_spec(padded))
        except ValueError:
            padded += multiple_of
