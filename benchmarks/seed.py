"""The seed's benchmark, side by side in one run: ResNet-152's forward pass (batch 32 by
default), timed as TF-slim's time_tensorflow_run does (warm-up batches, then mean ± sd per
batch), in

  - our PyTorch translation of `resnet152_tv` (torchvision's layout): plain, fused
    (BatchNorm/Scale folded), fused + channels_last, that + torch.compile (Inductor with
    freezing), and fused + channels_last in bfloat16 (its deviation from float32 reported);
  - onnxruntime running our ONNX translation;
  - torchvision's resnet152, eager (torchvision's own model; where torchvision is not
    installed, tests/tv_models.py's transcription of it, which computes the same);
  - TF-slim's resnet_v2_152 computed in TensorFlow as a tf.function (tests/tf_reference.py's
    builder; in its own process, so TensorFlow and torch never share one);
  - and, as the same network TensorFlow runs, our translation of `resnet152_v2` (TF-slim's
    layout: 10.91 G multiply-adds per image against resnet152_tv's 11.51 G) in onnxruntime and
    compiled PyTorch.

    python benchmarks/seed.py [--batch 32] [--iterations 10] [--warmup 2] [--threads N]
                              [--device cpu|cuda] [--no-tf] [--keep-memory] [--run-length K]

Every path gets the same threads and the same random input, and the paths take turns, one
batch each per round, so that a machine whose speed drifts slows them alike. Ratios are
against TensorFlow's mean (and, for ours, torchvision's eager); compile time is reported apart.

Each path's arithmetic rate (2 x multiply-adds x batch / seconds) is set against the
machine's attainable float32 peak, measured in the same run as the best of oneDNN's 3x3
convolutions on large batches (which run at the hardware's FMA limit); the last lines say what
rate a given multiple of TensorFlow's speed would need, so a target above the peak shows.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from prototxt_gen.backends.bench import mean_sd  # noqa: E402 - after the path is set


PEAK_SHAPES = ((32, 256, 28), (32, 512, 14), (32, 256, 14))  # batch, channels, side


def attainable_peak(threads: int) -> float:
    """The best float32 GFLOP/s of oneDNN's 3x3 convolutions (channels_last, no bias, batch 32):
    the rate a convolution network's forward pass cannot beat on this machine without doing
    less arithmetic (Winograd, FFT)."""
    import torch
    torch.set_num_threads(threads)
    best = 0.0
    with torch.inference_mode():
        for n, c, side in PEAK_SHAPES:
            x = torch.randn(n, c, side, side).contiguous(memory_format=torch.channels_last)
            conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).eval().to(
                memory_format=torch.channels_last)
            conv(x)
            for _ in range(3):
                start = time.perf_counter()
                conv(x)
                best = max(best, 2 * 9 * n * side * side * c * c
                           / (time.perf_counter() - start) / 1e9)
    return best


def macs_per_image(name: str) -> int:
    from prototxt_gen import generate
    from prototxt_gen.view.info import analyze
    return analyze(generate(name)).totals["macs"]


def tf_child(args):
    """The child process: resnet_v2_152 as a tf.function, run once per line read from stdin;
    each run's seconds printed back (the parent interleaves it with the other paths)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    from tf_reference import Builder
    if args.keep_memory:
        from prototxt_gen.backends.bench import keep_freed_memory
        keep_freed_memory()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if args.device == "cpu":
        tf.config.set_visible_devices([], "GPU")
    builder = Builder(tf, np.random.default_rng(0))
    x = tf.constant(np.random.default_rng(1).standard_normal(
        (args.batch, 224, 224, 3)).astype(np.float32))
    builder.resnet_v2(x[:1], "resnet_v2_152")  # creates the variables, eagerly
    @tf.function(autograph=False)
    def forward(x):
        return builder.resnet_v2(x, "resnet_v2_152")
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        forward(x).numpy()
        print(time.perf_counter() - start, flush=True)


class TensorFlowRunner:
    """One batch in the TensorFlow child per call; the time is the child's own."""

    def __init__(self, args):
        cmd = [sys.executable, __file__, "--tf-child", "--batch", str(args.batch),
               "--threads", str(args.threads), "--device", args.device] + (
            ["--keep-memory"] if args.keep_memory else [])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the TensorFlow child failed to start")

    def __call__(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def runners(args):
    """label -> a function that runs one batch and returns its seconds; and the bfloat16
    path's largest deviation from float32 (relative to the largest float32 output)."""
    import numpy as np
    import torch
    from prototxt_gen import generate
    from prototxt_gen.backends.bench import pytorch_model
    from prototxt_gen.backends.onnx import to_onnx
    from tv_models import torchvision_model
    from weights import random_weights
    torch.set_num_threads(args.threads)
    net = random_weights(generate("resnet152_tv"))  # of a trained net's scale: the bfloat16
    # deviation means something (placeholders would make every output a constant)
    x = np.random.default_rng(1).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def timed(model, inp):
        def run():
            start = time.perf_counter()
            with torch.inference_mode():
                model(inp)
            sync()
            return time.perf_counter() - start
        return run
    out, outputs = {}, {}
    for label, kw in (("ours, PyTorch plain", {}),
                      ("ours, PyTorch fused", {"fuse": True}),
                      ("ours, PyTorch fused + channels_last", {"fuse": True,
                                                               "channels_last": True}),
                      ("ours, PyTorch fused + channels_last + compile", {
                          "fuse": True, "channels_last": True, "compile": True}),
                      ("ours, PyTorch fused + channels_last, bfloat16", {
                          "fuse": True, "channels_last": True, "dtype": "bfloat16"})):
        model, _, convert = pytorch_model(net, device=args.device, **kw)
        inp = convert(x)
        start = time.perf_counter()
        with torch.inference_mode():
            outputs[label] = model(inp).float().cpu().numpy()
        if kw.get("compile"):
            print(f"(torch.compile with freezing: {time.perf_counter() - start:.1f} s to "
                  "compile)", flush=True)
        out[label] = timed(model, inp)
    ref = outputs["ours, PyTorch fused"]
    bf16 = outputs["ours, PyTorch fused + channels_last, bfloat16"]
    deviation = float(np.abs(bf16 - ref).max() / max(np.abs(ref).max(), 1e-12))
    def onnxruntime(net):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(to_onnx(net).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])

        def run():
            start = time.perf_counter()
            session.run(None, {"data": x})
            return time.perf_counter() - start
        return run
    if args.device == "cpu":
        out["ours, onnxruntime"] = onnxruntime(net)
    tv = torchvision_model("resnet152_tv", real=True) or torchvision_model("resnet152_tv")
    out["torchvision resnet152, eager"] = timed(tv.to(args.device),
                                                torch.from_numpy(x).to(args.device))
    # TensorFlow's own network, translated from our resnet152_v2 (pre-activation: its
    # BatchNorms sit before ReLU and convolution, so none folds into a convolution)
    v2 = random_weights(generate("resnet152_v2"))
    model, _, convert = pytorch_model(v2, device=args.device, fuse=True, channels_last=True,
                                      compile=True)
    inp = convert(x)
    with torch.inference_mode():
        model(inp)
    out["ours resnet152_v2, fused + channels_last + compile"] = timed(model, inp)
    if args.device == "cpu":
        out["ours resnet152_v2, onnxruntime"] = onnxruntime(v2)
    return out, deviation


