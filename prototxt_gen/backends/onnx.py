"""Caffe network → ONNX, built node by node with onnx.helper (no torch involved).

Every layer type has one converter, registered in CONVERTERS with @converter: it gets a
`LayerBuilder` (the layer, its inferred shapes, the ONNX values its bottoms hold) and adds the
nodes that compute the layer's tops. ONNX values are written once, so a blob that in-place layers
rewrite becomes a new value at each write; its first version keeps the blob's name (the final
version, for the net's outputs), the others are named `blob@layer`.

Caffe's arithmetic is kept exactly and portably: pooling never relies on a runtime's ceil mode
(Caffe's output size is computed here and reached with explicit, possibly asymmetric, padding in
floor mode, the padding chosen so that the average divisor is Caffe's), BatchNorm's statistics
are divided by its scale-factor blob, and a BatchNorm followed by its Scale is one
BatchNormalization.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..proto import caffe_pb2
from ..proto.wire import tag, varint
from ..graph.placeholders import placeholder
from ..errors import NetError, untranslatable
from ..registry import put
from ..graph.fuse import batchnorm_eps, batchnorm_scale_pairs, batchnorm_statistics
from ..graph.fuse import fuse as fold_affine
from ..graph.inference import for_inference
from ..graph.net import Layer, Net, net_inputs, net_outputs
from ..graph.shapes import (LayerShapes, affine_layout, concat_axis, conv_geometry, crop_offsets,
                     flatten_axes, infer, normalize_params, permute_order, reduction_axes,
                     reshape_span, shuffle_group, slice_axis, spatial, tile_repeats)

DEFAULT_OPSET = 17
OPSETS = range(13, 21)
# The IR version each opset was released with: files open in every runtime that knows the opset.
IR_VERSION = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9}
# Protobuf cannot serialize a message over 2 GiB; beyond this, weights go to a .data file.
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26
FLT_MAX = float(np.finfo(np.float32).max)
FLT_MIN = float(np.finfo(np.float32).tiny)


class Unsupported(Exception):
    """Raised by a converter for a layer (or a use of it) it cannot translate."""


class LayerBuilder:
    """What a converter works with: `layer`, its shapes `s`, `x` (the ONNX values of its
    bottoms) and `y` (the names its tops must be written to), plus methods that add nodes and
    initializers named after the layer. A top may instead be another value (`alias`)."""

    def __init__(self, graph: "_Graph", layer: Layer, s: LayerShapes, x: list[str],
                 y: list[str]):
        self.graph, self.layer, self.s, self.x, self.y = graph, layer, s, x, y
        self.opset = graph.opset
        self.aliases: dict[int, str] = {}

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


Converter = Callable[[LayerBuilder], None]
CONVERTERS: dict[str, Converter] = {}


def converter(*types: str, replace: bool = False) -> Callable[[Converter], Converter]:
    """Register how layer types translate, as fn(b: LayerBuilder) -> None. For a fork's layer:

        @prototxt_gen.backends.onnx.converter("MyLayer")
        def my_layer(b):
            b.out("Mul", [b.x[0], b.scalar(2.0, "two")])

    `b.s` has the layer's bottom, top and weight-blob shapes (register a shape rule with
    prototxt_gen.graph.shapes.rule first); `b.blob(k, ...)` its weights; raise Unsupported(reason)
    for a configuration the converter cannot handle. A type that has one already needs
    replace=True."""
    def register(fn: Converter) -> Converter:
        put(CONVERTERS, types, fn, "an ONNX converter", replace)
        return fn
    return register


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


@dataclass
class Translation:
    """The ONNX model and how it maps to the Caffe net: `inputs`/`outputs` are the graph's
    input and output names (Caffe blob names); `values[layer name]` the ONNX value each of
    the layer's tops was written to."""

    model: onnx.ModelProto
    inputs: list[str]
    outputs: list[str]
    values: dict[str, list[str]] = field(default_factory=dict)
    # initializer name -> array (the data of the model's initializers)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def fill(self) -> None:
        """Put the arrays into the model's initializers (raw little-endian data)."""
        for tp in self.model.graph.initializer:
            if not tp.raw_data and tp.data_location != TensorProto.EXTERNAL:
                tp.raw_data = _le_bytes(self.arrays[tp.name])


def to_onnx(net: Net, *, opset: int = DEFAULT_OPSET, fuse: bool = False,
            dynamic_batch: bool = True, outputs: Sequence[str] | str | None = None,
            check: bool = True) -> onnx.ModelProto:
    """The network as an ONNX model, weights included (`layer.blobs`, as load_weights gives
    them; layers without get placeholders). The batch dimension is symbolic unless
    dynamic_batch=False; `outputs` replaces Caffe's outputs by the given blobs (their final
    values), or "all" makes every value of every layer an output. With check=True the model
    passes onnx.checker's full check (with strict shape inference) before it is returned."""
    t = translate(net, opset=opset, fuse=fuse, dynamic_batch=dynamic_batch, outputs=outputs,
                  check=check)
    return t.model


