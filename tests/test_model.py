"""quantize_model / prepare_model / save_quantized / load_quantized on a small model."""

import pytest
import torch
from torch import nn

import quipkern
from quipkern import QuantConfig, QuipLinear, TernaryLinear, quantize_model

from .utils import rel_err


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(128, 384)
        self.down = nn.Linear(384, 128, bias=False)
        self.odd = nn.Linear(128, 142)       # out width 142 = 71·2: no transform of that width (padded)
        self.head = nn.Linear(142, 128)      # in width 142: not a multiple of the group size (padded)
        self.norm = nn.LayerNorm(128)

    def forward(self, x):
        h = self.norm(x + self.down(torch.relu(self.up(x))))
        return self.head(torch.tanh(self.odd(h)))


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(Block(), Block())


def batches(n=4):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(8, 16, 128, generator=g) for _ in range(n)]


def test_quantize_model_replaces_selected_and_reports():
    model = make_model()
    x = torch.randn(3, 128)
    ref = model(x)
    report = quantize_model(model, QuantConfig(exclude=("1.*",)), calibration=batches())
    names = {r.name for r in report.layers}
    assert names == {"0.up", "0.down", "0.odd", "0.head"}
    assert isinstance(model[0].up, QuipLinear) and isinstance(model[1].up, nn.Linear)
    assert report.skipped == []
    # the widths without a cheap transform are padded (docs/FORMATS.md)
    assert (model[0].odd.padded_out_features, model[0].odd.padded_in_features) == (144, 128)
    assert (model[0].head.padded_out_features, model[0].head.padded_in_features) == (128, 256)
    assert all(r.proxy_error is not None and 0 < r.proxy_error < 0.5 for r in report.layers)
    assert report.bytes_after < report.bytes_before / 6
    assert "4 layers quantized, 0 skipped" in str(report)
    assert model[0].down.bias is None and model[0].up.bias is not None
    assert rel_err(model(x), ref) < 0.5


def test_layers_a_config_cannot_build_are_skipped_with_the_reason():
    model = make_model()
    report = quantize_model(model, QuantConfig(rank=130, include=("0.*",)))
    assert {n for n, _ in report.skipped} == {"0.up", "0.down", "0.odd", "0.head"}  # rank > min(in, out)
    assert all("rank=130 must be in [0, 128]" in why for _, why in report.skipped)
    assert isinstance(model[0].down, nn.Linear) and report.layers == []


def test_include_patterns_and_types():
    model = make_model()
    report = quantize_model(model, QuantConfig(include=("*.down",)))
    assert {r.name for r in report.layers} == {"0.down", "1.down"}
    with pytest.raises(TypeError, match="tuples of patterns"):
        QuantConfig(include="*.down")
    with pytest.raises(TypeError, match="nn.Linear subclasses"):
        quantize_model(make_model(), QuantConfig(types=(nn.LayerNorm,)))


def test_bad_configs():
    with pytest.raises(ValueError, match="format must be one of"):
        QuantConfig(format="4bit")
    with pytest.raises(ValueError, match="method must be one of"):
        QuantConfig(method="gptq")
    with pytest.raises(ValueError, match="ternary uses the absmean"):
        QuantConfig(format="ternary", method="ldlq")
    with pytest.raises(ValueError, match="needs calibration data"):
        quantize_model(make_model(), QuantConfig(method="ldlq"))


def test_ldlq_not_worse_than_rtn_on_real_hessians():
    errs = {}
    for method in ("rtn", "ldlq"):
        model = make_model()
        rep = quantize_model(model, QuantConfig(method=method, group_size=64), calibration=batches())
        errs[method] = {r.name: r.proxy_error for r in rep.layers}
    for name in errs["rtn"]:
        assert errs["ldlq"][name] <= errs["rtn"][name] * 1.001, name


@pytest.mark.parametrize("config", [
    QuantConfig(group_size=64, asymmetric=True, rank=4),
    QuantConfig(format="ternary", transform=True, layout="base3", per_row=False),
    QuantConfig(format="ternary", layout="2bit", include=("*.up", "*.down")),
])
def test_state_dict_and_safetensors_round_trip(tmp_path, config):
    model = make_model()
    quantize_model(model, config, calibration=batches(2))
    x = torch.randn(5, 128)
    ref = model(x)
    # state_dict into a fresh model built from the same config
    fresh = make_model()
    torch.manual_seed(123)
    for p in fresh.parameters():
        p.data.normal_()
    quipkern.prepare_model(fresh, config)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(x), ref)
    # safetensors checkpoint, loaded without the float weights
    path = str(tmp_path / "q.safetensors")
    quipkern.save_quantized(model, path, config)
    with torch.device("meta"):
        skeleton = make_model()
    skeleton = skeleton.to_empty(device="cpu")
    got = quipkern.load_quantized(skeleton, path)
    assert got.format == config.format and got.rank == config.rank
    assert torch.equal(skeleton(x), ref)


def test_load_refuses_foreign_file(tmp_path):
    from safetensors.torch import save_file

    path = str(tmp_path / "plain.safetensors")
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a quipkern checkpoint"):
        quipkern.load_quantized(make_model(), path)
