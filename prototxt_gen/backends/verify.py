"""Cross-checks between back ends: an exported model run by its runtime against the PyTorch
translation of the same net, on the same random input.

This module uses two back ends at once, so it is not one of them: nothing in the back ends
imports it.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import PrototxtGenError, one_line
from ..graph.net import Net, net_inputs


class VerificationError(PrototxtGenError):
    """An exported model computes something other than the reference (exit status 1)."""

    exit_code = 1


@dataclass
class Agreement:
    output: str
    max_error: float
    bound: float
    rounding: float = 0.0  # PyTorch float32 vs float64 on the same input

    def __str__(self) -> str:
        return f"'{self.output}' max|Δ| {self.max_error:.2g} (bound {self.bound:.2g})"


RTOL = 1e-4
ROUNDING = 10  # times PyTorch's own float32 error: onnxruntime fuses layers and rounds otherwise


def tolerance(ref: np.ndarray, rounding: float = 0.0) -> float:
    """RTOL of the output's largest magnitude (probabilities of 1e-3 get a bound of 1e-7, not
    1e-4), or ROUNDING times `rounding` -- how far PyTorch's own float32 result is from
    float64 on the same input -- where that is larger: random weights make some deep nets
    amplify rounding layer after layer, and a float32 runtime can do no better than that."""
    return max(RTOL * (float(np.abs(ref).max()) if ref.size else 0.0), ROUNDING * rounding)


def random_inputs(net: Net, seed: int = 0, batch: int | None = None) -> list[np.ndarray]:
    """Standard normal inputs; `batch` replaces the batch of the inputs that share the first
    input's (those an ONNX model with a dynamic batch lets vary)."""
    rng = np.random.default_rng(seed)
    inputs = net_inputs(net)
    first = next((shape[0] for _, shape in inputs if len(shape) >= 2), None)
    out = []
    for _, shape in inputs:
        if batch and len(shape) >= 2 and shape[0] == first:
            shape = (batch,) + tuple(shape[1:])
        out.append(rng.standard_normal(tuple(shape)).astype(np.float32))
    return out


@dataclass
class Verification:
    agreements: list[Agreement]
    batch: int | None          # the batch run (None: the file's)
    random_weights: bool       # the net had none: checked with random ones (see verify_onnx)
    float64: bool = False      # the reference is PyTorch run in float64

    def __str__(self) -> str:
        what = ("random weights of realistic scale (He-scaled, BatchNorm statistics "
                "calibrated on the input; the file keeps its placeholders)"
                if self.random_weights else "the model's weights")
        batch = f" at batch {self.batch}" if self.batch else ""
        return (f"on random input{batch} with {what}: "
                + ", ".join(map(str, self.agreements))
                + f"; each bound is {RTOL:g} of the output's largest magnitude"
                + (f", or {ROUNDING}x PyTorch's own float32 error where that is larger"
                   if self.float64 else ""))


def verify_onnx(net: Net, model: bytes | str | Callable[[Net], bytes], *, fuse: bool = False,
                seed: int = 0, batch: int | None = None) -> Verification:
    """Run the ONNX model (serialized bytes, or a file path) with onnxruntime on the CPU and
    the PyTorch translation of `net` -- holding the weights the model was built with -- on the
    same random input; raise VerificationError where an output differs by more than
    `tolerance`. `model` may instead be a function that translates a net: then `net` lacks
    weights, and what is checked is the translation of a copy of it given random weights of
    realistic scale (placeholder weights make every output a constant, which proves nothing)."""
    import onnxruntime as ort
    import torch

    from .inference import for_inference
    from ..limits import check_memory
    from .pytorch import to_torch
    from ..graph.shapes import activation_bytes, infer, new_weight_bytes
    with warnings.catch_warnings():  # said once already, when the model was translated
        warnings.simplefilter("ignore")
        net = for_inference(net)
    declared = min((s[0] for _, s in net_inputs(net) if s), default=1)
    scale = batch / max(1, declared) if batch else 1
    # Each runtime in turn holds the weights and runs every layer on the same input; PyTorch
    # runs again in float64 (twice the bytes). Random weights are new: once more.
    shapes = infer(net)
    weights = 4 * sum(math.prod(b) for s in shapes for b in s.blobs)
    fresh = new_weight_bytes(shapes) if callable(model) else 0
    check_memory(int(2 * scale * activation_bytes(shapes)) + 3 * weights + fresh,
                 "--verify (running the model in onnxruntime and PyTorch)")
    xs = random_inputs(net, seed, batch)
    trial = callable(model)
    if trial:
        net = calibrated(net, xs, seed)
        model = model(net)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # its failures are reported as our one-line error
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        got = session.run(None, dict(zip(names, xs)))
    except Exception as exc:  # onnxruntime's own exception types, one per failure kind
        raise VerificationError(f"--verify: onnxruntime cannot run the model: "
                                f"{one_line(str(exc), 300)}") from None
    del session, model  # its copy of the weights, before PyTorch makes its own
    module = to_torch(net, fuse=fuse)
    try:
        with torch.no_grad():
            narrow = _arrays(module(*map(torch.from_numpy, xs)))
    except RuntimeError as exc:
        raise VerificationError(f"--verify: the PyTorch translation cannot run the model: "
                                f"{one_line(str(exc), 300)}") from None
    wide = _float64(module, xs)
    if wide is None:
        agreements = compare(outputs, got, narrow, "onnxruntime", "the PyTorch translation")
    else:
        rounding = [float(np.abs(w - n).max()) if n.size else 0.0 for w, n in zip(wide, narrow)]
        agreements = compare(outputs, got, wide, "onnxruntime",
                             "the PyTorch translation (in float64)", rounding)
    return Verification(agreements, batch, trial, wide is not None)


