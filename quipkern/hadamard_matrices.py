"""Hadamard matrices of small orders, built exactly (entries +-1, H Hᵀ = m I).

Constructions (docs/FORMATS.md, "Transforms"):
  * Sylvester doubling  H_2m = [[H_m, H_m], [H_m, -H_m]]          (m = 1, 2, 4, 8, ...)
  * Paley I   q ≡ 3 (mod 4) a prime power  → order q + 1            (12, 20, 24, 28, 44, ...)
  * Paley II  q ≡ 1 (mod 4) a prime power  → order 2 (q + 1)        (36, 52, 76, 100, ...)
A small finite-field helper covers prime powers (27 = 3^3, 25 = 5^2, ...), so every
order these three rules reach is available, not a hand-typed list.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

__all__ = ["hadamard_matrix", "has_hadamard", "known_hadamard_orders"]


def _prime_power(q: int) -> tuple[int, int] | None:
    """(p, e) with q = p**e and p prime, or None."""
    if q < 2:
        return None
    p = next(d for d in itertools.chain([2], range(3, q + 1, 2)) if q % d == 0)
    e, r = 0, q
    while r % p == 0:
        r //= p
        e += 1
    return (p, e) if r == 1 else None


def _poly_mod(a: list[int], f: list[int], p: int) -> list[int]:
    """a mod f over GF(p); coefficient lists, lowest degree first, f monic."""
    a = a[:]
    while len(a) >= len(f):
        c = a[-1] % p
        if c:
            shift = len(a) - len(f)
            for i, fc in enumerate(f):
                a[shift + i] = (a[shift + i] - c * fc) % p
        a.pop()
    return a


def _is_irreducible(f: list[int], p: int) -> bool:
    deg = len(f) - 1
    for d in range(1, deg // 2 + 1):
        for low in itertools.product(range(p), repeat=d):
            if not any(_poly_mod(f, list(low) + [1], p)):
                return False
    return True


@functools.lru_cache(maxsize=None)
def _quadratic_character(q: int) -> np.ndarray:
    """chi[a] for the elements a = 0..q-1 of GF(q) (base-p digits = polynomial
    coefficients): 0 for a = 0, +1 for nonzero squares, -1 otherwise."""
    p, e = _prime_power(q)
    if e == 1:
        mul = lambda a, b: (a * b) % p  # noqa: E731
    else:
        f = next(
            list(low) + [1]
            for low in itertools.product(range(p), repeat=e)
            if low[0] != 0 and _is_irreducible(list(low) + [1], p)
        )

        def digits(a):
            return [(a // p**i) % p for i in range(e)]

        def mul(a, b):
            da, db = digits(a), digits(b)
            prod = [0] * (2 * e - 1)
            for i, x in enumerate(da):
                for j, y in enumerate(db):
                    prod[i + j] += x * y
            r = _poly_mod([c % p for c in prod], f, p) + [0] * e
            return sum(c * p**i for i, c in enumerate(r[:e]))

    chi = -np.ones(q, dtype=np.int64)
    chi[0] = 0
    for a in range(1, q):
        chi[mul(a, a)] = 1
    return chi


def _sub_table(q: int) -> np.ndarray:
    """(a - b) in GF(q) for all element pairs, digit-wise mod p."""
    p, e = _prime_power(q)
    a = np.arange(q)
    da = np.stack([(a // p**i) % p for i in range(e)])  # (e, q)
    diff = (da[:, :, None] - da[:, None, :]) % p  # (e, q, q)
    return sum(diff[i] * p**i for i in range(e))


def _jacobsthal(q: int) -> np.ndarray:
    """Q[a, b] = chi(a - b): the core of both Paley constructions."""
    return _quadratic_character(q)[_sub_table(q)]


def _paley1(q: int) -> np.ndarray:
    Q = _jacobsthal(q)
    n = q + 1
    H = np.ones((n, n), dtype=np.int64)
    H[1:, 0] = -1
    H[1:, 1:] = Q + np.eye(q, dtype=np.int64)
    return H


def _paley2(q: int) -> np.ndarray:
    Q = _jacobsthal(q)
    C = np.zeros((q + 1, q + 1), dtype=np.int64)
    C[0, 1:] = 1
    C[1:, 0] = 1
    C[1:, 1:] = Q
    off = np.array([[1, 1], [1, -1]])
    diag = np.array([[1, -1], [-1, -1]])
    H = np.zeros((2 * (q + 1), 2 * (q + 1)), dtype=np.int64)
    for i in range(q + 1):
        for j in range(q + 1):
            H[2 * i : 2 * i + 2, 2 * j : 2 * j + 2] = (
                diag if i == j else off * C[i, j]
            )
    return H


@functools.lru_cache(maxsize=None)
def _build(m: int) -> np.ndarray | None:
    if m == 1:
        return np.ones((1, 1), dtype=np.int64)
    if m == 2:
        return np.array([[1, 1], [1, -1]], dtype=np.int64)
    if m % 4:
        return None
    pp = _prime_power(m - 1)
    if pp and (m - 1) % 4 == 3:
        return _paley1(m - 1)
    pp = _prime_power(m // 2 - 1)
    if pp and (m // 2 - 1) % 4 == 1:
        return _paley2(m // 2 - 1)
    half = _build(m // 2)
    if half is not None:
        return np.block([[half, half], [half, -half]])
    return None


def has_hadamard(m: int) -> bool:
    """Whether quipkern can build a Hadamard matrix of order m."""
    return m >= 1 and _build(m) is not None


def hadamard_matrix(m: int) -> np.ndarray:
    """The +-1 Hadamard matrix of order m (int64 array, H Hᵀ = m I); ValueError if
    none of the constructions above reaches m."""
    H = _build(m) if m >= 1 else None
    if H is None:
        raise ValueError(
            f"hadamard_matrix: no Hadamard matrix of order {m} is known to quipkern "
            f"(it builds orders 1, 2 and the multiples of 4 reached by Sylvester doubling "
            f"and Paley I/II; see known_hadamard_orders())"
        )
    H = H.copy()
    H.setflags(write=False)
    return H


def known_hadamard_orders(limit: int = 256) -> list[int]:
    """Every order <= limit for which hadamard_matrix() succeeds."""
    return [m for m in range(1, limit + 1) if has_hadamard(m)]
