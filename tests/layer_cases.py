"""Random quantized-layer cases shared by the linear op tests."""

from __future__ import annotations

import torch

from quipkern import transform_spec
from quipkern.formats import pack_2bit, pack_ternary_2bit, pack_ternary_base3, random_signs, unpack_signs


def dense_transform(n: int) -> torch.Tensor:
    return transform_spec(n).dense(torch.float64)


def transforms(N, K, transform_in, transform_out, device="cpu", q_dtype=torch.float32):
    kw = {}
    if transform_in:
        q = transform_spec(K).q_matrix(q_dtype)
        kw.update(q_in=None if q is None else q.to(device), signs_in=random_signs(K, seed=K).to(device))
    if transform_out:
        q = transform_spec(N).q_matrix(q_dtype)
        kw.update(q_out=None if q is None else q.to(device), signs_out=random_signs(N, seed=N + 7).to(device))
    kw.update(transform_in=transform_in, transform_out=transform_out)
    return kw


def dense_forward(x, W, bias, kw):
    """y = S_out T_Nᵀ W T_K S_in x + b with every matrix built densely, in float64."""
    N, K = W.shape
    x = x.double()
    if kw["transform_in"]:
        x = (x * unpack_signs(kw["signs_in"].cpu(), K, torch.float64)) @ dense_transform(K).T
    y = x @ W.double().T
    if kw["transform_out"]:
        y = (y @ dense_transform(N)) * unpack_signs(kw["signs_out"].cpu(), N, torch.float64)
    if bias is not None:
        y = y + bias.double().cpu()
    return y


def two_bit_case(N, K, g, asym, device="cpu"):
    codes = torch.randint(0, 4, (N, K))
    G = K // g
    scales = (torch.rand(N, G) * 0.05 + 0.01).half()
    zeros = (torch.rand(N, G) * 3).half() if asym else None
    z = zeros.double().repeat_interleave(g, 1) if asym else 1.5
    W = (codes.double() - z) * scales.double().repeat_interleave(g, 1)
    t = (pack_2bit(codes).to(device), scales.to(device), None if zeros is None else zeros.to(device))
    return t, W


def ternary_case(N, K, layout, per_row, device="cpu"):
    trits = torch.randint(-1, 2, (N, K))
    packed = pack_ternary_2bit(trits) if layout == "2bit" else pack_ternary_base3(trits)
    scale = torch.rand(N if per_row else 1) * 0.05 + 0.01
    W = trits.double() * scale.double().view(-1, 1)
    return (packed.to(device), scale.to(device)), W
