"""A net to an ONNX model: each layer lowered in Caffe's order, in-place writes renamed so that
every value is written once, a BatchNorm and the Scale that reads it merged, the model's
inputs, outputs and shapes declared."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...errors import NetError, Unsupported, untranslatable
from ..fuse import batchnorm_scale_pairs
from ..fuse import fuse as fold_affine
from ...graph.net import Net, net_inputs, net_outputs
from ...graph.shapes import LayerShapes, infer
from ...layers.normalization import batch_norm_with_scale
from ..inference import for_inference
from .builder import (CONVERTERS, DEFAULT_OPSET, IR_VERSION, OPSETS, LayerBuilder, _Graph,
                      _unique)


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
    _set_output_shapes(model, net, shapes, out_names, out_values, values, dynamic_batch,
                       graph.symbolic)
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
            batch_norm_with_scale(b, net.layers[target], shapes[target])
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
    from ... import __version__
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


_DTYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
           np.dtype(bool): TensorProto.BOOL}


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


def _set_output_shapes(model, net, shapes, out_names, out_values, values, dynamic,
                       symbolic) -> None:
    """Declare each output's shape from our shape inference, the batch dimension symbolic
    where it follows the input's, and the axes a lowering said depend on the data."""
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
        for axis, name in symbolic.get(value, {}).items():
            dims[axis] = name
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


def _le_bytes(arr: np.ndarray) -> bytes:
    return bytes(_le_view(arr))


def _le_view(arr: np.ndarray) -> memoryview:
    """The array's bytes in little-endian order, without a copy where they already are."""
    arr = np.ascontiguousarray(arr, arr.dtype.newbyteorder("<"))
    return memoryview(arr.reshape(-1)).cast("B")


def check_model(model: onnx.ModelProto | bytes | str | os.PathLike) -> None:
    """onnx.checker's full check (strict shape inference included) of a model, its serialized
    bytes or its file; failures are NetErrors."""
    try:
        onnx.checker.check_model(model if isinstance(model, (onnx.ModelProto, bytes))
                                 else os.fspath(model), full_check=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NetError(f"the ONNX model fails onnx.checker: {first}") from None
