"""Checks and timings for a machine with a CUDA GPU and torchvision (the device machine; CI
has no GPU). Writes a JSON report and prints a summary.

    python benchmarks/gpu_check.py OUT.json [--iterations 50] [--warmup 10]

1. torchvision itself: for resnet18/50, resnext50_32x4d and wide_resnet50_2, torchvision's own
   model and tests/tv_models.py's have the same state_dict keys and shapes and, given the same
   weights, the same output (tests/test_torchvision_import.py checks this on the CPU too);
   that state_dict converted with `prototxt-gen convert MODEL --state-dict` gives
   torchvision's output through our PyTorch translation on the GPU.
2. ResNet-152 (resnet152_tv) forward on the GPU, batch 32 and 1: our module plain, fused,
   fused + channels_last, fused + torch.compile, against torchvision's resnet152 eager.
3. The VGG16 SSD300 detector's module on the GPU gives the CPU module's detections.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np
import torch

from prototxt_gen import generate, load_weights, read_prototxt, write_caffemodel
from prototxt_gen.backends import bench
from prototxt_gen.backends.pytorch import to_torch

TORCHVISION = ("resnet18_tv", "resnet50_tv", "resnext50_32x4d", "wide_resnet50_2")


def check_torchvision(report):
    from tv_models import import_torchvision, torchvision_model
    report["torchvision"] = {"version": import_torchvision().__version__, "nets": {}}
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 224, 224))
                         .astype(np.float32))
    for name in TORCHVISION:
        ours = torchvision_model(name)
        real = torchvision_model(name, real=True)
        state = ours.state_dict()
        same_keys = [(k, tuple(v.shape)) for k, v in real.state_dict().items()] == \
            [(k, tuple(v.shape)) for k, v in state.items()]
        real.load_state_dict(state)
        with torch.inference_mode():
            ref = real(x).numpy()
            structure = float(np.abs(ours(x).numpy() - ref).max())
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(real.state_dict(), f"{tmp}/tv.pth")
            done = subprocess.run(
                [sys.executable, "-m", "prototxt_gen", "convert", name, "--state-dict",
                 f"{tmp}/tv.pth", "--to", "caffemodel", "-o", f"{tmp}/m.caffemodel"],
                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            assert done.returncode == 0, done.stderr
            net = generate(name)
            load_weights(net, f"{tmp}/m.caffemodel", strict=True)
        model = to_torch(net).cuda()
        with torch.inference_mode():
            got = model.blobs(x.cuda(), names=["fc1000"])["fc1000"].cpu().numpy()
        bound = 1e-4 * max(1.0, float(np.abs(ref).max()))
        report["torchvision"]["nets"][name] = {
            "same_state_dict_keys_and_shapes": same_keys, "structure_max_diff": structure,
            "imported_on_gpu_max_diff": float(np.abs(got - ref).max()), "bound": bound}
        print(f"{name}: keys {'match' if same_keys else 'DIFFER'}, tv_models vs torchvision "
              f"{structure:.2e}, imported caffemodel on GPU vs torchvision "
              f"{np.abs(got - ref).max():.2e} (bound {bound:.2e})", flush=True)


def gpu_times(report, iterations, warmup):
    from tv_models import torchvision_model
    report["resnet152"] = {}
    for batch in (32, 1):
        rows = {}
        for label, kw in (("plain", {}), ("fused", {"fuse": True}),
                          ("fused+channels_last", {"fuse": True, "channels_last": True}),
                          ("fused+compile", {"fuse": True, "compile": True})):
            start = time.perf_counter()
            r = bench.bench_pytorch(generate("resnet152_tv"), batch=batch,
                                    iterations=iterations, warmup=warmup, device="cuda", **kw)
            rows[label] = {"mean_s": r.mean, "sd_s": r.sd, "images_per_s": r.images_per_s,
                           "setup_s": time.perf_counter() - start - sum(r.times)}
        model = torchvision_model("resnet152_tv", real=True).cuda()
        x = torch.randn(batch, 3, 224, 224, device="cuda")

        def run():
            with torch.inference_mode():
                model(x)
        m = bench.mean_sd(bench.time_runs(run, iterations, warmup, torch.cuda.synchronize))[0]
        rows["torchvision eager"] = {"mean_s": m, "images_per_s": batch / m}
        report["resnet152"][f"batch{batch}"] = rows
        for label, row in rows.items():
            print(f"resnet152 batch {batch} {label:<22} {row['mean_s'] * 1000:8.2f} ms  "
                  f"{row['images_per_s']:8.1f} img/s  "
                  f"{m / row['mean_s']:.2f}x torchvision", flush=True)


def check_ssd(report):
    from weights import random_weights
    path = ROOT / "tests" / "data" / "weiliu89_VGG_VOC0712_SSD_300x300_deploy.prototxt"
    net = random_weights(read_prototxt(path))
    for layer in net.layers:
        if layer.name.endswith("_mbox_conf"):
            layer.blobs = [b * np.float32(3) for b in layer.blobs]
    with tempfile.TemporaryDirectory() as tmp:
        write_caffemodel(net, f"{tmp}/m.caffemodel")
        net = read_prototxt(path)
        load_weights(net, f"{tmp}/m.caffemodel", strict=True)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 300, 300))
                         .astype(np.float32))
    model = to_torch(net)
    with torch.inference_mode():
        cpu = model(x).numpy()
        gpu = model.cuda()(x.cuda()).cpu().numpy()
    same = cpu.shape == gpu.shape
    diff = float(np.abs(cpu - gpu).max()) if same else None
    report["ssd_gpu"] = {"detections": int(cpu.shape[2]), "same_shape": same, "max_diff": diff}
    print(f"VGG SSD300 batch 2: {cpu.shape[2]} detections on CPU, GPU "
          f"{'same count' if same else 'DIFFERENT count'}, max diff {diff}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    args = p.parse_args(argv)
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    print(report, flush=True)
    for step in (lambda: check_torchvision(report), lambda: check_ssd(report),
                 lambda: gpu_times(report, args.iterations, args.warmup)):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 -- a report with what failed beats none
            report.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}")
            print("FAILED:", type(exc).__name__, exc, flush=True)
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
