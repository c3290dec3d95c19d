"""The benchmark programs on a CPU machine: the end-to-end decode model's KV-cache
decode matches a full forward, its quantized variants run, and the suite refuses to
time anything without a GPU, saying what to run instead."""

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)
import decode  # noqa: E402

TINY = decode.Config(dim=128, n_layers=2, n_heads=4, ffn=384, vocab=97, max_seq=16)


def _model(fmt="bf16", batch=2, dtype=torch.float32, fused=True):
    torch.manual_seed(0)
    m = decode.Decoder(dataclasses.replace(TINY, fused=fused), batch, device="cpu", dtype=dtype)
    decode.init_random(m)
    decode.quantize_blocks(m, fmt)
    return m.eval()


@torch.no_grad()
def test_cached_decode_matches_full_forward():
    m = _model()
    tokens = torch.randint(0, TINY.vocab, (2, 9))
    full = m(tokens, torch.arange(9))
    for blk in m.blocks:
        blk.attn.k_cache.zero_()
        blk.attn.v_cache.zero_()
    steps = [m(tokens[:, i : i + 1], torch.tensor([i]))[:, 0] for i in range(9)]
    step = torch.stack(steps, dim=1)
    assert ((step - full).norm() / full.norm()).item() < 1e-5
    # a causal mask: the first position does not see the later ones
    alone = m(tokens[:, :1], torch.arange(1))
    assert ((alone[:, 0] - full[:, 0]).norm() / full[:, 0].norm()).item() < 1e-5


@torch.no_grad()
def test_fused_projections_match_separate_ones():
    """The fused q/k/v and gate/up layers compute what the seven separate ones do, given
    the same weights stacked."""
    sep, fus = _model(fused=False), _model(fused=True)
    fus.load_state_dict({k: v for k, v in sep.state_dict().items() if "blocks" not in k}, strict=False)
    for bs, bf in zip(sep.blocks, fus.blocks):
        for name in ("attn_norm", "mlp_norm"):
            getattr(bf, name).load_state_dict(getattr(bs, name).state_dict())
        bf.attn.wqkv.weight.copy_(torch.cat([bs.attn.wq.weight, bs.attn.wk.weight, bs.attn.wv.weight]))
        bf.attn.wo.weight.copy_(bs.attn.wo.weight)
        bf.w13.weight.copy_(torch.cat([bs.w1.weight, bs.w3.weight]))
        bf.w2.weight.copy_(bs.w2.weight)
        assert len(decode.block_linears(bf)) == 4 and len(decode.block_linears(bs)) == 7
    tokens = torch.randint(0, TINY.vocab, (2, 6))
    a, b = sep(tokens, torch.arange(6)), fus(tokens, torch.arange(6))
    assert ((a - b).norm() / a.norm()).item() < 1e-5


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("fmt", decode.FORMATS)
def test_greedy_decode_runs_for_every_format(fmt, fused):
    m = _model(fmt, dtype=torch.float32, fused=fused)
    out, sec = decode.greedy(m, 2, 5, use_graph=False)
    assert out.shape == (2, 5) and out.dtype == torch.long and sec > 0
    assert int(out.min()) >= 0 and int(out.max()) < TINY.vocab
    if fmt != "bf16":
        assert decode.linear_weight_bytes(m) < decode.linear_weight_bytes(_model("bf16")) / 4
    # the same tokens a step-by-step forward picks
    m2 = _model(fmt, dtype=torch.float32, fused=fused)
    tok, ref = torch.ones(2, 1, dtype=torch.long), []
    for i in range(5):
        tok = m2(tok, torch.tensor([i]))[:, -1].argmax(-1, keepdim=True)
        ref.append(tok)
    assert torch.equal(out, torch.cat(ref, dim=1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
@pytest.mark.parametrize("script", ["bench.py", "decode.py"])
def test_suite_explains_itself_without_a_gpu(script):
    r = subprocess.run([sys.executable, os.path.join(BENCH, script)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "needs a CUDA GPU" in r.stderr or "no CUDA GPU" in r.stderr
    assert "tests" in r.stderr


def test_bench_rejects_unknown_ops_and_models():
    import bench

    with pytest.raises(SystemExit, match="unknown op"):
        bench.main(["--ops", "4bit"])
    with pytest.raises(SystemExit, match="unknown model"):
        bench.shapes_of(["gpt-5"])
    assert bench.shapes_of(["llama2-7b", "llama3-8b"])[:4] == [(4096, 4096), (11008, 4096), (4096, 11008), (1024, 4096)]


@pytest.mark.parametrize("op", ["2bit", "2bit-notransform", "ternary-2bit", "ternary-base3", "ternary-a8"])
def test_suite_weights_are_what_it_counts_and_computes(op):
    """The suite's weight sets hold exactly the bytes it divides by, and its call computes
    the layer it names (against the dense dequantized weight where there is no transform)."""
    import bench
    from quipkern.formats import dequantize_2bit, dequantize_ternary

    torch.manual_seed(0)
    N, K, M = 64, 256, 3
    sets, nbytes, fn = bench._weights(op, N, K, 1, device="cpu")
    assert nbytes == sum(t.numel() * t.element_size() for t in sets[0])
    x = torch.randn(M, K)
    y = fn(x, *sets[0]).double()
    assert y.shape == (M, N) and torch.isfinite(y).all()
    if op == "2bit":
        return  # both transforms: the op's own tests compare it with the reference
    packed, s = sets[0]
    W = dequantize_2bit(packed, s) if op.startswith("2bit") else dequantize_ternary(packed, s, K)
    ref = x.double() @ W.double().T
    tol = 2e-2 if op == "ternary-a8" else 1e-5  # int8 activations round x per token
    assert ((y - ref).norm() / ref.norm()).item() < tol


def test_profile_layer_names_the_ops_of_a_call():
    """benchmarks/profile_layer.py (a profile of one layer's calls) runs on the CPU path too."""
    import profile_layer

    table = profile_layer.main(["--op", "ternary-a8", "--shape", "64x128", "--m", "5", "--calls", "2",
                                "--dtype", "bfloat16", "--device", "cpu"])
    assert "quipkern::linear_ternary_a8" in table and "quipkern::matmul_ternary_int8" in table
