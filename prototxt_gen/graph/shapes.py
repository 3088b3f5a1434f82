"""Blob shapes and weight shapes of every layer, with Caffe's own arithmetic.

One rule per layer type, registered in RULES: rule(layer, bottom_shapes) returns
(top_shapes, weight_blob_shapes); fork layers (Axpy, Permute, Normalize) are rules like any other,
and users add their own with @rule. The arithmetic follows Caffe's Reshape/LayerSetUp code as
written in docs/caffe.md (§2 blob layouts, §4 output sizes), including pooling's ceil rounding
and clip rule. A rule reports a misfit by raising ShapeMismatch; infer() names the layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import NetError
from .net import Layer, Net
from ..registry import MACS, RULES
from ..registry import rule as register_rule

Shape = tuple[int, ...]
Rule = Callable[[Layer, list[Shape]], tuple[list[Shape], list[Shape]]]

class ShapeMismatch(Exception):
    """Raised by a rule; infer() turns it into a NetError naming the layer."""


def rule(*types: str, replace: bool = False) -> Callable[[Rule], Rule]:
    """Register a shape rule for layer types: fn(layer, bottom_shapes) returns (top_shapes,
    weight_blob_shapes). Users register rules for their own (fork) layer types the same way:

        @prototxt_gen.graph.shapes.rule("MyLayer")
        def my_layer(layer, bottoms):
            return [bottoms[0]], []

    `layer.param` is the LayerParameter; `layer.extra` holds fork fields caffe.proto lacks. A
    type that has a rule already needs replace=True."""
    return register_rule(*types, replace=replace)


@dataclass
class LayerShapes:
    layer: Layer
    bottoms: list[Shape]
    tops: list[Shape]
    blobs: list[Shape]  # weight blobs, in Caffe's order


def infer(net: Net, partial: bool = False) -> list[LayerShapes]:
    """Shapes of every layer's bottoms, tops and weight blobs, in execution order. With
    partial=True nothing raises: a shape that cannot be known (a Data layer's tops, a layer
    without a rule, and everything computed from them) is None, and the layer has no blobs."""
    blobs: dict[str, Shape | None] = {i.name: tuple(i.shape) for i in net.inputs}
    result = []
    for layer in net.layers:
        where = f"layer '{layer.name}' ({layer.type})"
        try:
            bottoms = []
            for b in layer.bottom:
                if b not in blobs:
                    raise NetError(f"{where}: bottom '{b}' is not produced by any earlier "
                                   "layer or input")
                bottoms.append(blobs[b])
            if any(b is None for b in bottoms):
                raise NetError(f"{where}: an input's shape is unknown")
            fn = RULES.get(layer.type)
            if fn is None:
                raise NetError(f"{where}: no shape rule for layer type '{layer.type}' (a "
                               "fork's layer? register one with prototxt_gen.graph.shapes.rule)")
            given = [net.top_shapes.get(t) for t in layer.top] if net.top_shapes else []
            try:
                if any(g is not None for g in given) and all(g is not None for g in given):
                    tops, weights = given, []  # the user's shapes: the rule may need data
                else:
                    tops, weights = fn(layer, bottoms)
            except ShapeMismatch as exc:
                shapes = ", ".join(format_shape(s) for s in bottoms)
                raise NetError(f"{where}: {exc} (input {shapes or 'none'})") from None
            if any(g is not None for g in given):
                tops = [g if g is not None else t for g, t in zip(given, tops)]
            unknown = [t for t, shape in zip(layer.top, tops) if shape is None]
            if unknown:  # a dataset layer's top that only the data knows
                raise NetError(f"{where}: the file does not say the shape of top "
                               f"'{unknown[0]}' (a batch_size, and crop_size or new_height "
                               f"and new_width); give it with --input-shape "
                               f"{unknown[0]}=N,C,H,W")
            if len(tops) < len(layer.top):
                raise NetError(f"{where}: has {len(layer.top)} tops, the layer type produces "
                               f"{len(tops)}")
            for shape in list(tops[:len(layer.top)]) + list(weights):
                if any(d < 0 for d in shape) or math.prod(shape) > MAX_VALUES:
                    raise NetError(f"{where}: shape {format_shape(shape)} is beyond what any machine "
                                   "holds (more than 2^53 values, or negative)")
        except NetError:
            if not partial:
                raise
            bottoms = [blobs.get(b) for b in layer.bottom]
            tops, weights = [None] * len(layer.top), []
        for name, shape in zip(layer.top, tops):
            blobs[name] = shape
        result.append(LayerShapes(layer, bottoms, tops[:len(layer.top)], weights))
    return result


def blob_shape(net: Net, name: str) -> Shape:
    """The shape of blob `name` at the end of the net (after any in-place layers)."""
    for s in reversed(infer(net)):
        if name in s.layer.top:
            return s.tops[list(s.layer.top).index(name)]
    for i in net.inputs:
        if i.name == name:
            return tuple(i.shape)
    raise NetError(f"no blob named '{name}'")


@dataclass
class ParamCount:
    learnable: int   # weights, biases, Scale/Bias/PReLU blobs
    batchnorm: int   # BatchNorm's stored mean, variance and scale factor (not trained by SGD)


def count_params(shapes: Sequence[LayerShapes]) -> ParamCount:
    learnable = batchnorm = 0
    for s in shapes:
        n = sum(math.prod(b) for b in s.blobs)
        if s.layer.type == "BatchNorm":
            batchnorm += n
        else:
            learnable += n
    return ParamCount(learnable, batchnorm)


def new_weight_bytes(shapes: Sequence[LayerShapes]) -> int:
    """Bytes of float32 weights for the layers that hold none yet: what a back end allocates
    from nothing (placeholders, PyTorch's initial values)."""
    return 4 * sum(math.prod(b) for s in shapes if not s.layer.blobs for b in s.blobs)


def largest_new_weight(shapes: Sequence[LayerShapes]) -> int:
    """Bytes of the largest float32 blob among the layers that hold none yet."""
    return 4 * max((math.prod(b) for s in shapes if not s.layer.blobs for b in s.blobs),
                   default=0)


def activation_bytes(shapes: Sequence[LayerShapes]) -> int:
    """Bytes of every float32 top a forward pass computes, in-place layers' tops being their
    bottoms' memory (an upper bound on what running the net holds at once)."""
    return 4 * sum(math.prod(t) for s in shapes if not s.layer.in_place
                   for t in s.tops if t is not None)


# More values than any machine holds, and more than int64 shape arithmetic (ONNX, NumPy,
# torch) can express: a blob past this is an error, not a shape.
MAX_VALUES = 2**53


# -- helpers --------------------------------------------------------------------------------------







def format_shape(shape: Sequence[int]) -> str:
    """1×3×224×224."""
    return "×".join(map(str, shape))


# -- rules ----------------------------------------------------------------------------------------







































































































LOSS_LAYERS = ("SoftmaxWithLoss", "SigmoidCrossEntropyLoss", "EuclideanLoss", "HingeLoss",
               "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss")










# Layers that read a dataset: their tops' shapes come from their parameters where the file
# says them (dataset_shapes), else from --input-shape (Net.set_shape).
DATASET_LAYERS = ("Data", "ImageData", "WindowData", "HDF5Data", "AnnotatedData")
# ...and those with a Python layer, whose tops only its code knows.
DATA_READERS = DATASET_LAYERS + ("Python",)
# Layers that hand the net its data (fed by the user's arrays for MemoryData, fillers for
# DummyData): at inference, inputs.
DATA_SOURCES = DATA_READERS + ("MemoryData", "DummyData")










# -- multiply-accumulates -------------------------------------------------------------------------

def macs(s: LayerShapes) -> int:
    """Multiply-accumulates of one forward pass, as the layer type counts them (convolutions
    and inner products: the figure papers quote, ResNet-50 3.86 G); other layers count 0."""
    count = MACS.get(s.layer.type)
    return count(s) if count else 0