def net_of(label: str) -> str:
    """Which network a path runs: TensorFlow's and our resnet152_v2 paths the
    pre-activation one, the others torchvision's layout."""
    return "v2" if label.startswith("TensorFlow") or "resnet152_v2" in label else "tv"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-tf", action="store_true", help="leave TensorFlow out")
    p.add_argument("--run-length", type=int, default=1, metavar="K",
                   help="batches each path runs in a row per round, the first untimed "
                        "(default 1: one timed batch per path per round)")
    p.add_argument("--keep-memory", action="store_true",
                   help="every path (TensorFlow's process too) keeps freed memory for reuse "
                        "(bench.keep_freed_memory)")
    p.add_argument("--tf-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tf_child:
        return tf_child(args)
    if args.keep_memory:
        from prototxt_gen.backends.bench import keep_freed_memory
        assert keep_freed_memory(), "--keep-memory needs glibc"
    peak = attainable_peak(args.threads) if args.device == "cpu" else None
    macs = {"tv": macs_per_image("resnet152_tv"), "v2": macs_per_image("resnet152_v2")}
    paths = {}
    tf_runner = None
    if not args.no_tf:
        tf_runner = TensorFlowRunner(args)
        paths["TensorFlow resnet_v2_152, tf.function"] = tf_runner
    timed_paths, deviation = runners(args)
    paths.update(timed_paths)
    # Interleaved rounds, each path once per round: a machine whose speed drifts (shared
    # cores, clocks) then slows every path alike instead of whichever ran last. With
    # --run-length K, a path runs K batches in a row per round, the first untimed: it finds
    # the caches full of the previous path's weights, which the seed's consecutive batches
    # never do.
    rows = {label: [] for label in paths}
    timed = max(args.run_length - 1, 1)
    for i in range(args.warmup + -(-args.iterations // timed)):
        for label, run in paths.items():
            if args.run_length > 1:
                run()
            for _ in range(timed):
                t = run()
                if i >= args.warmup and len(rows[label]) < args.iterations:
                    rows[label].append(t)
    if tf_runner is not None:
        tf_runner.close()
    tf_mean = mean_sd(rows["TensorFlow resnet_v2_152, tf.function"])[0] if tf_runner else None
    tv_mean = mean_sd(rows["torchvision resnet152, eager"])[0]
    print(f"ResNet-152 forward, batch {args.batch}, {args.threads} threads, {args.device}, "
          f"{args.warmup} warm-up + {args.iterations} timed batches each, interleaved"
          f"{f' in runs of {args.run_length} (the first untimed)' if args.run_length > 1 else ''}"
          f"{', freed memory kept by every path' if args.keep_memory else ''} (mean +/- sd)")
    if peak:
        peak = max(peak, attainable_peak(args.threads))  # before and after the rounds
    for label, times in rows.items():
        m, sd = mean_sd(times)
        ratio = f"  {tf_mean / m:5.2f}x TF" if tf_mean else ""
        ratio += f"  {tv_mean / m:5.2f}x torchvision" if label.startswith("ours") else ""
        rate = 2 * macs[net_of(label)] * args.batch / m / 1e9
        ratio += f"  {rate:4.0f} GFLOP/s" + (f" ({rate / peak:4.0%} of peak)" if peak else "")
        print(f"  {label:<52} {m:7.3f} +/- {sd:.3f} s/batch  {args.batch / m:7.1f} img/s"
              f"{ratio}")
    print(f"(bfloat16: its outputs differ from float32's by up to {deviation:.2%} of the "
          "largest output; every other path computes in float32)")
    if peak:
        print(f"attainable float32 peak here: {peak:.0f} GFLOP/s (the best of oneDNN's 3x3 "
              "convolutions, measured before and after the rounds)")
    if peak and tf_mean:
        tf_rate = 2 * macs["v2"] * args.batch / tf_mean / 1e9
        for target in (1.0, 1.5):
            print(f"  {target:.1f}x TensorFlow's speed on resnet_v2_152 needs "
                  f"{target * tf_rate:.0f} GFLOP/s = {target * tf_rate / peak:.0%} of that peak")


if __name__ == "__main__":
    main()