def translate(net: Net, *, opset: int = DEFAULT_OPSET, fuse: bool = False,
              dynamic_batch: bool = True, outputs: Sequence[str] | str | None = None,
              check: bool = True, with_data: bool = True) -> Translation:
    """to_onnx, also returning the names that map the model back to the net (see
    Translation). with_data=False leaves the weights out of the model's initializers (they
    stay in `arrays`; `fill()` puts them in) and skips the check."""
    if opset not in OPSETS:
        raise NetError(f"opset {opset} is not supported (choose {OPSETS[0]}-{OPSETS[-1]})")
    net = for_inference(net)
    if fuse:
        net = fold_affine(net)
    shapes = infer(net)
    _check_translatable(shapes)
    inputs = net_inputs(net)
    input_names = {name for name, _ in inputs}
    every = outputs == "all"
    wanted = _wanted(net, None if every else outputs)
    names = _value_names(net, wanted, input_names)
    graph = _Graph(opset, set(names.values()) | net.blob_names())
    pairs = {} if every else _merged_pairs(net, shapes, names, wanted)
    current, values = _lower(graph, net, shapes, names, pairs, inputs)
    if every:
        out_values = list(dict.fromkeys(v for vs in values.values() for v in vs
                                        if v not in input_names))
    else:
        out_values = [current[b] for b in wanted]
    out_names = _name_outputs(graph, out_values, list(out_values) if every else list(wanted),
                              input_names)
    model = _model(net, graph, inputs, out_names, opset, dynamic_batch)
    _set_output_shapes(model, net, shapes, out_names, out_values, values, dynamic_batch)
    t = Translation(model, [name for name, _ in inputs], list(out_names), values,
                    graph.arrays)
    if with_data:
        t.fill()
        if check:
            check_model(model)
    return t


def _wanted(net: Net, outputs: Sequence[str] | None) -> list[str]:
    """The blobs the model outputs: Caffe's outputs, or those asked for."""
    if outputs is None:
        return net_outputs(net)
    wanted = list(dict.fromkeys(outputs))
    unknown = [b for b in wanted if b not in net.blob_names()]
    if unknown:
        raise NetError(f"no blob named {', '.join(map(repr, unknown))} in the net")
    return wanted


def _merged_pairs(net: Net, shapes, names, wanted: list[str]) -> dict[int, int]:
    """BatchNorm -> Scale pairs run as one node: those whose BatchNorm output is not asked for."""
    final = _final_writes(net)
    asked = {names.get(final.get(b)) for b in wanted}
    return {i: j for i, j in batchnorm_scale_pairs(net, shapes).items()
            if names[(i, 0)] not in asked}


def _lower(graph: "_Graph", net: Net, shapes, names, pairs: dict[int, int], inputs):
    """Every layer's nodes, in order: (the ONNX value each blob holds at the end, each layer's
    top values). Untranslatable layers are all reported in one error."""
    current = {name: name for name, _ in inputs}
    values: dict[str, list[str]] = {}
    problems: list[str] = []
    merged_into = {j: i for i, j in pairs.items()}
    for i, s in enumerate(shapes):
        layer = s.layer
        if layer.type == "Input":
            values[layer.name] = list(layer.top)
            continue
        if i in merged_into:  # its BatchNorm computed this layer's top already
            current[layer.top[0]] = values[layer.name][0]
            continue
        x = [current[b] for b in layer.bottom]
        target = pairs.get(i)
        y = [names[(target if target is not None else i, k)] for k in range(len(layer.top))]
        b = LayerBuilder(graph, layer, s, x, y)
        if target is not None:
            _batch_norm_with_scale(b, net.layers[target], shapes[target])
        else:
            try:
                CONVERTERS[layer.type](b)
            except Unsupported as exc:  # the others are translated on, to report them all
                problems.append(f"'{layer.name}' ({layer.type}: {exc})")
        tops = [b.aliases.get(k, y[k]) for k in range(len(layer.top))]
        for name, value in zip(layer.top, tops):
            current[name] = value
        values[layer.name] = tops
        if target is not None:
            values[net.layers[target].name] = tops
    if problems:
        raise untranslatable("ONNX", "prototxt_gen.backends.onnx.converter", [], problems)
    return current, values


def _name_outputs(graph: "_Graph", out_values: list[str], out_names: list[str],
                  input_names: set[str]) -> list[str]:
    """An output that is another value (an alias, or an input) gets an Identity with its name."""
    for k, (value, name) in enumerate(zip(out_values, out_names)):
        if value != name or name in input_names:
            target = name if name not in input_names else graph.fresh(f"{name}@output")
            graph.nodes.append(helper.make_node("Identity", [value], [target],
                                                name=graph.fresh_node(f"{target}/output")))
            out_names[k] = target
    return out_names


