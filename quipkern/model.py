"""One call to quantize a model: quantize_model(model, config, calibration) swaps the
selected nn.Linear modules for QuipLinear / TernaryLinear in place and returns a report;
prepare_model builds the same structure empty (to load a checkpoint into); save_quantized
and load_quantized write and read safetensors checkpoints with the config in their
metadata."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import sys
import time
from typing import Callable, Iterable

import torch
from torch import nn

from .layers import QuipLinear, TernaryLinear
from .quantize import collect_hessians, run_calibration

__all__ = ["QuantConfig", "LayerReport", "QuantReport", "quantize_model", "prepare_model",
           "save_quantized", "load_quantized"]

FORMATS = ("2bit", "ternary")
METHODS = ("rtn", "ldlq")


@dataclasses.dataclass
class QuantConfig:
    """What to quantize and how.

    format:      "2bit" (QuipLinear) or "ternary" (TernaryLinear)
    transform:   randomized Hadamard transforms on both sides (incoherence processing)
    method:      "rtn" or "ldlq" (2-bit; ldlq needs calibration data)
    group_size:  64, 128, or -1 (one scale per row)           (2-bit)
    asymmetric:  scale + zero grid instead of the symmetric one (2-bit)
    rank:        > 0 adds a high-precision low-rank term W ≈ Ŵ + L R (2-bit)
    layout:      "base3" (1.6 bits) or "2bit"                 (ternary)
    per_row:     one scale per row instead of per tensor       (ternary)
    act_bits:    None (fp16/bf16/fp32 activations), 8 or 4: integer activations (ternary,
                 layout "2bit"; W1.58A8 / A4, inference only)
    include / exclude: fnmatch patterns on module names (exclude wins)
    types:       module classes to consider (nn.Linear subclasses)
    damp:        LDLQ damping, as a fraction of the mean Hessian diagonal
    seed:        seeds the sign vectors (layer i uses seed + i)
    """

    format: str = "2bit"
    transform: bool = True
    method: str = "rtn"
    group_size: int = 128
    asymmetric: bool = False
    rank: int = 0
    layout: str = "base3"
    per_row: bool = True
    act_bits: int | None = None
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    types: tuple[type, ...] = (nn.Linear,)
    damp: float = 0.01
    seed: int = 0

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"QuantConfig: format must be one of {FORMATS}; got {self.format!r}")
        if self.method not in METHODS:
            raise ValueError(f"QuantConfig: method must be one of {METHODS}; got {self.method!r}")
        if self.format == "ternary" and (self.method != "rtn" or self.rank):
            raise ValueError("QuantConfig: ternary uses the absmean quantizer (method 'rtn', rank 0)")
        if self.act_bits is not None and (self.format != "ternary" or self.act_bits not in (8, 4)
                                          or self.layout != "2bit"):
            raise ValueError("QuantConfig: act_bits (8 or 4) goes with format 'ternary' and layout '2bit'; "
                             f"got act_bits={self.act_bits!r}, format={self.format!r}, layout={self.layout!r}")
        if isinstance(self.include, str) or isinstance(self.exclude, str):
            raise TypeError("QuantConfig: include / exclude must be tuples of patterns, not a string")
        self.include, self.exclude, self.types = tuple(self.include), tuple(self.exclude), tuple(self.types)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["types"] = [f"{t.__module__}.{t.__qualname__}" for t in self.types]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "QuantConfig":
        d = json.loads(text)
        d.pop("types", None)  # classes are not restored from names; the checkpoint lists the layers
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def make_empty(self, linear: nn.Linear) -> nn.Module:
        kw = dict(device=linear.weight.device, dtype=linear.weight.dtype)
        if self.format == "2bit":
            return QuipLinear(linear.in_features, linear.out_features, linear.bias is not None,
                              group_size=self.group_size, asymmetric=self.asymmetric, transform=self.transform,
                              rank=self.rank, **kw)
        return TernaryLinear(linear.in_features, linear.out_features, linear.bias is not None, layout=self.layout,
                             per_row=self.per_row, transform=self.transform, act_bits=self.act_bits, **kw)


@dataclasses.dataclass
class LayerReport:
    name: str
    shape: tuple[int, int]
    bits_per_weight: float
    proxy_error: float | None  # tr(ΔW H ΔWᵀ) / tr(W H Wᵀ), with calibration data
    weight_error: float        # ||ΔW||_F^2 / ||W||_F^2
    bytes_before: int
    bytes_after: int


@dataclasses.dataclass
class QuantReport:
    layers: list[LayerReport]
    skipped: list[tuple[str, str]]  # (name, reason)
    seconds: float

    @property
    def bytes_before(self) -> int:
        return sum(r.bytes_before for r in self.layers)

    @property
    def bytes_after(self) -> int:
        return sum(r.bytes_after for r in self.layers)

    def mean_proxy_error(self) -> float | None:
        errs = [r.proxy_error for r in self.layers if r.proxy_error is not None]
        return sum(errs) / len(errs) if errs else None

    def __str__(self) -> str:
        lines = [f"{'layer':<48}{'shape':>14}{'bits/w':>8}{'proxy err':>11}{'W err':>9}"]
        for r in self.layers:
            pe = f"{r.proxy_error:.4f}" if r.proxy_error is not None else "-"
            lines.append(f"{r.name:<48}{str(r.shape):>14}{r.bits_per_weight:>8.3f}{pe:>11}{r.weight_error:>9.4f}")
        for name, why in self.skipped:
            lines.append(f"skipped {name}: {why}")
        lines.append(f"{len(self.layers)} layers quantized, {len(self.skipped)} skipped, "
                     f"{self.bytes_before / 2**20:.2f} MiB -> {self.bytes_after / 2**20:.2f} MiB "
                     f"in {self.seconds:.1f} s")
        return "\n".join(lines)


def _selected(model: nn.Module, config: QuantConfig) -> tuple[dict[str, nn.Linear], list[tuple[str, str]]]:
    chosen, skipped = {}, []
    for name, m in model.named_modules():
        if not isinstance(m, config.types) or isinstance(m, (QuipLinear, TernaryLinear)):
            continue
        if not isinstance(m, nn.Linear):
            raise TypeError(f"quantize_model: QuantConfig.types must hold nn.Linear subclasses; {name} is "
                            f"{type(m).__name__}")
        if not any(fnmatch.fnmatchcase(name, p) for p in config.include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in config.exclude):
            continue
        try:
            config.make_empty(nn.Linear(m.in_features, m.out_features, m.bias is not None, device="meta"))
        except ValueError as e:  # a width no format or transform supports
            skipped.append((name, str(e)))
            continue
        chosen[name] = m
    return chosen, skipped


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def prepare_model(model: nn.Module, config: QuantConfig, names: Iterable[str] | None = None) -> list[str]:
    """Swap the selected Linear modules (or exactly `names`) for empty quantized layers
    of the right shapes, e.g. to load a state_dict or checkpoint into.  Returns the names."""
    if names is None:
        names = list(_selected(model, config)[0])
    names = list(names)
    for name in names:
        m = model.get_submodule(name)
        _set_module(model, name, config.make_empty(m))
    return names


def quantize_model(model: nn.Module, config: QuantConfig | None = None, calibration=None,
                   progress: Callable[[str], None] | None = None) -> QuantReport:
    """Quantize the selected nn.Linear modules of `model` in place.

    calibration: None, a callable(model), or an iterable of batches (tensor, tuple of
    args, or dict of kwargs) to run through the float model; it yields the proxy
    Hessians for LDLQ and for the proxy errors in the report.
    progress: called with one line per layer (default: print to stderr when there are
    more than 8 layers).
    """
    config = config or QuantConfig()
    t0 = time.time()
    chosen, skipped = _selected(model, config)
    if config.method == "ldlq" and calibration is None:
        raise ValueError("quantize_model: method 'ldlq' needs calibration data (calibration=...)")
    if progress is None and len(chosen) > 8:
        progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    hessians: dict[str, torch.Tensor] = {}
    if calibration is not None and chosen:
        with collect_hessians(chosen) as hessians:
            run_calibration(model, calibration)
    reports = []
    for i, (name, lin) in enumerate(chosen.items()):
        H = hessians.get(name)
        W = lin.weight.detach().double()
        layer = config.make_empty(lin)  # the one place that maps the config to layer arguments
        layer.init_signs(config.seed + i)
        if config.format == "2bit":
            layer.quantize_(lin.weight, H, config.method, config.damp)
        else:
            layer.quantize_(lin.weight)
        if lin.bias is not None:
            layer.bias.data.copy_(lin.bias.detach())
        D = layer.dequantize(torch.float64) - W
        proxy = None
        if H is not None:
            Hd = H.to(D.device)
            proxy = (torch.trace(D @ Hd @ D.T) / torch.trace(W @ Hd @ W.T).clamp_min(1e-300)).item()
        rep = LayerReport(name, (lin.out_features, lin.in_features), layer.bits_per_weight(), proxy,
                          ((D ** 2).sum() / (W ** 2).sum().clamp_min(1e-300)).item(),
                          lin.weight.numel() * lin.weight.element_size(),
                          int(layer.bits_per_weight() * lin.weight.numel() / 8))
        reports.append(rep)
        _set_module(model, name, layer)
        if progress:
            pe = f"{proxy:.4f}" if proxy is not None else "-"
            progress(f"[{i + 1}/{len(chosen)}] {name} {rep.shape}: proxy error {pe}, weight error {rep.weight_error:.4f}")
    for name, why in skipped:
        if progress:
            progress(f"skipped {name}: {why}")
    return QuantReport(reports, skipped, time.time() - t0)


def save_quantized(model: nn.Module, path: str, config: QuantConfig) -> None:
    """Write the whole state_dict as safetensors; the metadata holds the config and the
    names of the quantized layers, so load_quantized needs no float weights."""
    from safetensors.torch import save_file

    names = [n for n, m in model.named_modules() if isinstance(m, (QuipLinear, TernaryLinear))]
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    # tied / shared tensors are written once each
    seen, unique = {}, {}
    for k, v in state.items():
        key = (v.data_ptr(), v.dtype, tuple(v.shape)) if v.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen[key] = k
        unique[k] = v.cpu()
    meta = {"format": "quipkern", "quipkern_config": config.to_json(), "quipkern_layers": json.dumps(names),
            "quipkern_aliases": json.dumps({k: seen[(v.data_ptr(), v.dtype, tuple(v.shape))] for k, v in state.items()
                                            if v.numel() and k not in unique})}
    save_file(unique, path, metadata=meta)


def load_quantized(model: nn.Module, path: str, strict: bool = True) -> QuantConfig:
    """Load a checkpoint of save_quantized into `model`, an instance of the float
    architecture (its weights may be uninitialised, e.g. built on the meta device and
    then moved with to_empty).  Returns the config."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "quipkern":
        raise ValueError(f"load_quantized: {path} is not a quipkern checkpoint (metadata format="
                         f"{meta.get('format')!r})")
    config = QuantConfig.from_json(meta["quipkern_config"])
    prepare_model(model, config, json.loads(meta["quipkern_layers"]))
    state = load_file(path)
    for alias, target in json.loads(meta.get("quipkern_aliases", "{}")).items():
        state[alias] = state[target]
    model.load_state_dict(state, strict=strict)
    return config