def _arrays(out) -> list[np.ndarray]:
    import torch
    return [t.detach().numpy() for t in ([out] if isinstance(out, torch.Tensor) else out)]


def _float64(module, xs) -> list[np.ndarray] | None:
    """The outputs of `module` run in float64 (None where a layer has no float64 version):
    the reference both float32 runtimes are measured against."""
    import torch
    try:
        with torch.no_grad():
            out = _arrays(module.double()(*(torch.from_numpy(x).double() for x in xs)))
    except (RuntimeError, TypeError):
        return None
    return out if all(o.dtype == np.float64 for o in out) else None


def calibrated(net: Net, xs: Sequence[np.ndarray], seed: int = 0) -> Net:
    """A copy of `net` in which each layer without weights gets random ones of the scale a
    trained net has: convolution and inner product weights He-scaled (std sqrt(2/fan-in)),
    biases and Scale's beta near 0, Scale's gamma near 1, PReLU slopes 0.25, and BatchNorm
    statistics set, layer after layer, to the mean and variance of what reaches the layer on
    `xs` -- a calibration pass, so that every BatchNorm output has unit scale."""
    import torch

    from ..graph.placeholders import random_blob
    from .pytorch import to_torch
    from ..graph.shapes import infer
    rng = np.random.default_rng(seed)
    out = net.copy()
    fresh = set()
    for s in infer(out):
        if not s.blobs or s.layer.blobs:
            continue
        fresh.add(s.layer.name)
        s.layer.blobs = [random_blob(rng, s.layer.type, k, shape)
                         for k, shape in enumerate(s.blobs)]
    if not any(out.layer(n).type == "BatchNorm" for n in fresh):
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = to_torch(out)
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def measure(name):
        def hook(mod, args):
            x = args[0].detach()
            dims = [d for d in range(x.dim()) if d != 1]
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            # A channel that is (nearly) constant on this input -- dead after a ReLU -- would
            # be divided by ~sqrt(eps), multiplying rounding noise by up to 300: floored.
            var = torch.maximum(var, 0.01 * var.median())
            mod.running_mean.copy_(mean)
            mod.running_var.copy_(var)
            stats[name] = (mean.numpy().copy(), var.numpy().copy())
        return hook

    handles = [mod.register_forward_pre_hook(measure(module.caffe_names[attr]))
               for attr, mod in module.named_children()
               if module.caffe_names.get(attr) in fresh
               and out.layer(module.caffe_names[attr]).type == "BatchNorm"
               and hasattr(mod, "running_mean")]
    try:
        with torch.no_grad():
            module.blobs(*map(torch.from_numpy, xs))  # runs each layer's submodule in turn
    finally:
        for h in handles:
            h.remove()
    for name, (mean, var) in stats.items():
        out.layer(name).blobs = [mean, var, np.ones(1, np.float32)]
    return out


def compare(names: Sequence[str], got: Sequence[np.ndarray], refs: Sequence[np.ndarray],
            what: str, against: str, rounding: Sequence[float] = ()) -> list[Agreement]:
    if len(got) != len(refs):
        raise VerificationError(f"{what} gives {len(got)} output(s), {against} {len(refs)}")
    report = []
    for name, g, r in zip(names, got, refs):
        if g.shape != r.shape:
            raise VerificationError(f"{what}: output '{name}' has shape {g.shape}, {against} "
                                    f"{r.shape}")
        err = float(np.abs(g.astype(np.float64) - r).max()) if r.size else 0.0
        slack = rounding[len(report)] if len(rounding) > len(report) else 0.0
        agreement = Agreement(name, err, tolerance(r, slack), slack)
        if not err <= agreement.bound:  # NaN fails too
            raise VerificationError(f"{what} departs from {against}: {agreement}")
        report.append(agreement)
    return report