def _model(net: Net, graph: "_Graph", inputs, out_names: list[str], opset: int,
           dynamic_batch: bool) -> onnx.ModelProto:
    first_batch = next((shape[0] for _, shape in inputs if len(shape) >= 2), None)
    graph_inputs = [helper.make_tensor_value_info(
        name, TensorProto.FLOAT,
        ["batch" if dynamic_batch and len(shape) >= 2 and shape[0] == first_batch and k == 0 else d
         for k, d in enumerate(shape)]) for name, shape in inputs]
    from .. import __version__
    # Filled in place rather than through onnx.helper.make_graph/make_model, which copy every
    # initializer (hundreds of MB) once each.
    model = onnx.ModelProto(ir_version=IR_VERSION[opset], producer_name="prototxt-gen",
                            producer_version=__version__,
                            doc_string=f"{net.name or 'A Caffe network'}, translated from "
                                       "Caffe by prototxt-gen")
    model.opset_import.add(domain="", version=opset)
    g = model.graph
    g.name = net.name or "caffe_net"
    g.node.extend(graph.nodes)
    g.input.extend(graph_inputs)
    g.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                    for name in out_names)
    for name, arr in graph.arrays.items():
        tp = g.initializer.add(name=name, data_type=_DTYPES[arr.dtype], dims=arr.shape)
        if arr.dtype == np.int64:  # shapes, axes: small, and shape inference reads them
            tp.raw_data = _le_bytes(arr)
    return model


_DTYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}


def _check_translatable(shapes: list[LayerShapes]) -> None:
    missing = [s.layer for s in shapes if s.layer.type not in CONVERTERS
               and s.layer.type != "Input"]
    if missing:
        raise untranslatable("ONNX", "prototxt_gen.backends.onnx.converter", missing, [])


def _final_writes(net: Net) -> dict[str, tuple[int, int]]:
    """blob -> (layer index, top index) of its last write (inputs never written: absent)."""
    return {t: (i, k) for i, layer in enumerate(net.layers) if layer.type != "Input"
            for k, t in enumerate(layer.top)}


def _value_names(net: Net, outputs: list[str], inputs: set[str]) -> dict[tuple[int, int], str]:
    """A unique ONNX name for every (layer, top) write. Each blob's name goes to one of its
    versions: the final one for an output blob (so outputs carry Caffe's names), else the
    first; the other versions are `blob@layer`."""
    writes: dict[str, list[tuple[int, int]]] = {}
    for i, layer in enumerate(net.layers):
        if layer.type == "Input":
            continue
        for k, t in enumerate(layer.top):
            writes.setdefault(t, []).append((i, k))
    wanted = set(outputs)
    taken = set(net.blob_names())
    names: dict[tuple[int, int], str] = {}
    for blob, ws in writes.items():
        if blob in inputs:
            plain = None
        elif blob in wanted:
            plain = ws[-1]
        else:
            plain = ws[0]
        for w in ws:
            if w == plain:
                names[w] = blob
                continue
            names[w] = _unique(f"{blob}@{net.layers[w[0]].name}", taken)
    return names


def _le_bytes(arr: np.ndarray) -> bytes:
    return bytes(_le_view(arr))


def _set_output_shapes(model, net, shapes, out_names, out_values, values, dynamic) -> None:
    """Declare each output's shape from our shape inference, the batch dimension symbolic
    where it follows the input's."""
    ours = {}
    for s in shapes:
        for value, shape in zip(values.get(s.layer.name, []), s.tops):
            ours[value] = shape
    for inp in model.graph.input:
        ours.setdefault(inp.name, tuple(d.dim_value for d in inp.type.tensor_type.shape.dim))
    inferred = _inferred_dims(model) if dynamic else {}
    for out, value in zip(model.graph.output, out_values):
        shape = ours.get(value)
        if shape is None:
            continue
        dims = list(shape)
        got = inferred.get(out.name)
        if dynamic and got is not None and len(got) == len(dims) and dims and \
                isinstance(got[0], str):
            dims[0] = got[0]
        out.CopyFrom(helper.make_tensor_value_info(out.name, TensorProto.FLOAT, dims))


