"""Packed layouts (docs/FORMATS.md): round trips, the documented worked examples, and
refusals of data no packer writes."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quipkern.formats import (
    base3_row_bytes,
    dequantize_2bit,
    dequantize_ternary,
    pack_2bit,
    pack_signs,
    pack_ternary_2bit,
    pack_ternary_base3,
    random_signs,
    unpack_2bit,
    unpack_signs,
    unpack_ternary,
)

shapes = st.tuples(st.integers(1, 9), st.integers(1, 4).map(lambda w: 64 * w))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
def test_2bit_round_trip(shape, seed):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 4, shape, generator=g)
    packed = pack_2bit(codes)
    assert packed.dtype == torch.int32 and packed.shape == (shape[0], shape[1] // 16)
    assert torch.equal(unpack_2bit(packed).long(), codes)


def test_2bit_bit_order_one_code_at_a_time():
    for j in range(16):
        codes = torch.zeros(1, 64, dtype=torch.int64)
        codes[0, j] = 3
        word = pack_2bit(codes)[0, 0].item() & 0xFFFFFFFF
        assert word == 3 << (2 * j)


def test_2bit_worked_example():
    codes = torch.zeros(1, 64, dtype=torch.int64)
    codes[0, :16] = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3])
    packed = pack_2bit(codes)
    assert packed[0].tolist() == [-1073734684, 0, 0, 0]
    assert packed[0, 0].item() & 0xFFFFFFFF == 0xC0001BE4
    s = torch.tensor([[0.5]], dtype=torch.float16)
    w = dequantize_2bit(packed, s)
    assert w[0, :16].tolist() == [-0.75, -0.25, 0.25, 0.75, 0.75, 0.25, -0.25, -0.75] + [-0.75] * 7 + [0.75]
    w = dequantize_2bit(packed, s, torch.tensor([[1.0]], dtype=torch.float16))
    assert w[0, :16].tolist() == [-0.5, 0, 0.5, 1, 1, 0.5, 0, -0.5] + [-0.5] * 7 + [1]


@pytest.mark.parametrize("g", [64, 128, 256])
@pytest.mark.parametrize("asym", [False, True])
def test_2bit_dequantize_groups(g, asym):
    N, K = 5, 256
    codes = torch.randint(0, 4, (N, K))
    scales = (torch.rand(N, K // g) + 0.1).half()
    zeros = (torch.rand(N, K // g) * 3).half() if asym else None
    w = dequantize_2bit(pack_2bit(codes), scales, zeros, torch.float64)
    z = zeros.double().repeat_interleave(g, 1) if asym else 1.5
    ref = (codes.double() - z) * scales.double().repeat_interleave(g, 1)
    assert torch.equal(w, ref)


@pytest.mark.parametrize(
    "packed_shape,scales_shape,err",
    [((4, 4), (4, 3), "scales"), ((4, 4), (5, 1), "scales"), ((4, 3), (4, 1), "multiple of 64"),
     ((4, 8), (4, 4), "scales"), ((4, 16), (4, 8), "scales")],
)
def test_2bit_bad_shapes(packed_shape, scales_shape, err):
    packed = torch.zeros(packed_shape, dtype=torch.int32)
    with pytest.raises(ValueError, match=err):
        dequantize_2bit(packed, torch.ones(scales_shape, dtype=torch.float16))


def test_2bit_bad_dtypes_and_codes():
    with pytest.raises(TypeError, match="'packed' must have dtype torch.int32"):
        dequantize_2bit(torch.zeros(2, 4, dtype=torch.int64), torch.ones(2, 1, dtype=torch.float16))
    with pytest.raises(TypeError, match="'scales' must have dtype torch.float16"):
        dequantize_2bit(torch.zeros(2, 4, dtype=torch.int32), torch.ones(2, 1))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 3\]"):
        pack_2bit(torch.full((1, 64), 4))
    with pytest.raises(ValueError, match="multiple of 64"):
        pack_2bit(torch.zeros(1, 48, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer"):
        pack_2bit(torch.zeros(1, 64))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 7), k=st.integers(1, 300), seed=st.integers(0, 2**31 - 1))
def test_ternary_base3_round_trip(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    trits = torch.randint(-1, 2, (n, k), generator=g)
    packed = pack_ternary_base3(trits)
    assert packed.dtype == torch.uint8 and packed.shape == (n, base3_row_bytes(k))
    assert int(packed.max()) <= 242
    assert torch.equal(unpack_ternary(packed, k).long(), trits)


@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
def test_ternary_2bit_round_trip(shape, seed):
    g = torch.Generator().manual_seed(seed)
    trits = torch.randint(-1, 2, shape, generator=g)
    assert torch.equal(unpack_ternary(pack_ternary_2bit(trits), shape[1]).long(), trits)


def test_ternary_worked_examples():
    t = torch.zeros(1, 100, dtype=torch.int64)
    t[0, 0], t[0, 16], t[0, 48], t[0, 64], t[0, 80], t[0, 99] = 1, -1, 1, -1, 1, -1
    b = pack_ternary_base3(t)[0].tolist()
    assert len(b) == 32 and b[0] == 65 and b[16] == 122 and b[19] == 118
    assert all(v == 121 for i, v in enumerate(b) if i not in (0, 16, 19))
    w = pack_ternary_2bit(torch.tensor([[1, -1, 0, 1] + [0] * 60]))
    assert w[0, 0].item() & 0xFFFFFFFF == 0x55555592


@pytest.mark.parametrize("layout", ["2bit", "base3"])
@pytest.mark.parametrize("per_row", [True, False])
def test_ternary_dequantize(layout, per_row):
    N, K = 6, 128
    trits = torch.randint(-1, 2, (N, K))
    packed = pack_ternary_2bit(trits) if layout == "2bit" else pack_ternary_base3(trits)
    scale = torch.rand(N if per_row else 1) + 0.5
    w = dequantize_ternary(packed, scale, K, torch.float64)
    assert torch.equal(w, trits.double() * scale.double().view(-1, 1))


def test_ternary_refusals():
    with pytest.raises(ValueError, match="code 3"):
        unpack_ternary(pack_2bit(torch.full((1, 64), 3)), 64)
    with pytest.raises(ValueError, match="242"):
        unpack_ternary(torch.full((1, 16), 250, dtype=torch.uint8), 80)
    with pytest.raises(ValueError, match=r"trits must lie in"):
        pack_ternary_base3(torch.full((1, 5), 2))
    with pytest.raises(ValueError, match=r"\(N, 16·ceil\(K/80\)\)"):
        dequantize_ternary(torch.zeros(2, 16, dtype=torch.uint8), torch.ones(2), 100)
    with pytest.raises(ValueError, match="'scale' must have shape"):
        dequantize_ternary(torch.zeros(2, 16, dtype=torch.uint8), torch.ones(3), 80)
    with pytest.raises(TypeError, match="'scale' must have dtype torch.float32"):
        dequantize_ternary(torch.zeros(2, 16, dtype=torch.uint8), torch.ones(2).half(), 80)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 200), seed=st.integers(0, 2**31 - 1))
def test_signs_round_trip(n, seed):
    bits = random_signs(n, seed=seed)
    pm1 = unpack_signs(bits, n)
    assert set(pm1.tolist()) <= {-1.0, 1.0}
    assert torch.equal(pack_signs(pm1), bits)


def test_signs_example_and_refusal():
    v = torch.tensor([1.0, -1, -1, 1, 1, 1, 1, 1, -1, 1, 1, 1])
    assert pack_signs(v).tolist() == [0x06, 0x01]
    with pytest.raises(ValueError, match="only \\+1 and -1"):
        pack_signs(torch.tensor([1.0, 0.0]))
