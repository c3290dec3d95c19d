"""End-to-end greedy decode of a Llama-style decoder stack, bf16 against quipkern formats.

A stack of Llama-2-7B-wide blocks (RMSNorm, attention with rotary embeddings and a
static KV cache, SwiGLU MLP) with random weights, an embedding and a bf16 lm_head.
Each decode step (embed -> blocks -> head -> argmax -> next token) is torch.compile'd
(fullgraph; --no-compile for the eager step), captured once in a CUDA graph and replayed
for every token, so launch overheads are what a serving loop with graphs would pay, and
the transforms and every small kernel are counted.  The quantized variants swap the blocks' Linear
layers (not the head, which stays bf16 as in most deployments); their weights are
random codes of the format (the speed does not depend on the values).

Projections that read the same input are fused, as serving stacks do (and as QuIP#
quantizes them): q, k, v as one (3·dim, dim) layer and the MLP's gate and up as one
(2·ffn, dim) layer, so a block has four linears, in bf16 and in every format alike; a
quantized fused layer has one input and one output transform.  `--no-fuse` keeps seven
separate linears per block (the model of the results up to session 7).

    python benchmarks/decode.py [--layers 8] [--tokens 128] [--batch 1,8] [--formats bf16,2bit,...]
                                [--no-compile] [--no-fuse] [--json out.json] [--profile STEPS]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

FORMATS = ("bf16", "2bit", "2bit-notransform", "ternary-2bit", "ternary-a8")


@dataclasses.dataclass
class Config:
    dim: int = 4096
    n_layers: int = 8
    n_heads: int = 32
    ffn: int = 11008
    vocab: int = 32000
    max_seq: int = 256
    fused: bool = True  # q/k/v and gate/up as one linear each (module docstring)


class RMSNorm(nn.Module):
    def __init__(self, dim, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * self.weight


def rope(x, cos, sin):
    """Rotary embedding, half-split convention; x (B, H, S, D), cos/sin (S, D/2)."""
    a, b = x.float().chunk(2, dim=-1)
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, c: Config, batch: int, device=None, dtype=None):
        super().__init__()
        self.h, self.d, self.fused = c.n_heads, c.dim // c.n_heads, c.fused
        kw = dict(bias=False, device=device, dtype=dtype)
        if c.fused:
            self.wqkv = nn.Linear(c.dim, 3 * c.dim, **kw)
        else:
            self.wq, self.wk, self.wv = (nn.Linear(c.dim, c.dim, **kw) for _ in range(3))
        self.wo = nn.Linear(c.dim, c.dim, **kw)
        shape = (batch, self.h, c.max_seq, self.d)
        self.register_buffer("k_cache", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def forward(self, x, pos, cos, sin, mask):
        B, S, _ = x.shape
        qkv = self.wqkv(x).split(self.h * self.d, dim=-1) if self.fused else (self.wq(x), self.wk(x), self.wv(x))
        q, k, v = (t.reshape(B, S, self.h, self.d).transpose(1, 2) for t in qkv)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        self.k_cache.index_copy_(2, pos, k)
        self.v_cache.index_copy_(2, pos, v)
        o = F.scaled_dot_product_attention(q, self.k_cache, self.v_cache, attn_mask=mask)
        return self.wo(o.transpose(1, 2).reshape(B, S, self.h * self.d))


class Block(nn.Module):
    def __init__(self, c: Config, batch: int, device=None, dtype=None):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(c.dim, device, dtype), RMSNorm(c.dim, device, dtype)
        self.attn = Attention(c, batch, device, dtype)
        kw = dict(bias=False, device=device, dtype=dtype)
        self.fused, self.ffn = c.fused, c.ffn
        if c.fused:
            self.w13 = nn.Linear(c.dim, 2 * c.ffn, **kw)  # gate (w1) rows first, then up (w3)
        else:
            self.w1, self.w3 = nn.Linear(c.dim, c.ffn, **kw), nn.Linear(c.dim, c.ffn, **kw)
        self.w2 = nn.Linear(c.ffn, c.dim, **kw)

    def forward(self, x, pos, cos, sin, mask):
        x = x + self.attn(self.attn_norm(x), pos, cos, sin, mask)
        h = self.mlp_norm(x)
        gate, up = self.w13(h).split(self.ffn, dim=-1) if self.fused else (self.w1(h), self.w3(h))
        return x + self.w2(F.silu(gate) * up)


def block_linears(blk: Block) -> list[tuple[nn.Module, str]]:
    """(owner, attribute) of every linear layer of a block."""
    attn = ["wqkv", "wo"] if blk.attn.fused else ["wq", "wk", "wv", "wo"]
    mlp = ["w13", "w2"] if blk.fused else ["w1", "w2", "w3"]
    return [(blk.attn, n) for n in attn] + [(blk, n) for n in mlp]


class Decoder(nn.Module):
    def __init__(self, c: Config, batch: int, device=None, dtype=torch.bfloat16):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.vocab, c.dim, device=device, dtype=dtype)
        self.blocks = nn.ModuleList(Block(c, batch, device, dtype) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.dim, device, dtype)
        self.head = nn.Linear(c.dim, c.vocab, bias=False, device=device, dtype=dtype)
        d = c.dim // c.n_heads
        inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
        ang = torch.arange(c.max_seq, device=device, dtype=torch.float32)[:, None] * inv[None, :]
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)

    def forward(self, tokens, pos):
        """tokens (B, S) at positions pos (S,) (a device tensor); returns logits (B, S, vocab)."""
        T = self.c.max_seq
        mask = (torch.arange(T, device=pos.device)[None, :] <= pos[:, None])[None, None]  # (1, 1, S, T)
        cos, sin = self.cos[pos], self.sin[pos]
        h = self.embed(tokens)
        for b in self.blocks:
            h = b(h, pos, cos, sin, mask)
        return self.head(self.norm(h))


def init_random(model: Decoder, seed: int = 0) -> None:
    g = torch.Generator(device=model.head.weight.device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                continue
            fan_in = p.shape[-1]
            p.copy_(torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32) / math.sqrt(fan_in))


def quantize_blocks(model: Decoder, fmt: str, seed: int = 0) -> None:
    """Swap the blocks' Linear layers for quipkern layers of format `fmt` holding random
    codes (2-bit: g = 128 scales; ternary: per-row scale, ternary-2bit layout; ternary-a8:
    the same weights with int8 activations, W1.58A8)."""
    from quipkern import QuipLinear, TernaryLinear
    from quipkern.formats import pack_ternary_2bit

    if fmt == "bf16":
        return
    if fmt not in FORMATS:
        raise ValueError(f"decode: format must be one of {FORMATS}; got {fmt!r}")
    g = torch.Generator(device="cpu").manual_seed(seed)
    for i, blk in enumerate(model.blocks):
        for owner, name in block_linears(blk):
            lin = getattr(owner, name)
            kw = dict(device=lin.weight.device, dtype=lin.weight.dtype)
            if fmt.startswith("2bit"):
                layer = QuipLinear(lin.in_features, lin.out_features, False, group_size=128,
                                   transform=fmt == "2bit", **kw)
                layer.packed.copy_(torch.randint(-2**31, 2**31 - 1, layer.packed.shape, generator=g, dtype=torch.int32))
                # code c of a row dequantizes to (c - 1.5)·s; s keeps rows at unit gain
                layer.scales.fill_(1.0 / math.sqrt(1.25 * lin.in_features))
            else:
                layer = TernaryLinear(lin.in_features, lin.out_features, False, layout="2bit",
                                      act_bits=8 if fmt == "ternary-a8" else None, **kw)
                trits = torch.randint(0, 3, (layer.packed.shape[0], layer.packed.shape[1] * 16), generator=g)
                layer.packed.copy_(pack_ternary_2bit(trits - 1))
                layer.scale.fill_(1.0 / math.sqrt(0.67 * lin.in_features))
            layer.init_signs(seed + i)
            setattr(owner, name, layer)


def linear_weight_bytes(model: Decoder) -> int:
    """Bytes of the blocks' linear weights as stored (codes, scales, signs)."""
    total = 0
    for blk in model.blocks:
        for owner, name in block_linears(blk):
            m = getattr(owner, name)
            total += sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))
    return total