def _inferred_dims(model) -> dict[str, list]:
    """Output dims as ONNX's shape inference sees them (symbolic ones as their names), run on
    the graph before its weights are in (integer initializers, which shapes depend on,
    are)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        return {}
    dims = {}
    for out in inferred.graph.output:
        if out.type.tensor_type.HasField("shape"):
            dims[out.name] = [d.dim_param if d.HasField("dim_param") else d.dim_value
                              for d in out.type.tensor_type.shape.dim]
    return dims


def check_model(model: onnx.ModelProto | bytes | str | os.PathLike) -> None:
    """onnx.checker's full check (strict shape inference included) of a model, its serialized
    bytes or its file; failures are NetErrors."""
    try:
        onnx.checker.check_model(model if isinstance(model, (onnx.ModelProto, bytes))
                                 else os.fspath(model), full_check=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NetError(f"the ONNX model fails onnx.checker: {first}") from None


# -- saving ---------------------------------------------------------------------------------------

def save_onnx(net: Net, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
              fuse: bool = False, dynamic_batch: bool = True,
              outputs: Sequence[str] | None = None, external_data: bool | None = None,
              check_with: Callable[[str], None] | None = None) -> Translation:
    """Write the model to `path`, checked (see to_onnx). Weights over 2 GiB in all (or with
    external_data=True) go to `path`.data beside it, as ONNX external data. The model is
    written under a temporary name, checked there -- onnx.checker, then `check_with(path)`,
    which may raise -- and renamed into place only then: a failure leaves no output.

    The weights go from their numpy buffers straight into the file (see _write_model): no
    copy of them is made in memory, however large the model."""
    from ..fileio import atomic_open, atomic_path, check_target
    check_target(path)
    t = translate(net, opset=opset, fuse=fuse, dynamic_batch=dynamic_batch, outputs=outputs,
                  with_data=False)
    path = os.fspath(path)
    if external_data is None:
        external_data = sum(a.nbytes for a in t.arrays.values()) > EXTERNAL_DATA_THRESHOLD
    data_path = None
    if external_data:
        data_name = os.path.basename(path) + ".data"
        data_path = os.path.join(os.path.dirname(path), data_name)
        check_target(data_path)
        # The model refers to its data file by name, so the data goes to its final name.
        with atomic_open(data_path) as f:
            _write_external(f, t, data_name)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                _write_model(f, t)
            check_model(tmp)
            if check_with is not None:
                check_with(tmp)
    except BaseException:
        if data_path:
            try:
                os.unlink(data_path)
            except OSError:
                pass
        raise
    return t


def _write_external(f, t: Translation, data_name: str) -> None:
    """Move the large initializers' data to file `f`, page-aligned (runtimes map it)."""
    offset = 0
    for tp in t.model.graph.initializer:
        arr = t.arrays[tp.name]
        if arr.nbytes < 1024 or tp.raw_data:  # shapes, axes, small biases stay in the model
            continue
        pad = -offset % 4096
        f.write(b"\0" * pad)
        offset += pad
        f.write(_le_view(arr))
        tp.data_location = TensorProto.EXTERNAL
        for key, value in (("location", data_name), ("offset", str(offset)),
                           ("length", str(arr.nbytes))):
            tp.external_data.add(key=key, value=value)
        offset += arr.nbytes


_GRAPH = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
_INITIALIZER = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
_RAW_DATA = onnx.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number


def _write_model(f, t: Translation) -> None:
    """Serialize the model to `f` with each initializer's raw_data written from its array.

    Protobuf merges a message field that occurs twice, appending repeated fields: the file is
    the model without initializers, then a second `graph` field holding only the initializers,
    each encoded by hand around its array's bytes (raw_data)."""
    g = t.model.graph
    tensors = list(g.initializer)
    del g.initializer[:]
    try:
        f.write(t.model.SerializeToString())
    finally:
        g.initializer.extend(tensors)
    entries = []
    for tp in g.initializer:
        head = tp.SerializeToString()
        body = None
        if not tp.raw_data and tp.data_location != TensorProto.EXTERNAL:
            body = _le_view(t.arrays[tp.name])
            head += tag(_RAW_DATA) + varint(body.nbytes)
        size = len(head) + (body.nbytes if body is not None else 0)
        entries.append((tag(_INITIALIZER) + varint(size) + head, body))
    f.write(tag(_GRAPH) + varint(sum(len(h) + (b.nbytes if b is not None else 0)
                                  for h, b in entries)))
    for head, body in entries:
        f.write(head)
        if body is not None:
            f.write(body)


def _le_view(arr: np.ndarray) -> memoryview:
    """The array's bytes in little-endian order, without a copy where they already are."""
    arr = np.ascontiguousarray(arr, arr.dtype.newbyteorder("<"))
    return memoryview(arr.reshape(-1)).cast("B")


# -- converters -----------------------------------------------------------------------------------

def _single(b: LayerBuilder) -> None:
    if len(b.layer.bottom) != 1 or len(b.layer.top) != 1:
        raise Unsupported(f"expects 1 bottom and 1 top, has {len(b.layer.bottom)} and "
                          f"{len(b.layer.top)}")


def _conv_like(b: LayerBuilder, op_type: str) -> None:
    cp = b.layer.param.convolution_param
    axis, kernel, pad, stride, dilation, _, group = conv_geometry(cp, b.s.bottoms[0])
    if axis != 1:
        raise Unsupported(f"convolution on axis {axis} (ONNX convolves from axis 1)")
    inputs = [b.blob(0, "weight")] + ([b.blob(1, "bias")] if cp.bias_term else [])
    for k, x in enumerate(b.x):  # several bottoms share the weights
        b.out(op_type, [x] + inputs, k, kernel_shape=list(kernel), strides=list(stride),
              pads=list(pad) * 2, dilations=list(dilation), group=group)


@converter("Convolution")
def _convolution(b):
    _conv_like(b, "Conv")


@converter("Deconvolution")
def _deconvolution(b):
    _conv_like(b, "ConvTranspose")


@converter("InnerProduct")
def _inner_product(b):
    ip = b.layer.param.inner_product_param
    shape = b.s.bottoms[0]
    axis = ip.axis % len(shape)
    bias = [b.blob(1, "bias")] if ip.bias_term else []
    if axis == 1:  # (N, K) x W^T + bias: one Gemm, weights as Caffe stores them
        weight = b.blob(0, "weight")
        for k, x in enumerate(b.x):
            flat = x if len(shape) == 2 else b.op("Flatten", [x], axis=1)
            b.out("Gemm", [flat, weight] + bias, k, transB=0 if ip.transpose else 1)
        return
    # Leading axes kept: a MatMul over the flattened trailing axes.
    weight = b.blob(0, "weight", transform=None if ip.transpose else
                    lambda w: np.ascontiguousarray(w.T))
    for k, x in enumerate(b.x):
        flat = b.reshape(x, [0] * axis + [-1])
        if bias:
            b.out("Add", [b.op("MatMul", [flat, weight]), bias[0]], k)
        else:
            b.out("MatMul", [flat, weight], k)


