"""The seed's benchmark, side by side in one run: ResNet-152's forward pass (batch 32 by
default), timed as TF-slim's time_tensorflow_run does (warm-up batches, then mean ± sd per
batch), in

  - our PyTorch translation of `resnet152_tv` (torchvision's layout): plain, fused
    (BatchNorm/Scale folded), fused + channels_last, and fused + torch.compile;
  - onnxruntime running our ONNX translation;
  - torchvision's resnet152 structure, eager (tests/tv_models.py: torchvision's modules written
    out, as torchvision does not import beside this machine's CPU torch);
  - TF-slim's resnet_v2_152 computed in TensorFlow as a tf.function (tests/tf_reference.py's
    builder; in its own process, so TensorFlow and torch never share one).

    python benchmarks/seed.py [--batch 32] [--iterations 10] [--warmup 2] [--threads N]
                              [--device cpu|cuda] [--no-tf]

Every path gets the same threads and the same random input; ratios are against TensorFlow's
mean (and, for ours, torchvision's eager). Compile time is reported apart from the timed loop.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def stats(times):
    m = sum(times) / len(times)
    return m, math.sqrt(max(sum(t * t for t in times) / len(times) - m * m, 0.0))


def tf_child(args):
    """Runs in the child process: resnet_v2_152 as a tf.function; prints its times as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    from tf_reference import Builder
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if args.device == "cpu":
        tf.config.set_visible_devices([], "GPU")
    builder = Builder(tf, np.random.default_rng(0))
    x = tf.constant(np.random.default_rng(1).standard_normal(
        (args.batch, 224, 224, 3)).astype(np.float32))
    builder.resnet_v2(x[:1], "resnet_v2_152")  # creates the variables, eagerly
    forward = tf.function(lambda x: builder.resnet_v2(x, "resnet_v2_152"))
    times = []
    for i in range(args.warmup + args.iterations):
        start = time.perf_counter()
        forward(x).numpy()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps(times))


def tensorflow_times(args):
    cmd = [sys.executable, __file__, "--tf-child", "--batch", str(args.batch), "--iterations",
           str(args.iterations), "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--device", args.device]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"TensorFlow run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours_and_torchvision(args):
    import numpy as np
    import torch
    from prototxt_gen import generate
    from prototxt_gen.backends import bench
    from tv_models import torchvision_model
    torch.set_num_threads(args.threads)
    common = dict(batch=args.batch, iterations=args.iterations, warmup=args.warmup,
                  device=args.device)
    rows = {}
    for label, kwargs in (("ours, PyTorch plain", {}),
                          ("ours, PyTorch fused", {"fuse": True}),
                          ("ours, PyTorch fused + channels_last",
                           {"fuse": True, "channels_last": True}),
                          ("ours, PyTorch fused + torch.compile", {"fuse": True,
                                                                   "compile": True})):
        start = time.perf_counter()
        r = bench.bench_pytorch(generate("resnet152_tv"), **common, **kwargs)
        rows[label] = (r.times, time.perf_counter() - start - sum(r.times))
    if args.device == "cpu":
        r = bench.bench_onnxruntime(generate("resnet152_tv"), **common, threads=args.threads)
        rows["ours, onnxruntime"] = (r.times, None)
    model = torchvision_model("resnet152_tv").to(args.device)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(
        (args.batch, 3, 224, 224)).astype(np.float32)).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(args.warmup + args.iterations):
        start = time.perf_counter()
        with torch.inference_mode():
            model(x)
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    rows["torchvision resnet152, eager"] = (times, None)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-tf", action="store_true", help="leave TensorFlow out")
    p.add_argument("--tf-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tf_child:
        return tf_child(args)
    rows = {}
    if not args.no_tf:
        rows["TensorFlow resnet_v2_152, tf.function"] = (tensorflow_times(args), None)
    rows.update(ours_and_torchvision(args))
    tf_mean = stats(rows["TensorFlow resnet_v2_152, tf.function"][0])[0] if not args.no_tf \
        else None
    tv_mean = stats(rows["torchvision resnet152, eager"][0])[0]
    print(f"ResNet-152 forward, batch {args.batch}, {args.threads} threads, {args.device}, "
          f"{args.warmup} warm-up + {args.iterations} timed batches (mean +/- sd)")
    for label, (times, extra) in rows.items():
        m, sd = stats(times)
        ratio = f"  {tf_mean / m:5.2f}x TF" if tf_mean else ""
        ratio += f"  {tv_mean / m:5.2f}x torchvision" if label.startswith("ours") else ""
        setup = f"  (set-up {extra:.1f} s)" if extra and extra > 1 else ""
        print(f"  {label:<40} {m:7.3f} +/- {sd:.3f} s/batch  {args.batch / m:7.1f} img/s"
              f"{ratio}{setup}")


if __name__ == "__main__":
    main()
