"""Prototxt text: a writer that walks protobuf messages in a chosen layout, and the text parser.

The writer produces protobuf text format (what google.protobuf's parser and Caffe read back),
but controls what the stock writers cannot: field order per message type, indentation, blank
lines between layers and one-line sub-messages. That is what it takes to regenerate the 2016
ResNet release byte for byte ("original") and to match Caffe's own output ("modern").
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Mapping

from google.protobuf import text_encoding, text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from . import caffe_pb2
from .wire import is_repeated
from ..errors import NetError

_FLOAT = FieldDescriptor.CPPTYPE_FLOAT
_DOUBLE = FieldDescriptor.CPPTYPE_DOUBLE
_BOOL = FieldDescriptor.CPPTYPE_BOOL
_ENUM = FieldDescriptor.CPPTYPE_ENUM
_STRING = FieldDescriptor.CPPTYPE_STRING
_MESSAGE = FieldDescriptor.CPPTYPE_MESSAGE


@dataclass(frozen=True)
class Layout:
    """How to lay out prototxt text."""

    name: str
    indent: str
    # Per message type (full name): fields written first, in this order; the rest follow in
    # field-number order, as Caffe's C++ writer does.
    field_order: dict[str, tuple[str, ...]] = field(default_factory=dict)
    blank_after_header: bool = False  # an empty line between the net's header and its first layer
    blank_after_layer: bool = False   # an empty line after every layer
    # Message types written on one line: `input_param { shape: { dim: 1 dim: 3 } }`.
    inline: frozenset[str] = frozenset()
    input_style: str = "layer"        # default input declaration (see Net.to_proto)
    description: str = ""


LAYOUTS = {
    "original": Layout(
        "original", "\t",
        field_order={
            "caffe.LayerParameter": ("bottom", "top", "name", "type"),
            "caffe.ConvolutionParameter": ("num_output", "kernel_size", "pad", "stride",
                                           "bias_term"),
            "caffe.PoolingParameter": ("kernel_size", "stride", "pool"),
        },
        blank_after_header=True, blank_after_layer=True, input_style="input_dim",
        description="the 2016 ResNet release: tabs, bottom/top/name/type, a blank line per layer"),
    "modern": Layout(
        "modern", "  ", inline=frozenset({"caffe.InputParameter"}), input_style="layer",
        description="BVLC's current files: 2 spaces, Caffe's field order, an Input layer"),
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise NetError(f"unknown layout '{name}' (expected one of: {', '.join(LAYOUTS)})") from None


def format_message(msg: Message, layout: Layout | str = "modern",
                   layer_orders: Mapping[int, tuple[str, ...]] | None = None) -> str:
    """Text of a message (normally a NetParameter) in the given layout, ending with a newline.
    `layer_orders` maps an index in NetParameter.layer to the fields that layer writes first."""
    if isinstance(layout, str):
        layout = get_layout(layout)
    lines: list[str] = []
    is_net = msg.DESCRIPTOR.full_name == "caffe.NetParameter"
    in_header = True
    for fd, value in _ordered_fields(msg, layout):
        if is_net and fd.name in ("layer", "layers"):
            if in_header and lines and layout.blank_after_header:
                lines.append("")
            in_header = False
            for k, layer in enumerate(value):
                lead = layer_orders.get(k) if layer_orders and fd.name == "layer" else None
                _emit_field(lines, fd, layer, 0, layout, lead)
                if layout.blank_after_layer:
                    lines.append("")
        else:
            _emit(lines, fd, value, 0, layout)
    return "\n".join(lines) + "\n"


def _ordered_fields(msg: Message, layout: Layout, lead: tuple[str, ...] | None = None) -> list:
    fields = msg.ListFields()  # set fields, by field number
    lead = lead or layout.field_order.get(msg.DESCRIPTOR.full_name)
    if lead:
        rank = {name: k for k, name in enumerate(lead)}
        fields.sort(key=lambda fv: rank.get(fv[0].name, len(rank)))
    return fields


def _emit(lines: list[str], fd: FieldDescriptor, value, depth: int, layout: Layout) -> None:
    if is_repeated(fd):
        for item in value:
            _emit_field(lines, fd, item, depth, layout)
    else:
        _emit_field(lines, fd, value, depth, layout)


def _emit_field(lines: list[str], fd: FieldDescriptor, value, depth: int, layout: Layout,
                lead: tuple[str, ...] | None = None) -> None:
    pad = layout.indent * depth
    if fd.cpp_type != _MESSAGE:
        lines.append(f"{pad}{fd.name}: {format_scalar(fd, value)}")
    elif value.DESCRIPTOR.full_name in layout.inline:
        lines.append(f"{pad}{fd.name} {{ {_inline_body(value, layout)}}}")
    else:
        lines.append(f"{pad}{fd.name} {{")
        for sub_fd, sub_value in _ordered_fields(value, layout, lead):
            _emit(lines, sub_fd, sub_value, depth + 1, layout)
        lines.append(f"{pad}}}")


def _inline_body(msg: Message, layout: Layout) -> str:
    parts = []
    for fd, value in _ordered_fields(msg, layout):
        for item in (value if is_repeated(fd) else (value,)):
            if fd.cpp_type == _MESSAGE:
                parts.append(f"{fd.name}: {{ {_inline_body(item, layout)}}} ")
            else:
                parts.append(f"{fd.name}: {format_scalar(fd, item)} ")
    return "".join(parts)


def format_scalar(fd: FieldDescriptor, value) -> str:
    cpp = fd.cpp_type
    if cpp == _STRING:
        if fd.type == FieldDescriptor.TYPE_BYTES:
            return '"' + text_encoding.CEscape(value, as_utf8=False) + '"'
        return '"' + text_encoding.CEscape(value, as_utf8=True) + '"'
    if cpp == _BOOL:
        return "true" if value else "false"
    if cpp == _ENUM:
        enum_value = fd.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else str(value)
    if cpp == _FLOAT:
        return format_float32(value)
    if cpp == _DOUBLE:
        return _format_special(value) or repr(value)
    return str(value)


def format_float32(value: float) -> str:
    """Shortest %g text that reads back as the same float32 (`1`, `0.5`, `1e-05`, `0.17`), the
    way Caffe's C++ writer prints floats."""
    special = _format_special(value)
    if special:
        return special
    target = struct.pack("<f", value)
    for digits in (6, 7, 8, 9):
        text = f"{value:.{digits}g}"
        if struct.pack("<f", float(text)) == target:
            return text
    return f"{value:.9g}"


def _format_special(value: float) -> str | None:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


# -- reading --------------------------------------------------------------------------------------

def parse_prototxt(text: str, source: str = "<string>",
                   message: Message | None = None) -> caffe_pb2.NetParameter:
    """Parse prototxt text into a NetParameter (or into `message`). Syntax errors and unknown fields
    raise NetError "source:line:column: what is wrong"."""
    msg = message if message is not None else caffe_pb2.NetParameter()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        where = source
        if exc.GetLine() is not None:
            where += f":{exc.GetLine()}"
            if exc.GetColumn() is not None:
                where += f":{exc.GetColumn()}"
        detail = str(exc)
        # The message repeats "line:col : " in front; keep only the explanation.
        if " : " in detail:
            detail = detail.split(" : ", 1)[1]
        raise NetError(f"{where}: {detail}") from None
    return msg