def _pool_geometry(b: LayerBuilder):
    pp = b.layer.param.pooling_param
    kernel = spatial(pp, 2, "kernel_size", "kernel_h", "kernel_w", None)
    pad = spatial(pp, 2, "pad", "pad_h", "pad_w", 0)
    stride = spatial(pp, 2, "stride", "stride_h", "stride_w", 1)
    size, out = b.s.bottoms[0][2:], b.s.tops[0][2:]
    return kernel, pad, stride, size, out


@converter("Pooling")
def _pooling(b):
    _single(b)
    pp = b.layer.param.pooling_param
    P = caffe_pb2.PoolingParameter
    x = b.x[0]
    if len(b.s.bottoms[0]) != 4:
        raise Unsupported(f"a {len(b.s.bottoms[0])}-D input (Caffe pools 4-D blobs)")
    if pp.global_pooling:
        if pp.pool == P.STOCHASTIC:
            _stochastic_sums(b, x, (2, 3), None)
        else:
            b.out("GlobalMaxPool" if pp.pool == P.MAX else "GlobalAveragePool", [x])
        return
    kernel, pad, stride, size, out = _pool_geometry(b)
    # Caffe's output size (ceil or floor, clip rule) is already in `out`; the windows past
    # the padded input (the ceil overhang) are reached with extra padding at the end, in floor
    # mode: last window start + kernel - (input + both pads).
    stochastic = pp.pool == P.STOCHASTIC
    if stochastic:
        pad = [0, 0]  # Caffe's stochastic pooling ignores pad
    over = [max(0, (o - 1) * st + k - n - 2 * p)
            for o, st, k, n, p in zip(out, stride, kernel, size, pad)]
    geometry = dict(kernel_shape=list(kernel), strides=list(stride))
    if pp.pool == P.MAX:
        pads = list(pad) + [p + e for p, e in zip(pad, over)]
        if all(p < k for p, k in zip(pads, kernel * 2)):
            b.out("MaxPool", [x], pads=pads, **geometry)
        else:  # a window wholly in the padding: Caffe gives -FLT_MAX there
            padded = b.op("Pad", [x, b.ints([0, 0] + pads[:2] + [0, 0] + pads[2:], "pads"),
                                  b.scalar(-FLT_MAX, "pad_value")])
            b.out("MaxPool", [padded], **geometry)
        return
    if any(e >= k for e, k in zip(over, kernel)):
        raise Unsupported("a pooling window lies wholly outside the input (Caffe divides "
                          "by a size of zero or less there)")
    if stochastic:
        _stochastic_sums(b, x, None, dict(pads=[0, 0] + over, count_include_pad=1, **geometry))
        return
    if not any(over):
        # Every window lies within the padded input: Caffe divides by kernel_h*kernel_w, the
        # zero padding counted.
        b.out("AveragePool", [x], pads=list(pad) * 2, count_include_pad=1, **geometry)
        return
    # Caffe counts the padding but not the overhang beyond it: zero-pad explicitly, then
    # exclude only the overhang from the divisor.
    if any(pad):
        x = b.op("Pad", [x, b.ints([0, 0] + list(pad) + [0, 0] + list(pad), "pads")])
    b.out("AveragePool", [x], pads=[0, 0] + over, count_include_pad=0, **geometry)


def _stochastic_sums(b: LayerBuilder, x: str, axes, pool_attrs) -> None:
    """Stochastic pooling at test time: sum(x²) / sum(x) over each window, the denominator
    starting from FLT_MIN as in Caffe. With `axes`, over whole axes (global pooling)."""
    sq = b.op("Mul", [x, x])
    if axes is not None:
        num, den = b.reduce("ReduceSum", sq, axes, True), b.reduce("ReduceSum", x, axes, True)
        tiny = FLT_MIN
    else:  # window averages: the same ratio, the FLT_MIN scaled alike
        num = b.op("AveragePool", [sq], **pool_attrs)
        den = b.op("AveragePool", [x], **pool_attrs)
        tiny = FLT_MIN / math.prod(pool_attrs["kernel_shape"])
    b.out("Div", [num, b.op("Add", [den, b.scalar(tiny, "flt_min")])])


def _batch_statistics(b: LayerBuilder, x: str, eps: float) -> None:
    """(x - mean) / sqrt(var + eps) over every axis but the channels, as Caffe's BatchNorm
    does when use_global_stats is false."""
    axes = [0] + list(range(2, len(b.s.bottoms[0])))
    centered = b.op("Sub", [x, b.reduce("ReduceMean", x, axes, True)])
    var = b.reduce("ReduceMean", b.op("Mul", [centered, centered]), axes, True)
    std = b.op("Sqrt", [b.op("Add", [var, b.scalar(eps, "eps")])])
    b.out("Div", [centered, std])


