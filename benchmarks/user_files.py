"""What handling real users' files costs, as ratios against baselines measured in the same run:

- `.pt2` export of the Kaiming ResNet-50 deploy file (declares batch 1): ours (example batch
  2, the batch left free) against a plain static torch.export of the same module at batch 1
  (what the old fallback produced, which refused any other batch);
- `convert --to onnx --verify` against `convert --to onnx` alone, with the file's weights
  and without (random weights, BatchNorm calibration and the float64 reference), each a
  fresh process as a user runs it.

    python benchmarks/user_files.py [--repeat 3]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("PROTOTXT_GEN_REFERENCE", ROOT.parent / "shared" / "reference"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from prototxt_gen.caffe.weights import write_caffemodel
from prototxt_gen.backends.pytorch import _export_dynamic, to_torch
from prototxt_gen.caffe.reader import read_prototxt
from weights import random_weights

DEPLOY = REFERENCE / "kaiming" / "ResNet-50-deploy.prototxt"


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "prototxt_gen", *map(str, args)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    warnings.simplefilter("ignore")
    module = to_torch(read_prototxt(DEPLOY))
    static = best(lambda: torch.export.export(module, (torch.zeros(1, 3, 224, 224),)),
                  args.repeat)
    ours = best(lambda: _export_dynamic(module), args.repeat)
    print(f"pt2 export, ResNet-50 (file batch 1): static at batch 1 {static[0]:.2f} s, "
          f"ours (batch free) {ours[0]:.2f} s: {ours[0] / static[0]:.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "w.caffemodel"
        write_caffemodel(random_weights(read_prototxt(DEPLOY)), weights)
        out = Path(tmp) / "m.onnx"
        rows = [("with the file's weights", ["--weights", weights]), ("without weights", [])]
        for label, extra in rows:
            plain = best(lambda: cli("convert", DEPLOY, *extra, "--to", "onnx", "-o", out),
                         args.repeat)
            checked = best(lambda: cli("convert", DEPLOY, *extra, "--to", "onnx", "-o", out,
                                       "--verify"), args.repeat)
            print(f"convert --to onnx, ResNet-50, {label}: {plain[0]:.2f} s; with --verify "
                  f"{checked[0]:.2f} s: {checked[0] / plain[0]:.2f}x")


if __name__ == "__main__":
    main()
