"""Timing a net's forward pass in a back end, as the seed's `time_tensorflow_run` does it: a
number of warm-up batches, then `iterations` timed batches, reported as the mean ± standard
deviation per batch (the population deviation, sqrt(E[t²] - E[t]²), as that function
computes it) and images per second; optionally each layer's share, as `caffe time` gives it.

PyTorch runs the translated module (plain, `fuse`d, `compile`d with torch.compile, in
channels_last); onnxruntime the translated ONNX model. Per-layer times come from the module's
timed forward (a clock call after each layer; CUDA synchronized at each) or from onnxruntime's
profiler (each node's kernel time, given to the layer whose name the node carries)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import NetError
from ..graph.net import Net, net_inputs
from ..graph.placeholders import fill_placeholders
from .inference import for_inference


def mean_sd(times: list[float]) -> tuple[float, float]:
    """The mean and the population deviation, sqrt(E[t²] - E[t]²), as time_tensorflow_run
    computes them."""
    m = sum(times) / len(times)
    return m, math.sqrt(max(sum(t * t for t in times) / len(times) - m * m, 0.0))


@dataclass
class BenchResult:
    backend: str
    device: str
    batch: int
    warmup: int
    times: list[float]                      # seconds per timed batch
    per_layer: list[tuple[str, str, float]] = field(default_factory=list)  # name, type, s
    options: dict = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return mean_sd(self.times)[0]

    @property
    def sd(self) -> float:
        return mean_sd(self.times)[1]

    @property
    def images_per_s(self) -> float:
        return self.batch / self.mean

    def as_dict(self) -> dict:
        return {"backend": self.backend, "device": self.device, "batch": self.batch,
                "warmup": self.warmup, "iterations": len(self.times), **self.options,
                "mean_s": self.mean, "sd_s": self.sd, "images_per_s": self.images_per_s,
                "times_s": self.times,
                "per_layer": [{"layer": n, "type": t, "mean_s": s, "share": s / self.layer_total}
                              for n, t, s in self.per_layer] if self.per_layer else None}

    @property
    def layer_total(self) -> float:
        return sum(s for _, _, s in self.per_layer) or 1.0


def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks for reuse instead of returning them to the system.

    By default glibc serves each large block (a batch-32 activation is 100 MB) with a fresh
    mmap and unmaps it when freed, so every forward pass faults all its activations' pages in
    again: measured on ResNet-50 at batch 32 (2 threads), 1.45x the time of a pass that reuses
    them. Raising the mmap and trim thresholds (mallopt) keeps the blocks in the heap, as
    jemalloc or tcmalloc would. It affects the whole process; False where the C library is
    not glibc."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and \
        bool(mallopt(m_trim_threshold, (1 << 31) - 1))


def _inputs(net: Net, batch: int, seed: int = 0) -> list[np.ndarray]:
    """Random inputs of the inference net's shapes, at `batch`."""
    import warnings
    rng = np.random.default_rng(seed)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the translator has said it
        inputs = net_inputs(for_inference(net))
    for name, shape in inputs:
        if not shape:
            raise NetError(f"input '{name}' has no shape")
        out.append(rng.standard_normal((batch, *shape[1:])).astype(np.float32))
    return out


def time_runs(run: Callable[[], None], iterations: int, warmup: int,
              sync: Callable[[], None] = lambda: None, progress=None) -> list[float]:
    """The seconds of each of `iterations` calls of `run` (the device synchronized before the
    clock stops), after `warmup` untimed ones."""
    times = []
    for i in range(warmup + iterations):
        start = time.perf_counter()
        run()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
        if progress is not None:
            progress.update(1)
    return times


def pytorch_model(net: Net, *, device: str = "cpu", fuse: bool = False, compile: bool = False,
                  channels_last: bool = False, dtype: str = "float32"):
    """The module as the options ask: fused, in channels_last, in `dtype`, compiled (with
    Inductor's freezing: the weights are constants, so oneDNN prepacks them and fuses
    convolution, bias and ReLU on CPUs). Returns (module to time, plain module, input
    converter)."""
    import torch
    from .pytorch import to_torch
    fill_placeholders(net)
    kind = getattr(torch, dtype)
    model = to_torch(net, fuse=fuse).to(device=device, dtype=kind)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def convert(x: np.ndarray):
        t = torch.from_numpy(x).to(device=device, dtype=kind)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and \
            t.dim() == 4 else t
    if compile:
        import torch._inductor.config as inductor_config
        inductor_config.freezing = True
        return torch.compile(model), model, convert
    return model, model, convert


