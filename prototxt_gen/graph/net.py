"""The graph in the middle: a Caffe network as its input declarations plus an ordered list of
layers.

Every front end (spec generator, prototxt/caffemodel reader) builds a `Net`; every back end
(prototxt writer, PyTorch, ONNX, rendering) consumes one. A layer keeps its definition as Caffe's
own `LayerParameter` message, so field defaults, enums and exotic fields behave exactly as in Caffe;
its weights live beside it as numpy arrays.
"""
from __future__ import annotations

import copy

import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from ..proto import caffe_pb2
from ..proto.wire import INT_RANGES, is_repeated
from ..proto.prototxt import format_message, get_layout
from ..errors import NetError
from ..limits import check_layers

INPUT_STYLES = ("input_dim", "input_shape", "layer")


@dataclass
class InputBlob:
    """A network input: a blob name and its shape (N, C, H, W for images)."""

    name: str
    shape: tuple[int, ...]


class Layer:
    """One layer: `param` is its caffe.LayerParameter (without weights), `blobs` its weights.
    `text_order`, when set, lists LayerParameter fields to write first in this layer's prototxt
    text, overriding the layout (some releases order fields differently in some layers).
    `extra` holds fields a fork added to this layer that caffe.proto lacks (dotted path ->
    list of plain values), for fork layer implementations to read. `fused_from` names the
    layers fuse.py folded into this one (none for a layer of the file)."""

    __slots__ = ("param", "blobs", "text_order", "extra", "fused_from")

    def __init__(self, param: caffe_pb2.LayerParameter, blobs: Iterable[Any] = (),
                 text_order: tuple[str, ...] | None = None,
                 extra: dict[str, list] | None = None, fused_from: tuple[str, ...] = ()):
        self.param = param
        self.blobs = list(blobs)
        self.text_order = text_order
        self.extra = extra or {}
        self.fused_from = tuple(fused_from)

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def type(self) -> str:
        return self.param.type

    @property
    def bottom(self) -> Sequence[str]:
        return self.param.bottom

    @property
    def top(self) -> Sequence[str]:
        return self.param.top

    @property
    def in_place(self) -> bool:
        """True when the layer overwrites its input blob (BatchNorm/Scale/ReLU in ResNets)."""
        return len(self.param.top) > 0 and list(self.param.top) == list(self.param.bottom)

    def extra_values(self, message: str, field: str) -> list:
        """Every value of a fork field `message.field` kept in `extra` (e.g. permute_param.order);
        `message` may name a nested one, e.g. detection_output_param.nms_param."""
        outer, *inner = message.split(".")
        messages = [m for m in self.extra.get(outer, []) if isinstance(m, dict)]
        for name in inner:
            messages = [sub for m in messages for sub in m.get(name, []) if isinstance(sub, dict)]
        return [v for m in messages for v in m.get(field, [])]

    def extra_value(self, message: str, field: str, default: Any) -> Any:
        """The first value of a fork field, or `default`."""
        values = self.extra_values(message, field)
        return values[0] if values else default

    def __repr__(self) -> str:
        return (f"Layer({self.name!r}, {self.type!r}, bottom={list(self.bottom)}, "
                f"top={list(self.top)})")