def _statistics(b: LayerBuilder) -> tuple[str, str]:
    c = b.s.bottoms[0][1]
    stats = batchnorm_statistics(b.layer)
    mean, var = (np.zeros(c), np.ones(c)) if stats is None else stats
    return b.const(mean, "mean"), b.const(var, "var")


@converter("BatchNorm")
def _batch_norm(b):
    _single(b)
    bp = b.layer.param.batch_norm_param
    if bp.HasField("use_global_stats") and not bp.use_global_stats:
        _batch_statistics(b, b.x[0], batchnorm_eps(b.layer))
        return
    if len(b.s.bottoms[0]) < 2:
        raise Unsupported("a 1-D input (BatchNorm normalizes axis 1)")
    c = b.s.bottoms[0][1]
    mean, var = _statistics(b)
    b.out("BatchNormalization", [b.x[0], b.const(np.ones(c), "scale"),
                                 b.const(np.zeros(c), "bias"), mean, var], epsilon=batchnorm_eps(b.layer))


def _batch_norm_with_scale(b: LayerBuilder, scale: Layer, s: LayerShapes) -> None:
    """A BatchNorm and the per-channel Scale that reads it, as one BatchNormalization."""
    c = b.s.bottoms[0][1]
    mean, var = _statistics(b)
    sb = LayerBuilder(b.graph, scale, s, [], [])
    gamma = sb.blob(0, "scale")
    beta = sb.blob(1, "bias") if scale.param.scale_param.bias_term else \
        sb.const(np.zeros(c), "bias")
    b.out("BatchNormalization", [b.x[0], gamma, beta, mean, var], epsilon=batchnorm_eps(b.layer))


def _factor(b: LayerBuilder, sub, suffix: str) -> str:
    """Scale's factor or Bias's term -- learned blob 0, or the second bottom -- shaped to
    broadcast over the input's axes it spans."""
    shape, trailing = affine_layout(sub, b.s.bottoms)
    if len(b.x) == 2:
        if not trailing:
            return b.x[1]
        return b.unsqueeze(b.x[1], range(len(shape), len(shape) + trailing))
    return b.blob(0, suffix, shape=tuple(shape) + (1,) * trailing)


@converter("Scale")
def _scale(b):
    sp = b.layer.param.scale_param
    two = len(b.x) == 2
    factor = _factor(b, sp, "scale")
    if not sp.bias_term:
        b.out("Mul", [b.x[0], factor])
        return
    shape, trailing = affine_layout(sp, b.s.bottoms)
    bias = b.blob(1 if not two else 0, "bias", shape=tuple(shape) + (1,) * trailing)
    b.out("Add", [b.op("Mul", [b.x[0], factor]), bias])


@converter("Bias")
def _bias(b):
    b.out("Add", [b.x[0], _factor(b, b.layer.param.bias_param, "bias")])


@converter("ReLU")
def _relu(b):
    slope = b.layer.param.relu_param.negative_slope
    if slope:
        b.out("LeakyRelu", b.x, alpha=slope)
    else:
        b.out("Relu", b.x)


@converter("PReLU")
def _prelu(b):
    nd = len(b.s.bottoms[0])
    n = b.s.blobs[0][0]
    shape = (1,) if n == 1 else (n,) + (1,) * (nd - 2)
    b.out("PRelu", [b.x[0], b.blob(0, "slope", shape=shape)])


def _unary(op_type: str, **attrs):
    def convert(b):
        _single(b)
        b.out(op_type, b.x, **{k: v(b.layer) if callable(v) else v for k, v in attrs.items()})
    return convert


CONVERTERS.update({
    "Sigmoid": _unary("Sigmoid"),
    "TanH": _unary("Tanh"),
    "AbsVal": _unary("Abs"),
    "BNLL": _unary("Softplus"),
    "ELU": _unary("Elu", alpha=lambda layer: layer.param.elu_param.alpha),
})


@converter("ReLU6")
def _relu6(b):
    _single(b)
    b.out("Clip", [b.x[0], b.scalar(0.0, "min"), b.scalar(6.0, "max")])


@converter("HardSwish")
def _hard_swish(b):  # x * ReLU6(x + 3) / 6; ONNX's HardSwish op needs opset 14
    _single(b)
    x = b.x[0]
    b.out("Mul", [x, b.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])


@converter("Mish")
def _mish(b):  # x * tanh(softplus(x)); ONNX's Mish op needs opset 18
    _single(b)
    x = b.x[0]
    b.out("Mul", [x, b.op("Tanh", [b.op("Softplus", [x])])])


@converter("Clip")
def _clip(b):
    _single(b)
    cp = b.layer.param.clip_param
    b.out("Clip", [b.x[0], b.scalar(cp.min, "min"), b.scalar(cp.max, "max")])


@converter("Threshold")
def _threshold(b):
    _single(b)
    above = b.op("Greater", [b.x[0], b.scalar(b.layer.param.threshold_param.threshold,
                                               "threshold")])
    b.out("Cast", [above], to=TensorProto.FLOAT)


@converter("Swish")
def _swish(b):
    _single(b)
    beta = b.layer.param.swish_param.beta
    x = b.x[0]
    arg = x if beta == 1 else b.op("Mul", [x, b.scalar(beta, "beta")])
    b.out("Mul", [x, b.op("Sigmoid", [arg])])