def bench_pytorch(net: Net, *, batch: int, iterations: int, warmup: int, device: str = "cpu",
                  fuse: bool = False, compile: bool = False, channels_last: bool = False,
                  dtype: str = "float32", per_layer: bool = False, progress=None
                  ) -> BenchResult:
    import torch
    run_model, model, convert = pytorch_model(net, device=device, fuse=fuse, compile=compile,
                                              channels_last=channels_last, dtype=dtype)
    xs = [convert(x) for x in _inputs(net, batch)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run():
        with torch.inference_mode():
            run_model(*xs)
    times = time_runs(run, iterations, warmup, sync, progress)
    layers = []
    if per_layer:
        layers = _torch_layers(model, xs, sync, max(1, min(iterations, 10)))
    options = {"fuse": fuse, "compile": compile, "channels_last": channels_last,
               "dtype": dtype, "threads": torch.get_num_threads()}
    return BenchResult("pytorch", device, batch, warmup, times, layers, options)


def _torch_layers(model, xs, sync, repeats: int) -> list[tuple[str, str, float]]:
    """Mean time of each layer over `repeats` timed forward passes (Python's time between
    one layer's end and the next's, the device synchronized at each)."""
    import torch
    totals: dict[str, float] = {}
    for i in range(repeats + 1):  # the first pass warms the timed code up, uncounted
        marks = [("", time.perf_counter())]

        def clock(name, marks=marks):
            sync()
            marks.append((name, time.perf_counter()))
        with torch.inference_mode():
            model.timed_forward(*xs, clock=clock)
        if i == 0:
            continue
        for (_, t0), (name, t1) in zip(marks, marks[1:]):
            totals[name] = totals.get(name, 0.0) + (t1 - t0)
    types = model.caffe_types
    return sorted(((n, types.get(n, ""), s / repeats) for n, s in totals.items()),
                  key=lambda r: -r[2])


def bench_onnxruntime(net: Net, *, batch: int, iterations: int, warmup: int,
                      device: str = "cpu", fuse: bool = False, threads: int | None = None,
                      per_layer: bool = False, progress=None) -> BenchResult:
    import onnxruntime as ort
    from .onnx import to_onnx
    fill_placeholders(net)
    model = to_onnx(net, fuse=fuse).SerializeToString()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    providers = ["CUDAExecutionProvider"] if device.startswith("cuda") else []
    providers.append("CPUExecutionProvider")
    available = set(ort.get_available_providers())
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise NetError("onnxruntime here has no CUDA provider (pip install onnxruntime-gpu)")
    session = ort.InferenceSession(model, options, providers=providers)
    feeds = dict(zip([i.name for i in session.get_inputs()], _inputs(net, batch)))
    times = time_runs(lambda: session.run(None, feeds), iterations, warmup,
                      progress=progress)
    layers = []
    if per_layer:
        options.enable_profiling = True
        profiled = ort.InferenceSession(model, options, providers=providers)
        repeats = max(1, min(iterations, 10))
        profiled.run(None, feeds)  # warm-up, profiled too: its share is subtracted below
        for _ in range(repeats):
            profiled.run(None, feeds)
        layers = _ort_layers(net, profiled.end_profiling(), repeats + 1)
    return BenchResult("onnxruntime", device, batch, warmup, times, layers,
                       {"fuse": fuse, "threads": threads or 0})


def _ort_layers(net: Net, profile_path: str, runs: int) -> list[tuple[str, str, float]]:
    """Each layer's kernel time per run from an onnxruntime profile: a node named after a
    layer, `layer/Op` (its helper nodes), or -- once onnxruntime fused it with the nodes
    after it (BatchNorm, ReLU...) -- `layer@last_nchwc`, is that layer's."""
    import json
    import os
    with open(profile_path, encoding="utf-8") as f:
        events = json.load(f)
    os.unlink(profile_path)
    types = {layer.name: layer.type for layer in net.layers}
    totals: dict[str, float] = {}
    for e in events:
        node = str(e.get("name", ""))
        if e.get("cat") != "Node" or not node.endswith("_kernel_time"):
            continue
        node = node[:-len("_kernel_time")]
        name = node.split("@")[0].removesuffix("_nchwc")
        while name not in types and "/" in name:
            name = name.rsplit("/", 1)[0]
        key = name if name in types else node
        totals[key] = totals.get(key, 0.0) + e.get("dur", 0) * 1e-6
    return sorted(((n, types.get(n, "(onnxruntime)"), s / runs) for n, s in totals.items()),
                  key=lambda r: -r[2])