class Net:
    """A Caffe network: name, inputs, layers in execution order."""

    def __init__(self, name: str = "", inputs: Iterable[InputBlob] = (),
                 layers: Iterable[Layer] = ()):
        self.name = name
        self.inputs: list[InputBlob] = list(inputs)
        self.layers: list[Layer] = list(layers)
        # Name of the Input layer when inputs are written as one (default: the blob's name).
        self.input_layer_name: str | None = None
        # What the reader noticed (fork fields, duplicate names...) and what it upgraded from
        # old syntax, one line each.
        self.warnings: list[str] = []
        self.notes: list[str] = []
        # Shapes the user gave for tops of layers that read data (Net.set_shape).
        self.top_shapes: dict[str, tuple[int, ...]] = {}
        self._indexed: tuple | None = None

    # -- building ---------------------------------------------------------------------------------

    def add_input(self, name: str, shape: Sequence[int]) -> InputBlob:
        if any(i.name == name for i in self.inputs):
            raise NetError(f"input '{name}' is declared twice")
        shape = tuple(int(d) for d in shape)
        if not shape or any(d <= 0 for d in shape):
            raise NetError(f"input '{name}': shape {shape} must have positive dimensions")
        blob = InputBlob(name, shape)
        self.inputs.append(blob)
        return blob

    def copy(self, layers: Iterable[Layer] | None = None) -> "Net":
        """A net with this one's inputs, notes and settings, and copies of its layers (or
        `layers`): inputs, layer lists and weights can change without touching this one (the
        LayerParameter messages are shared)."""
        out = Net(self.name, [copy.copy(i) for i in self.inputs])
        out.input_layer_name = self.input_layer_name
        out.warnings, out.notes = list(self.warnings), list(self.notes)
        out.top_shapes = dict(self.top_shapes)
        out.layers = list(layers) if layers is not None else [
            Layer(layer.param, layer.blobs, layer.text_order, layer.extra, layer.fused_from)
            for layer in self.layers]
        return out

    def set_shape(self, name: str, shape: Sequence[int]) -> None:
        """Give blob `name` this shape: a net input's, an Input layer's top, or a top of a
        layer that reads data (Data, ImageData, HDF5Data, Python... any without bottoms), whose
        shape the prototxt may not say."""
        shape = tuple(int(d) for d in shape)
        if not shape or any(d <= 0 for d in shape):
            raise NetError(f"'{name}': shape {shape} must have positive dimensions")
        for blob in self.inputs:
            if blob.name == name:
                blob.shape = shape
                return
        for layer in self.layers:
            if name not in layer.top:
                continue
            if layer.type == "Input":
                k = list(layer.top).index(name)
                shapes = input_layer_shapes(layer.param)
                shapes[k] = shape
                del layer.param.input_param.shape[:]
                for s in shapes:
                    layer.param.input_param.shape.add(dim=s)
                return
            if layer.bottom and layer.type != "Python":
                raise NetError(f"'{name}' is computed by layer '{layer.name}' "
                               f"({layer.type}); only inputs and the tops of layers that "
                               "read data take a shape")
            self.top_shapes[name] = shape
            return
        raise NetError(f"no input or data layer top named '{name}'")

    def add_layer(self, type: str, name: str, bottom: str | Sequence[str] = (),
                  top: str | Sequence[str] | None = None, **fields: Any) -> Layer:
        """Append a layer; `fields` are LayerParameter fields as plain values or nested dicts,
        e.g. ``convolution_param=dict(num_output=64, kernel_size=7, pad=3, stride=2)``.
        `top` defaults to the layer's name. Bottoms must already exist."""
        check_layers(len(self.layers) + 1)
        bottoms = [bottom] if isinstance(bottom, str) else list(bottom)
        tops = [name] if top is None else ([top] if isinstance(top, str) else list(top))
        layer_names, known = self._index()
        if name in layer_names:
            raise NetError(f"layer '{name}': a layer with this name already exists")
        for b in bottoms:
            if b not in known:
                raise NetError(f"layer '{name}': bottom '{b}' is not produced by any earlier "
                               "layer or input")
        for t in tops:
            if t in known and t not in bottoms:
                raise NetError(f"layer '{name}': top '{t}' is already produced by another layer")
        param = caffe_pb2.LayerParameter(name=name, type=type, bottom=bottoms, top=tops)
        set_fields(param, fields, f"layer '{name}'")
        layer = Layer(param)
        self.layers.append(layer)
        layer_names.add(name)
        known.update(tops)
        self._indexed = (len(self.inputs), len(self.layers), layer_names, known)
        return layer

    def _index(self) -> tuple[set[str], set[str]]:
        """Layer names and blob names, kept up to date incrementally while layers are appended
        through add_layer (rebuilt if the lists were changed by other means)."""
        cached = self._indexed
        if cached and cached[0] == len(self.inputs) and cached[1] == len(self.layers):
            return cached[2], cached[3]
        return {layer.name for layer in self.layers}, self.blob_names()

    # -- queries ----------------------------------------------------------------------------------

    def blob_names(self) -> set[str]:
        names = {i.name for i in self.inputs}
        for layer in self.layers:
            names.update(layer.top)
        return names

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        close = difflib.get_close_matches(name, [layer.name for layer in self.layers], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise KeyError(f"no layer named '{name}'{hint}")

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return f"Net({self.name!r}, inputs={self.inputs}, {len(self.layers)} layers)"

    # -- conversion -------------------------------------------------------------------------------

    def to_proto(self, input_style: str = "layer") -> caffe_pb2.NetParameter:
        """The network as a caffe.NetParameter, declaring inputs in one of Caffe's three forms:
        `input_dim` (input + 4 input_dim each), `input_shape` (input + input_shape) or `layer`
        (one Input layer)."""
        if input_style not in INPUT_STYLES:
            raise NetError(f"unknown input style '{input_style}' (expected one of: "
                           f"{', '.join(INPUT_STYLES)})")
        proto = caffe_pb2.NetParameter()
        if self.name:
            proto.name = self.name
        if self.inputs and input_style == "layer":
            layer = proto.layer.add(type="Input")
            layer.name = self.input_layer_name or (
                self.inputs[0].name if len(self.inputs) == 1 else "input")
            for blob in self.inputs:
                layer.top.append(blob.name)
                layer.input_param.shape.add(dim=blob.shape)
        else:
            for blob in self.inputs:
                proto.input.append(blob.name)
                if input_style == "input_shape":
                    proto.input_shape.add(dim=blob.shape)
                elif len(blob.shape) != 4:
                    raise NetError(f"input '{blob.name}' has shape {blob.shape}: input_dim can "
                                   "only declare 4-D inputs (use input_shape or an Input layer)")
                else:
                    proto.input_dim.extend(blob.shape)
        proto.layer.extend(layer.param for layer in self.layers)
        return proto

    def to_prototxt(self, layout: str = "modern", input_style: str | None = None) -> str:
        """Prototxt text. `layout` is a name from prototxt.LAYOUTS ("original": the 2016 ResNet
        release's tabs and field order; "modern": Caffe's own writer). The input style defaults
        to the layout's."""
        lay = get_layout(layout)
        proto = self.to_proto(input_style or lay.input_style)
        first = len(proto.layer) - len(self.layers)  # an Input layer may come first
        orders = {first + k: layer.text_order for k, layer in enumerate(self.layers)
                  if layer.text_order}
        return format_message(proto, lay, layer_orders=orders)

    @classmethod
    def from_proto(cls, proto: caffe_pb2.NetParameter, phase: str | None = None) -> "Net":
        """A Net from a NetParameter in any historical syntax (upgraded as Caffe does), keeping
        the layers of `phase` (default: the file's state, TEST if none). An Input layer in first
        position becomes the net's input declaration. Weights in the message are not copied:
        see caffemodel.load_weights."""
        from ..proto.upgrade import make_state, upgrade_net
        up = upgrade_net(proto)
        return cls._from_upgraded(up, make_state(up.state, phase))

    @classmethod
    def _from_upgraded(cls, up, state, extras: dict | None = None) -> "Net":
        from ..proto.upgrade import layer_included
        net = cls(up.name)
        net.notes = list(up.notes)
        for name, shape in up.inputs:
            net.add_input(name, shape)
        first = True
        for lp, origin in zip(up.layers, up.origins):
            if not layer_included(state, lp):
                continue
            if first and lp.type == "Input" and not up.inputs:
                for top, shape in zip(lp.top, input_layer_shapes(lp)):
                    net.add_input(top, shape)
                net.input_layer_name = lp.name
                first = False
                continue
            first = False
            param = caffe_pb2.LayerParameter()
            param.CopyFrom(lp)
            del param.blobs[:]
            extra = extras.get(origin) if extras else None
            net.layers.append(Layer(param, extra=extra))
        return net

    def check(self) -> None:
        """Caffe's graph rules: every bottom is produced by an earlier layer or an input, no
        blob is produced twice except in place. Duplicate layer names only warn (Caffe
        accepts them, but weights are matched by name)."""
        producer: dict[str, str] = {i.name: f"input '{i.name}'" for i in self.inputs}
        later: dict[str, int] = {}
        for k, layer in enumerate(self.layers):
            for t in layer.top:
                later.setdefault(t, k)
        names: set[str] = set()
        for k, layer in enumerate(self.layers):
            where = f"layer '{layer.name}' ({layer.type})"
            if layer.name in names:
                self.warnings.append(f"{where}: another layer has the same name; weights are "
                                     "matched to the first")
            names.add(layer.name)
            for b in layer.bottom:
                if b in producer:
                    continue
                if b in later:
                    cycle = self._cycle_through(k)
                    if cycle:
                        raise NetError(f"{where}: the graph has a cycle: "
                                       + " -> ".join(c if c.startswith("... (") else f"'{c}'"
                                                     for c in cycle))
                    raise NetError(f"{where}: bottom '{b}' is produced only later, by layer "
                                   f"'{self.layers[later[b]].name}' (Caffe runs layers in "
                                   "file order)")
                raise NetError(f"{where}: bottom '{b}' is not produced by any layer or input")
            for t in layer.top:
                if t in producer and t not in layer.bottom:
                    raise NetError(f"{where}: top '{t}' is already produced by {producer[t]} "
                                   "(only an in-place layer may reuse a blob name)")
                producer[t] = f"layer '{layer.name}'"

    def _cycle_through(self, start: int) -> list[str] | None:
        """Layer names on a cycle through layer `start`, following bottoms to any producer."""
        producers: dict[str, list[int]] = {}
        for k, layer in enumerate(self.layers):
            for t in layer.top:
                if t not in layer.bottom:
                    producers.setdefault(t, []).append(k)
        # Depth-first with an explicit stack: a cycle may run through any number of layers.
        path = [start]
        todo = [self._producers_of(start, producers)]
        seen = {start}
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                path.pop()
                continue
            if nxt == start:
                names = [self.layers[k].name for k in reversed(path)]
                names.append(names[0])
                if len(names) > 12:
                    names = names[:5] + [f"... ({len(names) - 10} more)"] + names[-5:]
                return names
            if nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                todo.append(self._producers_of(nxt, producers))
        return None

    def _producers_of(self, k: int, producers: dict[str, list[int]]) -> Iterator[int]:
        return (p for b in self.layers[k].bottom for p in producers.get(b, ()))


def input_layer_shapes(param: caffe_pb2.LayerParameter) -> list[tuple[int, ...]]:
    """The shape of each top of an Input layer: one `shape` per top, or one for all (Caffe's
    InputLayer rule)."""
    shapes = [tuple(s.dim) for s in param.input_param.shape]
    tops = len(param.top)
    if len(shapes) == 1:
        return shapes * tops
    if len(shapes) != tops:
        raise NetError(f"layer '{param.name}': {tops} tops but {len(shapes)} input shapes")
    return shapes


def net_inputs(net: "Net") -> list[tuple[str, tuple[int, ...]]]:
    """The net's inputs with their shapes: the declared ones (input/input_shape/input_dim),
    then the tops of Input layers, in order."""
    found = [(b.name, tuple(b.shape)) for b in net.inputs]
    for layer in net.layers:
        if layer.type == "Input":
            found += zip(layer.top, input_layer_shapes(layer.param))
    return found


def net_outputs(net: "Net") -> list[str]:
    """Caffe's net outputs: the blobs no later layer reads, sorted by name (Caffe keeps them in
    a std::set, so that is the order pycaffe and every Caffe tool report them in)."""
    available = {b.name: None for b in net.inputs}
    for layer in net.layers:
        for b in layer.bottom:
            available.pop(b, None)
        for t in layer.top:
            available[t] = None
    return sorted(available)


# -- filling protobuf messages from plain Python values -------------------------------------------

def set_fields(msg: Message, values: dict[str, Any], where: str, _prefix: str = "") -> None:
    """Set fields of `msg` from a dict of plain values: scalars, enum names ("MAX"), lists for
    repeated fields, dicts (or messages) for sub-messages. Errors name `where` and the field path
    (`layer 'c': convolution_param.num_output: ...`)."""
    desc = msg.DESCRIPTOR
    for key, value in values.items():
        fd = desc.fields_by_name.get(key)
        if fd is None:
            close = difflib.get_close_matches(key, list(desc.fields_by_name), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise NetError(f"{where}: {desc.name} has no field '{_prefix}{key}'{hint}")
        path = f"{_prefix}{key}"
        if is_repeated(fd):
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            container = getattr(msg, key)
            if fd.message_type is not None:
                for item in items:
                    _set_message(container.add(), item, where, path)
            else:
                container.extend(_scalar(fd, v, f"{where}: {path}") for v in items)
        elif fd.message_type is not None:
            _set_message(getattr(msg, key), value, where, path)
        else:
            setattr(msg, key, _scalar(fd, value, f"{where}: {path}"))


def _set_message(sub: Message, value: Any, where: str, path: str) -> None:
    if isinstance(value, Message):
        sub.CopyFrom(value)
    elif isinstance(value, dict):
        sub.SetInParent()
        set_fields(sub, value, where, path + ".")
    else:
        raise NetError(f"{where}: {path}: expected a table of {sub.DESCRIPTOR.name} fields, "
                       f"got {value!r}")


def _scalar(fd: FieldDescriptor, value: Any, path: str) -> Any:
    if fd.enum_type is not None and isinstance(value, str):
        enum_value = fd.enum_type.values_by_name.get(value)
        if enum_value is None:
            names = ", ".join(v.name for v in fd.enum_type.values)
            raise NetError(f"{path}: '{value}' is not one of {names}")
        return enum_value.number
    if fd.type == FieldDescriptor.TYPE_BOOL and not isinstance(value, bool):
        raise NetError(f"{path}: expected true or false, got {value!r}")
    if fd.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64,
                       FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_UINT64):
        if isinstance(value, bool) or not isinstance(value, int):
            raise NetError(f"{path}: expected an integer, got {value!r}")
        low, high = INT_RANGES[fd.cpp_type]
        if value < 0 and low == 0:
            raise NetError(f"{path}: expected a non-negative integer, got {value}")
        if not low <= value <= high:
            raise NetError(f"{path}: {value} is outside what Caffe's field holds ({low} to {high})")
    if fd.cpp_type in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NetError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if fd.type == FieldDescriptor.TYPE_STRING and not isinstance(value, str):
        raise NetError(f"{path}: expected a string, got {value!r}")
    return value
