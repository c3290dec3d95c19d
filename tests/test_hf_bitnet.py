"""Import / export of Hugging Face BitNet packed weights, on synthetic tensors built to
that layout (no download)."""

import pytest
import torch

from quipkern.formats import dequantize_ternary
from quipkern.formats.hf_bitnet import from_hf_bitnet, pack_hf_bitnet, to_hf_bitnet, unpack_hf_bitnet


def test_documented_example():
    # the example in HF's unpack_weights docstring: 2 packed rows -> 8 rows of trits
    packed = torch.tensor([[0b10100001, 0b00011000], [0b10010000, 0b00001010]], dtype=torch.uint8)
    expected = [[0, -1], [-1, 1], [-1, 1], [-1, 1], [1, 0], [0, -1], [1, -1], [1, -1]]
    assert unpack_hf_bitnet(packed, 8).tolist() == expected
    assert torch.equal(pack_hf_bitnet(torch.tensor(expected)), packed)


@pytest.mark.parametrize("N,K", [(8, 5), (64, 80), (12, 100), (7, 3)])
def test_round_trip_trits(N, K):
    trits = torch.randint(-1, 2, (N, K))
    packed = pack_hf_bitnet(trits)
    assert packed.shape == ((N + 3) // 4, K)
    assert torch.equal(unpack_hf_bitnet(packed, N).long(), trits)


@pytest.mark.parametrize("linear_class", ["bitlinear", "autobitlinear"])
@pytest.mark.parametrize("layout", ["base3", "2bit"])
def test_checkpoint_round_trip_and_scale_meaning(linear_class, layout):
    N, K = 32, 128
    trits = torch.randint(-1, 2, (N, K))
    weight = pack_hf_bitnet(trits)
    weight_scale = torch.tensor([0.25], dtype=torch.bfloat16)
    packed, scale = from_hf_bitnet(weight, weight_scale, N, linear_class, layout)
    W = dequantize_ternary(packed, scale, K, torch.float64)
    # BitLinear divides its output by weight_scale, AutoBitLinear multiplies
    s = 4.0 if linear_class == "bitlinear" else 0.25
    assert torch.equal(W, trits.double() * s)
    w2, ws2 = to_hf_bitnet(packed, scale, K, linear_class)
    assert torch.equal(w2, weight) and torch.equal(ws2, weight_scale)


def test_refusals():
    with pytest.raises(ValueError, match="linear_class must be one of"):
        from_hf_bitnet(torch.zeros(2, 4, dtype=torch.uint8), torch.ones(1), 8, "bit")
    with pytest.raises(ValueError, match="needs ceil"):
        unpack_hf_bitnet(torch.zeros(2, 4, dtype=torch.uint8), 12)
    with pytest.raises(ValueError, match="code 3"):
        unpack_hf_bitnet(torch.full((1, 4), 0xFF, dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match="per-row scales"):
        to_hf_bitnet(torch.full((2, 16), 121, dtype=torch.uint8), torch.tensor([1.0, 2.0]), 80)