@converter("Dropout", "Split")
def _identity(b):
    # Dropout is the identity at inference (Caffe scales while training); Split copies.
    for k in range(len(b.layer.top)):
        b.alias(k, b.x[0])


def _linear(b: LayerBuilder, x: str, scale: float, shift: float) -> str:
    """shift + scale * x, without the parts that do nothing."""
    if scale != 1:
        x = b.op("Mul", [x, b.scalar(scale, "scale")])
    if shift != 0:
        x = b.op("Add", [x, b.scalar(shift, "shift")])
    return x


@converter("Power")
def _power(b):
    _single(b)
    pp = b.layer.param.power_param
    base = _linear(b, b.x[0], pp.scale, pp.shift)
    if pp.power != 1:
        b.out("Pow", [base, b.scalar(pp.power, "power")])
    else:
        _rename_last(b, base)


def _rename_last(b: LayerBuilder, value: str) -> None:
    """Make top 0 the value the layer's last node wrote (or alias the input)."""
    last = b.graph.nodes[-1] if b.graph.nodes else None
    if value == b.x[0] or last is None or list(last.output) != [value]:
        b.alias(0, value)
    else:
        last.output[0] = b.y[0]
        last.name = b.graph.fresh_node(b.name)


@converter("Exp")
def _exp(b):
    _single(b)
    ep = b.layer.param.exp_param
    ln_base = 1.0 if ep.base == -1 else math.log(ep.base)
    b.out("Exp", [_linear(b, b.x[0], ep.scale * ln_base, ep.shift * ln_base)])


@converter("Log")
def _log(b):
    _single(b)
    lp = b.layer.param.log_param
    arg = _linear(b, b.x[0], lp.scale, lp.shift)
    if lp.base == -1:
        b.out("Log", [arg])
    else:
        b.out("Div", [b.op("Log", [arg]), b.scalar(math.log(lp.base), "ln_base")])


@converter("Softmax")
def _softmax(b):
    _single(b)
    b.out("Softmax", b.x, axis=b.layer.param.softmax_param.axis % len(b.s.bottoms[0]))


@converter("Eltwise")
def _eltwise(b):
    ep = b.layer.param.eltwise_param
    E = caffe_pb2.EltwiseParameter
    xs = b.x
    if ep.operation == E.MAX:
        b.out("Max", xs)
        return
    if ep.operation == E.PROD:
        acc = xs[0]
        for k, x in enumerate(xs[1:], 1):
            acc = b.out("Mul", [acc, x]) if k == len(xs) - 1 else b.op("Mul", [acc, x])
        if len(xs) == 1:
            b.alias(0, acc)
        return
    coeffs = list(ep.coeff) or [1.0] * len(xs)
    # Caffe adds coeff_k * bottom_k in order.
    acc = None
    for k, (c, x) in enumerate(zip(coeffs, xs)):
        last = k == len(xs) - 1
        term = x if abs(c) == 1 else b.op("Mul", [x, b.scalar(abs(c), f"coeff{k}")])
        if acc is None:
            acc = term if c > 0 else b.op("Neg", [term])
            if last:
                _rename_last(b, acc)
            continue
        op_type = "Sub" if c < 0 else "Add"
        acc = b.out(op_type, [acc, term]) if last else b.op(op_type, [acc, term])


@converter("Concat")
def _concat(b):
    if len(b.x) == 1:
        b.alias(0, b.x[0])
        return
    b.out("Concat", b.x, axis=concat_axis(b.layer.param.concat_param) % len(b.s.bottoms[0]))


@converter("Slice")
def _slice(b):
    sp = b.layer.param.slice_param
    axis = slice_axis(sp) % len(b.s.bottoms[0])
    if len(b.layer.top) == 1:
        b.alias(0, b.x[0])
        return
    sizes = [t[axis] for t in b.s.tops]
    b.op("Split", [b.x[0], b.ints(sizes, "split")], b.y, axis=axis)


@converter("Flatten")
def _flatten(b):
    _single(b)
    shape = b.s.bottoms[0]
    n = len(shape)
    start, end = flatten_axes(b.layer.param.flatten_param, n)
    if start == 1 and end == n - 1:
        b.out("Flatten", b.x, axis=1)
    else:
        b.reshape(b.x[0], [0] * start + [-1] + list(shape[end + 1:]), b.y)


@converter("Reshape")
def _reshape(b):
    _single(b)
    rp = b.layer.param.reshape_param
    shape = b.s.bottoms[0]
    start, end = reshape_span(rp, len(shape))
    # Caffe's 0 copies the input's dimension at the same position, as ONNX's does.
    dims = [0] * start + list(rp.shape.dim) + list(shape[end:])
    b.reshape(b.x[0], dims, b.y)


@converter("Crop")
def _crop(b):
    cp = b.layer.param.crop_param
    data, ref = b.s.bottoms[0], b.s.bottoms[1]
    axis, offsets = crop_offsets(cp, len(data))
    axes = list(range(axis, len(data)))
    ends = [o + ref[a] for o, a in zip(offsets, axes)]
    b.out("Slice", [b.x[0], b.ints(offsets, "starts"), b.ints(ends, "ends"),
                    b.ints(axes, "axes")])


