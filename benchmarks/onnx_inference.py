"""ONNX: onnxruntime running our ResNet-50 model against onnxruntime running torch.onnx.export
of the PyTorch translation of the same net (same weights, same session options), in one process;
then the time to export a ResNet-152 with its weights, ours against torch.onnx.export.

    python benchmarks/onnx_inference.py [--repeat 40] [--batches 1,16] [--large]

The baseline is the exporter PyTorch users reach for: torch.onnx.export of the module our
PyTorch translator builds (TorchScript-based, dynamo=False: the dynamo exporter needs the
onnxscript package; it is timed too when that is installed). Both models take the same random
input and must agree before anything is timed. On a machine where onnxruntime has the CUDA
provider (onnxruntime-gpu), both models are timed on it too, batch 1, 16 and 64. --large also
converts a synthetic 2.2 GB net (a 550,000×1,000 InnerProduct), which goes to external data.
"""
import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from prototxt_gen import generate
from prototxt_gen.caffe.weights import write_caffemodel
from prototxt_gen.graph.net import Net
from prototxt_gen.backends.onnx import save_onnx, to_onnx
from prototxt_gen.backends.pytorch import to_torch
from weights import random_weights


def torch_export(net, opset: int = 17, dynamo: bool = False) -> bytes:
    """torch.onnx.export of our PyTorch translation, dynamic batch, as a user would call it."""
    model = to_torch(net)
    x = torch.randn(*net.inputs[0].shape)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset,
                                        input_names=["data"],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
            program.save(f)
        else:
            torch.onnx.export(model, (x,), f, dynamo=False, opset_version=opset,
                              input_names=["data"], output_names=list(model.output_names),
                              dynamic_axes={"data": {0: "batch"}})
    return f.getvalue()


def options(optimized_path: str | None = None) -> ort.SessionOptions:
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.intra_op_num_threads = os.cpu_count() or 1
    o.log_severity_level = 3
    # Sessions take turns: a previous session's pool spinning after its run would steal the
    # cores from the next one.
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path:
        o.optimized_model_filepath = optimized_path
    return o


def sessions(models: dict[str, bytes], provider: str) -> dict[str, ort.InferenceSession]:
    return {name: ort.InferenceSession(m, options(), providers=[provider])
            for name, m in models.items()}


def optimized_ops(model: bytes) -> str:
    """The model's operators once onnxruntime (CPU) has optimized it, counted."""
    import collections

    import onnx
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(model, options(path), providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load(path).graph.node)
    return ", ".join(f"{n} {op}" for op, n in sorted(ops.items(), key=lambda kv: -kv[1]))


def throughput(runs: dict[str, ort.InferenceSession], x: np.ndarray, repeat: int):
    """Images per second, median of `repeat` timed runs each; the models take turns so that
    drift in the machine's speed affects all of them alike."""
    feeds = {name: {s.get_inputs()[0].name: x} for name, s in runs.items()}
    for name, s in runs.items():
        for _ in range(3):
            s.run(None, feeds[name])
    times = {name: [] for name in runs}
    for _ in range(repeat):
        for name, s in runs.items():
            t = time.perf_counter()
            s.run(None, feeds[name])
            times[name].append(time.perf_counter() - t)
    return {name: x.shape[0] / statistics.median(ts) for name, ts in times.items()}


