"""Training definitions: a deploy net made into a train_val net, and a matching solver.

train_val(net) replaces the input by Data layers for TRAIN and TEST (with include rules and
transform_param), leaves BatchNorm's use_global_stats unset so that Caffe uses batch statistics
in TRAIN and the stored ones in TEST, freezes BatchNorm's statistics blobs (lr_mult 0), gives
convolutions and inner products fillers and lr/decay multipliers (biases: lr 2, no decay;
Scale's gamma/beta: no decay), and replaces the final Softmax by SoftmaxWithLoss plus top-1 and
top-5 Accuracy in TEST.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..proto import caffe_pb2
from ..errors import SpecError
from ..graph.net import Layer, Net, net_outputs
from .schema import choice, number, numbers, positive_float, positive_int, shape, string

# A spec's [train] and [solver] tables: every key optional, the command line overrides them.
TRAIN_KEYS = {
    "train_source": string(None), "test_source": string(None),
    "backend": choice("LMDB", "LEVELDB", default=None),
    "batch_size": positive_int(None), "test_batch_size": positive_int(None),
    "mean_value": numbers(None), "scale": positive_float(None),
}
SOLVER_KEYS = {
    "net": string(None), "base_lr": positive_float(None),
    "lr_policy": choice("multistep", "poly", default=None), "gamma": positive_float(None),
    "stepvalue": shape(None, "iterations at which multistep divides the rate"),
    "power": positive_float(None), "max_iter": positive_int(None), "momentum": number(None),
    "weight_decay": number(None), "test_iter": positive_int(None),
    "test_interval": positive_int(None), "display": positive_int(None),
    "snapshot": positive_int(None), "snapshot_prefix": string(None),
    "solver_mode": choice("GPU", "CPU", default=None),
}


def options(cls, *layers: dict):
    """`cls()` with the values each of `layers` sets (later ones win; None sets nothing)."""
    values = {}
    for layer in layers:
        values.update({k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in layer.items() if v is not None})
    return cls(**values)


@dataclass
class DataOptions:
    train_source: str = "train_lmdb"
    test_source: str = "val_lmdb"
    backend: str = "LMDB"
    batch_size: int = 32
    test_batch_size: int = 25
    mean_value: list[float] = field(default_factory=lambda: [104.0, 117.0, 123.0])
    scale: float = 1.0


def train_val(net: Net, data: DataOptions | None = None) -> Net:
    """The train_val version of a deploy `net` (generated, with its Softmax output)."""
    data = data or DataOptions()
    if len(net.inputs) != 1 or len(net.inputs[0].shape) != 4:
        raise SpecError("a train_val net needs one N×C×H×W input to replace by Data layers")
    outputs = net_outputs(net)
    last = net.layers[-1] if net.layers else None
    if last is None or last.type != "Softmax" or list(last.top) != outputs:
        raise SpecError("a train_val net needs a classifier ending in Softmax (not "
                        "--features-only or a head without softmax)")
    inp = net.inputs[0]
    crop = inp.shape[2]
    if inp.shape[3] != crop:
        raise SpecError(f"Data layers crop squares: the input is {inp.shape[2]}×{inp.shape[3]}")
    out = Net(net.name)
    for phase, source, batch, mirror in (("TRAIN", data.train_source, data.batch_size, True),
                                         ("TEST", data.test_source, data.test_batch_size, False)):
        transform = {"mirror": mirror, "crop_size": crop, "mean_value": list(data.mean_value)}
        if data.scale != 1:
            transform["scale"] = data.scale
        # Both are named "data", as in BVLC's train_val files: each phase includes one.
        scratch = Net()
        scratch.add_layer("Data", "data", [], [inp.name, "label"], include=[{"phase": phase}],
                          transform_param=transform,
                          data_param={"source": source, "batch_size": batch,
                                      "backend": data.backend})
        out.layers.append(scratch.layers[0])
    for layer in net.layers[:-1]:
        out.layers.append(_trainable(layer))
    logits = last.bottom[0]
    out.add_layer("SoftmaxWithLoss", "loss", [logits, "label"], "loss")
    for k in (1, 5):
        out.add_layer("Accuracy", f"accuracy/top-{k}", [logits, "label"], f"accuracy/top-{k}",
                      include=[{"phase": "TEST"}], accuracy_param={"top_k": k})
    return out


def _trainable(layer: Layer) -> Layer:
    param = caffe_pb2.LayerParameter()
    param.CopyFrom(layer.param)
    t = layer.type
    if t == "BatchNorm":
        param.batch_norm_param.ClearField("use_global_stats")  # by phase: batch stats in TRAIN
        if not param.batch_norm_param.ListFields():
            param.ClearField("batch_norm_param")
        for _ in range(3):  # mean, variance, scale factor: updated by the layer, not by SGD
            param.param.add(lr_mult=0, decay_mult=0)
    elif t in ("Convolution", "Deconvolution", "InnerProduct"):
        sub = param.inner_product_param if t == "InnerProduct" else param.convolution_param
        if t == "InnerProduct":
            sub.weight_filler.type, sub.weight_filler.std = "gaussian", 0.01
        else:
            sub.weight_filler.type = "msra"
        param.param.add(lr_mult=1, decay_mult=1)
        if sub.bias_term:
            sub.bias_filler.type, sub.bias_filler.value = "constant", 0
            param.param.add(lr_mult=2, decay_mult=0)
    elif t == "Scale":
        for _ in range(2 if param.scale_param.bias_term else 1):
            param.param.add(lr_mult=1, decay_mult=0)
    return Layer(param, [], layer.text_order, copy.deepcopy(layer.extra))


@dataclass
class SolverOptions:
    net: str = "train_val.prototxt"
    base_lr: float = 0.1
    lr_policy: str = "multistep"  # or "poly"
    gamma: float = 0.1
    stepvalue: list[int] = field(default_factory=lambda: [150_000, 300_000, 450_000])
    power: float = 1.0
    max_iter: int = 600_000
    momentum: float = 0.9
    weight_decay: float = 1e-4
    test_iter: int = 2000          # 50,000 ImageNet validation images / test batch 25
    test_interval: int = 5000
    display: int = 20
    snapshot: int = 10_000
    snapshot_prefix: str = "snapshots/net"
    solver_mode: str = "GPU"


def solver(options: SolverOptions | None = None) -> caffe_pb2.SolverParameter:
    """An SGD solver with momentum and weight decay, step ("multistep") or "poly" schedule."""
    o = options or SolverOptions()
    if o.lr_policy not in ("multistep", "poly"):
        raise SpecError(f"lr_policy '{o.lr_policy}': choose multistep or poly")
    try:
        return _solver(o)
    except ValueError as exc:  # protobuf's range check: a value no solver field holds
        raise SpecError(f"solver: {exc}") from None


def _solver(o: SolverOptions) -> caffe_pb2.SolverParameter:
    s = caffe_pb2.SolverParameter(
        net=o.net, test_iter=[o.test_iter], test_interval=o.test_interval, base_lr=o.base_lr,
        lr_policy=o.lr_policy, momentum=o.momentum, weight_decay=o.weight_decay,
        max_iter=o.max_iter, display=o.display, snapshot=o.snapshot,
        snapshot_prefix=o.snapshot_prefix, type="SGD",
        solver_mode=caffe_pb2.SolverParameter.SolverMode.Value(o.solver_mode))
    if o.lr_policy == "multistep":
        if list(o.stepvalue) != sorted(o.stepvalue) or any(v >= o.max_iter for v in o.stepvalue):
            raise SpecError("stepvalue: increasing iterations below max_iter")
        s.gamma = o.gamma
        s.stepvalue.extend(o.stepvalue)
    else:
        s.power = o.power
    return s