@converter("Permute")
def _permute(b):
    _single(b)
    b.out("Transpose", b.x, perm=permute_order(b.layer, len(b.s.bottoms[0])))


@converter("Tile")
def _tile(b):
    _single(b)
    reps = tile_repeats(b.layer.param.tile_param, len(b.s.bottoms[0]))
    b.out("Tile", [b.x[0], b.ints(reps, "repeats")])


@converter("Reduction")
def _reduction(b):
    _single(b)
    rp = b.layer.param.reduction_param
    R = caffe_pb2.ReductionParameter
    axes = reduction_axes(rp, len(b.s.bottoms[0]))
    op_type = {R.SUM: "ReduceSum", R.ASUM: "ReduceL1", R.SUMSQ: "ReduceSumSquare",
               R.MEAN: "ReduceMean"}[rp.operation]
    if not axes:
        raise Unsupported("a reduction over no axes")
    if rp.coeff == 1:
        b.reduce(op_type, b.x[0], axes, False, b.y)
    else:
        b.out("Mul", [b.reduce(op_type, b.x[0], axes, False), b.scalar(rp.coeff, "coeff")])


@converter("LRN")
def _lrn(b):
    _single(b)
    lp = b.layer.param.lrn_param
    if lp.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS:
        b.out("LRN", b.x, size=lp.local_size, alpha=lp.alpha, beta=lp.beta, bias=lp.k)
        return
    # Within a channel: x * (1 + alpha * avg(x²))^-beta, the average over a size×size window
    # counting the zero padding (Caffe builds it from an AVE pool and a Power layer; k unused).
    x, size = b.x[0], lp.local_size
    pre = (size - 1) // 2
    avg = b.op("AveragePool", [b.op("Mul", [x, x])], kernel_shape=[size, size],
               pads=[pre] * 4, count_include_pad=1)
    base = _linear(b, avg, lp.alpha, 1.0)
    b.out("Mul", [x, b.op("Pow", [base, b.scalar(-lp.beta, "power")])])


@converter("MVN")
def _mvn(b):
    _single(b)
    mp = b.layer.param.mvn_param
    x = b.x[0]
    axes = list(range(1 if mp.across_channels else 2, len(b.s.bottoms[0])))
    if not mp.normalize_variance:
        b.out("Sub", [x, b.reduce("ReduceMean", x, axes, True)])
        return
    centered = b.op("Sub", [x, b.reduce("ReduceMean", x, axes, True)])
    std = b.op("Sqrt", [b.reduce("ReduceMean", b.op("Mul", [centered, centered]), axes, True)])
    b.out("Div", [centered, b.op("Add", [std, b.scalar(mp.eps, "eps")])])


@converter("Axpy")
def _axpy(b):
    # SENet's fork layer: top = a * x + y, a being N×C×1×1.
    a, x, y = b.x
    b.out("Add", [b.op("Mul", [a, x]), y])


@converter("Normalize")
def _normalize(b):
    _single(b)
    nd = len(b.s.bottoms[0])
    across, _, eps = normalize_params(b.layer)
    x = b.x[0]
    axes = list(range(1, nd)) if across else [1]
    norm = b.op("Sqrt", [b.op("Add", [b.reduce("ReduceSumSquare", x, axes, True),
                                      b.scalar(eps, "eps")])])
    n = b.s.blobs[0][0]
    scale = b.blob(0, "scale", shape=(1,) if n == 1 else (1, n) + (1,) * (nd - 2))
    b.out("Mul", [b.op("Div", [x, norm]), scale])


@converter("ArgMax")
def _argmax(b):
    _single(b)
    ap = b.layer.param.argmax_param
    x = b.x[0]
    k = b.ints([ap.top_k], "k")
    if ap.HasField("axis"):
        axis = ap.axis % len(b.s.bottoms[0])
        values, index = b.op("TopK", [x, k], 2, axis=axis)
        if ap.out_max_val:
            _rename_last(b, values)
        else:
            b.out("Cast", [index], to=TensorProto.FLOAT)
        return
    values, index = b.op("TopK", [b.op("Flatten", [x], axis=1), k], 2, axis=1)
    index = b.op("Cast", [index], to=TensorProto.FLOAT)
    if ap.out_max_val:
        both = b.op("Concat", [b.unsqueeze(index, [1]), b.unsqueeze(values, [1])], axis=1)
    else:
        both = b.unsqueeze(index, [1])
    b.reshape(both, [0] + list(b.s.tops[0][1:]), b.y)


@converter("ShuffleChannel")
def _shuffle_channel(b):
    _single(b)
    group = shuffle_group(b.layer)
    shape = b.s.bottoms[0]
    c, rest = shape[1], list(shape[2:])
    grouped = b.reshape(b.x[0], [0, group, c // group] + rest)
    swapped = b.op("Transpose", [grouped], perm=[0, 2, 1] + list(range(3, 3 + len(rest))))
    b.reshape(swapped, [0, c] + rest, b.y)


@converter("Silence")
def _silence(b):
    pass


@converter("Parameter")
def _parameter(b):
    b.out("Identity", [b.blob(0, "weight")])
