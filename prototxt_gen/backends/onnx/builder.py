"""The ONNX back end's side of the lowering protocol: the builder a lowering gets, which adds
nodes and initializers to the graph being built, named after the layer."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...graph.net import Layer
from ...graph.placeholders import placeholder
from ...graph.shapes import LayerShapes
from ...registry import ONNX, onnx_lowering


DEFAULT_OPSET = 17
OPSETS = range(13, 21)
# The IR version each opset was released with: files open in every runtime that knows the opset.
IR_VERSION = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9}


class LayerBuilder:
    """What a converter works with: `layer`, its shapes `s`, `x` (the ONNX values of its
    bottoms) and `y` (the names its tops must be written to), plus methods that add nodes and
    initializers named after the layer. A top may instead be another value (`alias`)."""

    def __init__(self, graph: "_Graph", layer: Layer, s: LayerShapes, x: list[str],
                 y: list[str]):
        self.graph, self.layer, self.s, self.x, self.y = graph, layer, s, x, y
        self.opset = graph.opset
        self.aliases: dict[int, str] = {}

    np = np
    FLOAT = TensorProto.FLOAT

    @property
    def name(self) -> str:
        return self.layer.name

    def op(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1,
           **attrs) -> str | list[str]:
        """Add a node; `outputs` is a count of new values or their names. Returns the output
        name (a list with several)."""
        if isinstance(outputs, int):
            names = [self.graph.fresh(f"{self.name}/{op_type}") for _ in range(outputs)]
        else:
            names = list(outputs)
        # The node that writes a top carries the layer's name; helper nodes `layer/Op`.
        writes_top = any(n in self.y for n in names)
        node_name = self.graph.fresh_node(self.name if writes_top else f"{self.name}/{op_type}")
        self.graph.nodes.append(helper.make_node(op_type, list(inputs), names, name=node_name,
                                                 **attrs))
        return names[0] if len(names) == 1 else names

    def out(self, op_type: str, inputs: Sequence[str], k: int = 0, **attrs) -> str:
        """Add a node that writes top k."""
        return self.op(op_type, inputs, [self.y[k]], **attrs)

    def alias(self, k: int, value: str) -> None:
        """Top k is `value` itself (Split, Dropout...): no node."""
        self.aliases[k] = value

    def const(self, array, suffix: str, dtype=np.float32) -> str:
        """An initializer holding `array`."""
        return self.graph.initializer(f"{self.name}/{suffix}", np.asarray(array, dtype))

    def ints(self, values: Sequence[int], suffix: str) -> str:
        return self.const(np.asarray(list(values), np.int64), suffix, np.int64)

    def scalar(self, value: float, suffix: str) -> str:
        return self.const(np.float32(value), suffix)

    def blob(self, k: int, suffix: str, shape: Sequence[int] | None = None,
             transform: Callable[[np.ndarray], np.ndarray] | None = None) -> str:
        """Weight blob k as an initializer (reshaped, transformed); a layer without weights
        gets placeholders (see placeholders.placeholder)."""
        arr = np.asarray(self.layer.blobs[k]) if k < len(self.layer.blobs) else placeholder(
            self.layer, k, self.s.blobs[k])
        if transform is not None:
            arr = transform(arr)
        if shape is not None:
            arr = arr.reshape(shape)
        return self.graph.initializer(f"{self.name}/{suffix}", arr)

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool,
               outputs: int | Sequence[str] = 1) -> str:
        """A Reduce* node: axes are an input from opset 18 (ReduceSum: 13), an attribute
        before."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes, "axes")], outputs,
                           keepdims=int(keepdims))
        return self.op(op_type, [x], outputs, axes=list(axes), keepdims=int(keepdims))

    def unsqueeze(self, x: str, axes: Sequence[int], outputs: int | Sequence[str] = 1) -> str:
        return self.op("Unsqueeze", [x, self.ints(axes, "unsqueeze_axes")], outputs)

    def reshape(self, x: str, shape: Sequence[int], outputs: int | Sequence[str] = 1) -> str:
        """Reshape with ONNX's conventions: 0 copies the input's dimension, -1 is inferred."""
        return self.op("Reshape", [x, self.ints(shape, "shape")], outputs)


    def result(self, value: str) -> None:
        """Make top 0 the value this layer's last node wrote (or alias the input)."""
        last = self.graph.nodes[-1] if self.graph.nodes else None
        if value == self.x[0] or last is None or list(last.output) != [value]:
            self.alias(0, value)
        else:
            last.output[0] = self.y[0]
            last.name = self.graph.fresh_node(self.name)

    def data_dependent(self, k: int, axis: int, name: str) -> None:
        """Top k's size along `axis` depends on the data (detections): declare it symbolic."""
        self.graph.symbolic.setdefault(self.y[k], {})[axis] = f"{self.name}_{name}"

    def for_layer(self, layer: Layer, s: LayerShapes) -> "LayerBuilder":
        """A builder for another layer whose weights this one's nodes use (a BatchNorm
        merged with its Scale); it adds nodes to the same graph."""
        return LayerBuilder(self.graph, layer, s, [], [])


Converter = Callable[[LayerBuilder], None]
CONVERTERS = ONNX  # layer type -> lowering; the layer families fill it (prototxt_gen/layers)


def converter(*types: str, replace: bool = False) -> Callable[[Converter], Converter]:
    """Register how layer types translate, as fn(b: LayerBuilder) -> None. For a fork's layer:

        @prototxt_gen.backends.onnx.converter("MyLayer")
        def my_layer(b):
            b.out("Mul", [b.x[0], b.scalar(2.0, "two")])

    `b.s` has the layer's bottom, top and weight-blob shapes (register a shape rule with
    prototxt_gen.graph.shapes.rule first); `b.blob(k, ...)` its weights; raise Unsupported(reason)
    for a configuration the converter cannot handle. A type that has one already needs
    replace=True."""
    return onnx_lowering(*types, replace=replace)


def _unique(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3`... whichever is not taken yet; it is taken then."""
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


class _Graph:
    """Nodes, initializers and names; every value and node name is unique."""

    def __init__(self, opset: int, taken: set[str]):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.taken = set(taken)
        self.node_names: set[str] = set()
        self.symbolic: dict[str, dict[int, str]] = {}  # value -> data-dependent axes

    def fresh(self, base: str) -> str:
        """A value name not used yet."""
        return _unique(base, self.taken)

    def fresh_node(self, base: str) -> str:
        return _unique(base, self.node_names)

    def initializer(self, base: str, arr: np.ndarray) -> str:
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        name = self.fresh(base)
        self.arrays[name] = arr
        return name