def export_times(runs: int = 3) -> dict:
    """ResNet-152 with weights: our CLI (fresh process, from the files) against
    torch.onnx.export (the module already built, so only the export is counted)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        net = random_weights(generate("resnet152"))
        prototxt, weights = tmp / "r152.prototxt", tmp / "r152.caffemodel"
        prototxt.write_text(net.to_prototxt())
        write_caffemodel(net, weights)
        out["file_mb"] = weights.stat().st_size / 1e6
        os.sync()  # the caffemodel's writeback must not slow the timed conversions
        cli = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "prototxt_gen", "convert", prototxt,
                            "--weights", weights, "--to", "onnx", "-o", tmp / "r152.onnx"],
                           check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            cli.append(time.perf_counter() - t)
        out["cli"] = statistics.median(cli)
        api = []
        for _ in range(runs):
            t = time.perf_counter()
            save_onnx(net, tmp / "api.onnx")
            api.append(time.perf_counter() - t)
        out["api"] = statistics.median(api)
        model = to_torch(net)
        x = torch.randn(1, 3, 224, 224)
        theirs = []
        for _ in range(runs):
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), tmp / "torch.onnx", dynamo=False, opset_version=17,
                                  input_names=["data"], dynamic_axes={"data": {0: "batch"}})
            theirs.append(time.perf_counter() - t)
        out["torch"] = statistics.median(theirs)
    return out


def large_export() -> dict:
    """A 2.2 GB net (weights over protobuf's 2 GiB): converted to model + external data."""
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        tmp = Path(tmp)
        net = Net("big_ip")
        net.add_input("data", (1, 1000))
        net.add_layer("InnerProduct", "fc", "data", inner_product_param=dict(num_output=550_000))
        rng = np.random.default_rng(0)
        weight = rng.standard_normal((550_000, 1000), np.float32)
        weight *= 0.03
        net.layers[0].blobs = [weight, np.zeros(550_000, np.float32)]
        write_caffemodel(net, tmp / "big.caffemodel")
        (tmp / "big.prototxt").write_text(net.to_prototxt())
        size = (tmp / "big.caffemodel").stat().st_size
        os.sync()  # the caffemodel's writeback must not slow the timed conversion
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "prototxt_gen", "convert", tmp / "big.prototxt",
                        "--weights", tmp / "big.caffemodel", "--to", "onnx",
                        "-o", tmp / "big.onnx"], check=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
        seconds = time.perf_counter() - t
        s = ort.InferenceSession(str(tmp / "big.onnx"), providers=["CPUExecutionProvider"])
        x = rng.standard_normal((1, 1000), np.float32)
        got = s.run(None, {"data": x})[0]
        ref = x @ weight[-5:].T
        assert np.abs(got[0, -5:] - ref[0]).max() < 1e-3
        return {"gb": size / 1e9, "seconds": seconds,
                "model_kb": (tmp / "big.onnx").stat().st_size / 1e3,
                "data_gb": (tmp / "big.onnx.data").stat().st_size / 1e9}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--large", action="store_true")
    args = ap.parse_args()
    print(f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())}), "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs")

    net = random_weights(generate("resnet50"))
    models = {"torch.onnx.export": torch_export(net),
              "ours": to_onnx(net).SerializeToString(),
              "ours fused": to_onnx(net, fuse=True).SerializeToString()}
    try:
        import onnxscript  # noqa: F401
        models["torch.onnx.export dynamo"] = torch_export(net, 18, dynamo=True)
    except ImportError:
        pass

    for name, m in models.items():
        print(f"{name}: {len(m) / 1e6:.1f} MB; after onnxruntime's optimizations: "
              f"{optimized_ops(m)}")

    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        providers.append("CUDAExecutionProvider")
    rng = np.random.default_rng(0)
    for provider in providers:
        runs = sessions(models, provider)
        x = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
        ref = runs["torch.onnx.export"].run(None, {"data": x})[0]
        for name, s in runs.items():
            got = s.run(None, {s.get_inputs()[0].name: x})[0]
            err = float(np.abs(got - ref).max())
            assert err <= 1e-4, f"{name} differs from torch.onnx.export's model by {err}"
        batches = [int(b) for b in args.batches.split(",")]
        if provider == "CUDAExecutionProvider":
            batches = [1, 16, 64]
        for batch in batches:
            xb = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
            ips = throughput(runs, xb, args.repeat)
            base = ips["torch.onnx.export"]
            print(f"ResNet-50 {provider}, batch {batch}: torch.onnx.export {base:8.1f} img/s | "
                  + " | ".join(f"{k} {v:8.1f} img/s = {v / base:.3f}x"
                               for k, v in ips.items() if k != "torch.onnx.export"))

    t = export_times()
    print(f"ResNet-152 export with weights ({t['file_mb']:.1f} MB): prototxt-gen convert --to "
          f"onnx, fresh process (read, load weights, translate, check, write), median of 3: "
          f"{t['cli']:.2f} s; save_onnx in process {t['api']:.2f} s; torch.onnx.export of the "
          f"built module {t['torch']:.2f} s (ours in process = {t['api'] / t['torch']:.2f}x its "
          f"time)")
    if args.large:
        big = large_export()
        print(f"{big['gb']:.2f} GB caffemodel -> ONNX with external data, fresh process: "
              f"{big['seconds']:.1f} s (model {big['model_kb']:.1f} kB + data "
              f"{big['data_gb']:.2f} GB; onnxruntime loads it and agrees)")


if __name__ == "__main__":
    main()
