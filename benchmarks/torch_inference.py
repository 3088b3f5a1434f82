"""PyTorch inference: our translated ResNet-50 (plain and fused) against an eager
torchvision-style ResNet-50 holding the same weights, in one process; then the cost of importing
a ResNet-152 caffemodel into a module (fresh process: time and peak memory).

The reference is written here in torchvision's style (Bottleneck blocks, BatchNorm2d with its
affine weights) but with the Caffe release's layout -- stride on the first 1×1 convolution,
conv1 with a bias, ceil-mode max pooling -- so both compute the same function with the same
weights; the benchmark checks that before timing.

    python benchmarks/torch_inference.py [--repeat 15] [--batches 1,16]

On a CUDA machine it also times batch 64 in fp16 and bf16 with channels_last.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from prototxt_gen import generate
from prototxt_gen.caffe.weights import write_caffemodel
from prototxt_gen.backends.pytorch import to_torch
from tv_models import Bottleneck, ResNet
from weights import random_weights


class ResNet50(ResNet):
    """torchvision's modules (tests/tv_models.py) in the release's layout, ending in Softmax
    as the Caffe net does (its output is `prob`)."""

    def __init__(self):
        super().__init__(Bottleneck, [3, 4, 6, 3], msra=True)

    def forward(self, x):
        return torch.softmax(super().forward(x), 1)


def reference_from(net) -> ResNet50:
    """The torchvision-style model with the Caffe net's weights (BatchNorm statistics divided
    by the scale factor, gamma/beta from the Scale layers)."""
    model = ResNet50().eval()
    blobs = {layer.name: layer.blobs for layer in net.layers}

    def conv(module, name):
        module.weight.data = torch.from_numpy(blobs[name][0].copy())
        if module.bias is not None:
            module.bias.data = torch.from_numpy(blobs[name][1].copy())

    def bn(module, suffix):
        mean, var, s = blobs[f"bn{suffix}"]
        module.running_mean.data = torch.from_numpy(mean / s[0])
        module.running_var.data = torch.from_numpy(var / s[0])
        module.weight.data = torch.from_numpy(blobs[f"scale{suffix}"][0].copy())
        module.bias.data = torch.from_numpy(blobs[f"scale{suffix}"][1].copy())

    conv(model.conv1, "conv1")
    bn(model.bn1, "_conv1")
    for stage, layer in zip("2345", (model.layer1, model.layer2, model.layer3, model.layer4)):
        for k, block in enumerate(layer):
            unit = f"{stage}{'abcdef'[k]}"
            for conv_m, bn_m, branch in ((block.conv1, block.bn1, "2a"), (block.conv2,
                                         block.bn2, "2b"), (block.conv3, block.bn3, "2c")):
                conv(conv_m, f"res{unit}_branch{branch}")
                bn(bn_m, f"{unit}_branch{branch}")
            if block.downsample is not None:
                conv(block.downsample[0], f"res{unit}_branch1")
                bn(block.downsample[1], f"{unit}_branch1")
    conv(model.fc, "fc1000")
    return model


def throughput(models: dict, x: torch.Tensor, repeat: int) -> dict[str, float]:
    """Images per second, median of `repeat` timed runs each; the models take turns so that
    drift in the machine's speed affects all of them alike."""
    times = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(3):
                model(x)
        for _ in range(repeat):
            for name, model in models.items():
                if x.is_cuda:
                    torch.cuda.synchronize()
                t = time.perf_counter()
                model(x)
                if x.is_cuda:
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t)
    return {name: x.shape[0] / statistics.median(ts) for name, ts in times.items()}


# Peak RSS from /proc's VmHWM: ru_maxrss would include the forking parent's peak (Linux keeps
# it across exec).
IMPORT_CODE = """
import json, sys, time
import torch
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.caffe.weights import load_weights
from prototxt_gen.backends.pytorch import to_torch
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = hwm()
t = time.perf_counter()
net = read_prototxt(sys.argv[1])
load_weights(net, sys.argv[2])
model = to_torch(net)
elapsed = time.perf_counter() - t
after = hwm()
print(json.dumps({"seconds": elapsed, "rss_before_kb": before, "rss_peak_kb": after}))
"""


def import_cost(runs: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        net = random_weights(generate("resnet152"))
        prototxt, weights = Path(tmp) / "r152.prototxt", Path(tmp) / "r152.caffemodel"
        prototxt.write_text(net.to_prototxt())
        write_caffemodel(net, weights)
        size = weights.stat().st_size
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        results = []
        for _ in range(runs):
            out = subprocess.run([sys.executable, "-c", IMPORT_CODE, prototxt, weights],
                                 capture_output=True, text=True, env=env, check=True)
            results.append(json.loads(out.stdout))
    best = min(results, key=lambda r: r["seconds"])
    return {"file_mb": size / 1e6, "seconds": statistics.median(r["seconds"] for r in results),
            "rss_growth_mb": (best["rss_peak_kb"] - best["rss_before_kb"]) / 1e3,
            "rss_peak_mb": best["rss_peak_kb"] / 1e3, "rss_torch_mb": best["rss_before_kb"] / 1e3}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--batches", default="1,16")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs")

    net = random_weights(generate("resnet50"))
    models = {"reference": reference_from(net), "ours": to_torch(net),
              "ours fused": to_torch(net, fuse=True)}
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = models["reference"](x)
        for name in ("ours", "ours fused"):
            err = (models[name](x) - ref).abs().max().item()
            assert err <= 1e-4, f"{name} differs from the reference by {err}"

    devices = [("cpu", [int(b) for b in args.batches.split(",")], [torch.float32])]
    if torch.cuda.is_available():
        devices.append(("cuda", [1, 16, 64], [torch.float32, torch.float16, torch.bfloat16]))
    for device, batches, dtypes in devices:
        for dtype in dtypes:
            for batch in batches:
                if dtype != torch.float32 and batch != 64:
                    continue
                layout = torch.channels_last if dtype != torch.float32 else torch.contiguous_format
                moved = {k: m.to(device, dtype, memory_format=layout) for k, m in models.items()}
                xb = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype).to(
                    memory_format=layout)
                ips = throughput(moved, xb, args.repeat)
                base = ips["reference"]
                tag = f"{device} {str(dtype).split('.')[-1]}" + (
                    " channels_last" if layout == torch.channels_last else "")
                print(f"ResNet-50 {tag}, batch {batch}: reference {base:8.1f} img/s | "
                      + " | ".join(f"{k} {v:8.1f} img/s = {v / base:.3f}x"
                                   for k, v in ips.items() if k != "reference"))
                models = {k: m.to("cpu", torch.float32, memory_format=torch.contiguous_format)
                          for k, m in moved.items()}

    cost = import_cost()
    print(f"ResNet-152 import (read prototxt + load {cost['file_mb']:.1f} MB caffemodel + "
          f"build module), fresh process, median of 3: {cost['seconds']:.2f} s; peak RSS grows "
          f"by {cost['rss_growth_mb']:.0f} MB = {cost['rss_growth_mb'] / cost['file_mb']:.2f}x "
          f"the weights (whole process {cost['rss_peak_mb']:.0f} MB, of which "
          f"{cost['rss_torch_mb']:.0f} MB is Python + torch before the import)")


if __name__ == "__main__":
    main()