@torch.no_grad()
def capture_step(model: Decoder, batch: int, tokens: int, compile: bool = False, graph: bool = True):
    """One decode step (embed -> blocks -> head -> argmax -> next token, writing token i
    of `out`) captured in a CUDA graph after a warm-up (compile, autotune) on a side
    stream.  Returns (replay, reset, out): reset() puts the token, position and caches
    back to the start, so that `tokens` replays decode from token 1 at position 0.
    graph=False (or a CPU model): replay is the (compiled) step itself."""
    device = model.head.weight.device
    tok = torch.ones(batch, 1, dtype=torch.long, device=device)
    pos = torch.zeros(1, dtype=torch.long, device=device)
    out = torch.zeros(batch, tokens, dtype=torch.long, device=device)
    step_i = torch.zeros(1, dtype=torch.long, device=device)

    def step():
        logits = model(tok, pos)
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.index_copy_(1, step_i, nxt)
        tok.copy_(nxt)
        pos.add_(1)
        step_i.add_(1)

    def reset():
        tok.fill_(1)
        pos.zero_()
        step_i.zero_()
        for blk in model.blocks:
            blk.attn.k_cache.zero_()
            blk.attn.v_cache.zero_()

    fn = torch.compile(step, fullgraph=True) if compile else step
    reset()
    if not graph or device.type != "cuda":
        return fn, reset, out
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    for _ in range(2):
        g.replay()
    reset()
    return g.replay, reset, out


