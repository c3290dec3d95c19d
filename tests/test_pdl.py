"""On the GPU: programmatic dependent launch (csrc/launch.cuh) changes when kernels
start, never what they compute.  A stack of transformed 2-bit layers at decode sizes
(each layer's x is the previous layer's T_out output, so every GEMV depends on the
kernel right before it) gives bit-identical results with PDL on and off (QUIPKERN_PDL=0),
eagerly and replayed from a CUDA graph.  Each setting runs in a fresh interpreter, as
the variable is read once per process."""

import subprocess
import sys
import textwrap

import pytest
import torch

from quipkern import _ext

from .utils import HAS_CUDA

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not HAS_CUDA or not _ext.AVAILABLE, reason="needs a GPU and the CUDA extension")]

SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from torch import nn
    from quipkern import QuipLinear
    torch.manual_seed(0)
    layers = [QuipLinear.from_linear(nn.Linear(k, n, device="cuda"), group_size=g, asymmetric=a)
              for k, n, g, a in [(4096, 4096, 128, False), (4096, 11008, 64, True), (11008, 4096, 128, False),
                                 (4096, 8192, 128, False), (8192, 4096, -1, False)] * 2]
    model = nn.Sequential(*layers).to(torch.bfloat16)
    outs = []
    with torch.no_grad():
        for M in (1, 3, 16):
            x = torch.randn(M, 4096, device="cuda", dtype=torch.bfloat16)
            outs.append(model(x))  # eager: back-to-back launches, no sync between layers
            static_x = x.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                model(static_x)
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_y = model(static_x)
            for _ in range(3):
                static_x.copy_(torch.randn_like(x))
                graph.replay()
                outs.append(static_y.clone())
    torch.cuda.synchronize()
    torch.save([o.cpu() for o in outs], sys.argv[1])
""")


def _run(tmp_path, pdl: str):
    path = tmp_path / f"out_pdl{pdl}_{len(list(tmp_path.iterdir()))}.pt"
    env = {**__import__("os").environ, "QUIPKERN_PDL": pdl}
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return torch.load(path)


def test_pdl_on_and_off_give_identical_results(tmp_path):
    on, off = _run(tmp_path, "1"), _run(tmp_path, "0")
    assert len(on) == len(off) == 12
    report = []
    for i, (a, b) in enumerate(zip(on, off)):
        a, b = a.double(), b.double()
        rel = float((a - b).norm() / b.norm())
        report.append(f"output {i}: finite={bool(torch.isfinite(a).all())} equal={torch.equal(a, b)} rel diff {rel:.3g}")
    assert all(" equal=True" in r and "finite=True" in r for r in report), "\n".join(report)
