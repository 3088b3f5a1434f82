"""TF-slim and FaceNet checkpoints into the nets whose layers carry slim's scope names
(`resnet50_v2` ... `resnet200_v2`, `inception_resnet_v1`).

A layer named L takes the variables under `{model scope}/L/`: a Convolution `weights` (TF's
H×W×in×out, transposed to Caffe's out×in×H×W) and, where the layer has a bias, `biases`; an
InnerProduct `weights` (slim's 1×1 logits convolution, or fully_connected's in×out) and
`biases`; a BatchNorm (`.../BatchNorm`) `moving_mean` and `moving_variance` (scale factor 1);
the Scale or Bias after it (`.../BatchNorm/scale`, `.../BatchNorm/beta`) `gamma` and `beta` of
that BatchNorm scope -- which is the scope alone for a batch_norm called with a scope of its
own (resnet_v2's `preact`, `postnorm`). The model scope (`resnet_v2_50`, `InceptionResnetV1`)
is found from the first convolution. Every variable the net needs must be there with its shape; weights under the
scope that the net does not use (another depth, another model) are refused; optimizer slots and
moving-average shadows are not weights and are left alone.
"""
from __future__ import annotations

import math
import re

import numpy as np

from ..errors import NetError
from ..graph.net import Net
from ..graph.shapes import infer
from .matching import Matcher
from .tf_checkpoint import Checkpoint

_WEIGHT_SUFFIXES = ("/weights", "/biases", "/gamma", "/beta", "/moving_mean",
                    "/moving_variance")
_NOT_WEIGHTS = re.compile(r"/(Momentum|Adam(_1)?|RMSProp(_1)?|Adagrad|Ftrl(_1)?|"
                          r"ExponentialMovingAverage)(/|$)")


def model_scope(net: Net, ckpt: Checkpoint, source: str) -> str:
    """The checkpoint's scope for this net's layers: of the prefixes before the first
    convolution's `{name}/weights` ("" for none), the one under which most of the net's
    convolutions are found."""
    convs = [layer.name for layer in net.layers if layer.type == "Convolution"]
    if not convs:
        raise NetError(f"{source}: the net has no convolution to find the model's scope by")
    tail = f"{convs[0]}/weights"
    scopes = {n[:-len(tail)].rstrip("/") for n in ckpt.entries
              if n == tail or n.endswith("/" + tail)}
    if not scopes:
        raise NetError(f"{source}: no variable named '{tail}' or '.../{tail}': not a "
                       f"checkpoint of '{net.name}'")

    def found(scope):
        prefix = f"{scope}/" if scope else ""
        return sum(f"{prefix}{c}/weights" in ckpt.entries for c in convs)
    ranked = sorted(scopes, key=lambda sc: (-found(sc), sc))
    if len(ranked) > 1 and found(ranked[0]) == found(ranked[1]):
        raise NetError(f"{source}: two model scopes fit the net equally: "
                       f"{ranked[0]!r}, {ranked[1]!r}")
    return ranked[0]


def _bn_scope(ckpt: Checkpoint, prefix: str, name: str) -> str:
    """Where a BatchNorm's variables are: under its name, or -- for a batch_norm called with
    its own scope, as resnet_v2's `preact` and `postnorm` -- under the scope alone."""
    bare = name.removesuffix("/BatchNorm")
    if bare != name and not any(f"{prefix}{name}/{v}" in ckpt.entries
                                for v in ("moving_mean", "gamma", "beta")):
        return bare
    return name


def _layer_blobs(layer, want, take, bn_scope) -> list:
    """The blobs of one layer, each taken by its variable's name (None where it fails)."""
    name, base = layer.name, layer.name.rsplit("/", 1)[0]
    if layer.type == "Convolution":  # H×W×in×out -> out×in×H×W
        w = take(f"{name}/weights", want[0],
                 lambda s: (s[3], s[2], *s[:2]) if len(s) == 4 else None)
        got = [None if w is None else w.transpose(3, 2, 0, 1)]
        return got + ([take(f"{name}/biases", want[1])] if len(want) > 1 else [])
    if layer.type == "InnerProduct":  # 1×1×in×out or in×out -> out×in
        w = take(f"{name}/weights", want[0], lambda s: (s[-1], math.prod(s[:-1])))
        got = [None if w is None else w.reshape(-1, w.shape[-1]).T]
        return got + ([take(f"{name}/biases", want[1])] if len(want) > 1 else [])
    if layer.type == "BatchNorm":
        bn = bn_scope(name)
        return [take(f"{bn}/moving_mean", want[0]), take(f"{bn}/moving_variance", want[1]),
                np.ones(1, np.float32)]
    if layer.type == "Scale":
        bn = bn_scope(base)
        return [take(f"{bn}/gamma", want[0])] + (
            [take(f"{bn}/beta", want[1])] if len(want) > 1 else [])
    if layer.type == "Bias":
        return [take(f"{bn_scope(base)}/beta", want[0])]
    raise NetError(f"layer '{layer.name}' ({layer.type}) has weights that slim's checkpoints "
                   "do not describe")


def slim_blobs(net: Net, ckpt: Checkpoint, source: str) -> Net:
    """Give the net's layers the checkpoint's weights (see the module's text); returns `net`."""
    scope = model_scope(net, ckpt, source)
    prefix = f"{scope}/" if scope else ""
    shapes = {s.layer.name: s.blobs for s in infer(net)}
    match = Matcher(ckpt.entries)

    def take(name, want, fit=None):
        return match.take(prefix + name, want, ckpt.read, ckpt.shape, fit)
    blobs = {layer.name: _layer_blobs(layer, shapes[layer.name], take,
                                      lambda n: _bn_scope(ckpt, prefix, n))
             for layer in net.layers if shapes[layer.name]}
    unused = sorted(n for n in ckpt.entries if n.startswith(prefix) and n not in match.used
                    and n.endswith(_WEIGHT_SUFFIXES) and not _NOT_WEIGHTS.search(n))
    match.refuse_if_wrong(f"{source}: not a checkpoint of '{net.name}'", unused, "weight")
    for layer in net.layers:
        if layer.name in blobs:
            layer.blobs = [np.ascontiguousarray(b, np.float32).reshape(s)
                           for b, s in zip(blobs[layer.name], shapes[layer.name])]
    return net