@torch.no_grad()
def greedy(model: Decoder, batch: int, tokens: int, use_graph: bool = True, compile: bool = False):
    """Greedy decode of `tokens` tokens from token 1 at position 0; returns
    (generated (batch, tokens) long, seconds for the whole decode)."""
    device = model.head.weight.device
    replay, _, out = capture_step(model, batch, tokens, compile, graph=use_graph)
    if not use_graph or device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(tokens):
            replay()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(tokens):
        replay()
    end.record()
    end.synchronize()
    return out, start.elapsed_time(end) * 1e-3


def profile_steps(fmt: str, batch: int, cfg: Config, compile: bool, steps: int = 8, rows: int = 30) -> str:
    """Where a graph-replayed decode step of `fmt` spends its time: torch.profiler over
    `steps` replays, kernels sorted by device time, and the step's wall time against the
    sum of its kernels' times (the difference is gaps between kernels in the graph)."""
    torch.manual_seed(0)
    model = Decoder(cfg, batch, device="cuda")
    init_random(model)
    quantize_blocks(model, fmt)
    model.eval()
    replay, reset, _ = capture_step(model, batch, steps + 1, compile)
    replay()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            replay()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / steps
    events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.self_device_time_total for e in events) / steps  # us
    n_kernels = sum(e.count for e in events) / steps
    lines = [f"decode {fmt} batch {batch}, {cfg.n_layers} layers: {n_kernels:.0f} kernels a step, their device time "
             f"{busy:.1f} us a step; wall {wall * 1e6:.1f} us a step (profiler on)",
             f"{'us/step':>9} {'calls':>6}  kernel"]
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:rows]:
        lines.append(f"{e.self_device_time_total / steps:9.1f} {e.count / steps:6.0f}  {e.key[:110]}")
    del model
    torch.cuda.empty_cache()
    return "\n".join(lines)


def run(formats, batches, cfg: Config, tokens: int, compile: bool, progress=print) -> list[dict]:
    results = []
    for B in batches:
        base = None
        for fmt in formats:
            torch.manual_seed(0)
            model = Decoder(cfg, B, device="cuda")
            init_random(model)
            quantize_blocks(model, fmt)
            model.eval()
            gen, sec = greedy(model, B, tokens, use_graph=True, compile=compile)
            tps = B * tokens / sec
            base = tps if fmt == "bf16" else base
            row = dict(format=fmt, batch=B, tokens=tokens, layers=cfg.n_layers, fused=cfg.fused, seconds=sec,
                       ms_per_step=sec / tokens * 1e3, tokens_per_s=tps,
                       speedup_bf16=None if base is None else tps / base,
                       linear_weight_mb=linear_weight_bytes(model) / 2**20, compile=compile)
            results.append(row)
            sp = f"{row['speedup_bf16']:.2f}x" if row["speedup_bf16"] is not None else "-"
            progress(f"decode {fmt:<18} batch {B:>2}: {row['ms_per_step']:7.3f} ms/step  {tps:9.1f} tok/s  "
                     f"{sp:>7} vs bf16   linear weights {row['linear_weight_mb']:8.1f} MB")
            del model
            torch.cuda.empty_cache()
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--compile", dest="compile", action="store_true", default=True,
                    help="torch.compile(fullgraph=True) the step before capture (the default)")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="capture the eager step")
    ap.add_argument("--no-fuse", dest="fuse", action="store_false",
                    help="seven separate linears per block instead of fused q/k/v and gate/up")
    ap.add_argument("--json")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="instead of timing: torch.profiler over STEPS graph replays per format and batch")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("decode.py: needs a CUDA GPU (it times CUDA graphs).  On a CPU machine, "
                         "tests/test_bench.py checks this model's KV-cache decode against a full forward.")
    cfg = Config(n_layers=args.layers, max_seq=max(256, args.tokens + 1), fused=args.fuse)
    if args.profile:
        for B in [int(b) for b in args.batch.split(",")]:
            for fmt in args.formats.split(","):
                print(profile_steps(fmt, B, cfg, args.compile, args.profile), flush=True)
        return
    res = run(args.formats.split(","), [int(b) for b in args.batch.split(",")], cfg, args.tokens, args.compile)
    if args.json:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import rig

        with open(args.json, "w") as f:
            json.dump({"env": rig.environment(), "command": "python benchmarks/decode.py " + " ".join(argv or sys.argv[1:]),
                       "config": dataclasses.asdict(cfg), "rows": res}, f, indent=1)
    return res


if __name__ == "__main__":
    main()
