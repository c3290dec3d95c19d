"""LDLQ (QuIP) adaptive rounding, which is the same computation as OPTQ / GPTQ:
round the columns of W in order, each time feeding the rounding error forward to the
columns not yet rounded through the Cholesky factor of the inverse proxy Hessian, so as
to minimise tr(ΔW H ΔWᵀ) with H = E[x xᵀ] (QuIP, Theorem 1: LDLQ is optimal among
such adaptive rounders, and equal to OPTQ).

Group scales are chosen when the rounding reaches a group's first column, from the
columns as they are then (already corrected by the earlier errors).
"""

from __future__ import annotations

import torch

from .rtn import column_mask, group_params, quantize_with

__all__ = ["ldlq_2bit", "damped_hessian"]


def damped_hessian(H: torch.Tensor, damp: float) -> torch.Tensor:
    """H + damp · mean(diag H) · I in float64; dead inputs (zero diagonal) get 1."""
    H = H.double().clone()
    dead = torch.diag(H) <= 0
    H[dead, dead] = 1.0
    H += damp * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    return H


def ldlq_2bit(W: torch.Tensor, H: torch.Tensor, group_size: int, asymmetric: bool = False,
              damp: float = 0.01, block: int = 128, valid: int | None = None):
    """W (N, K), H (K, K) -> (codes (N, K), scales fp16 (N, K/g), zeros fp16 or None).
    valid: columns [valid, K) are zero padding (see rtn_2bit)."""
    N, K = W.shape
    g = K if group_size in (None, 0, -1) else group_size
    W = W.double().clone()
    Hd = damped_hessian(H, damp)
    # upper Cholesky factor of H^-1: row k holds how column k's error propagates
    L = torch.linalg.cholesky(Hd)
    U = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    codes = torch.zeros(N, K, dtype=torch.int64, device=W.device)
    scales = torch.zeros(N, K // g, dtype=torch.float64, device=W.device)
    zeros = torch.zeros_like(scales)
    if g == K:  # one scale per row, from the whole row up front
        s, z = group_params(W, asymmetric, column_mask(K, valid, device=W.device))
        scales[:, 0:1], zeros[:, 0:1] = s, z
    else:  # blocks hold whole groups, so a group's columns are current when it starts
        block = max(g, block - block % g)
    for b0 in range(0, K, block):
        b1 = min(b0 + block, K)
        Wb = W[:, b0:b1].clone()
        Eb = torch.zeros_like(Wb)
        for k in range(b0, b1):
            j = k - b0
            gi = k // g
            if g != K and k % g == 0:
                s, z = group_params(Wb[:, j : j + g], asymmetric, column_mask(K, valid, k, g, W.device))
                scales[:, gi : gi + 1], zeros[:, gi : gi + 1] = s, z
            c, q = quantize_with(Wb[:, j : j + 1], scales[:, gi : gi + 1], zeros[:, gi : gi + 1])
            codes[:, k : k + 1] = c.long()
            err = (Wb[:, j : j + 1] - q) / U[k, k]
            Wb[:, j + 1 :] -= err * U[k, k + 1 : b1][None, :]
            Eb[:, j : j + 1] = err
        W[:, b1:] -= Eb @ U[b0:b1, b1:]
    return codes, scales.half(), zeros.half() if asymmetric else None
