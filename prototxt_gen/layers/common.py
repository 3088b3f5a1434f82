"""What the layer families share: parameter readers and checks for shape rules, and the
helpers lowerings use. A lowering gets a back end's builder `b` with the layer (`b.layer`), its
shapes (`b.s`: bottoms, tops, weight blobs) and its inputs (`b.x`); see backends/pytorch and
backends/onnx for what each builder adds."""
from __future__ import annotations

import math
from typing import Any, Sequence

from ..errors import Unsupported, shown
from ..graph.net import Layer
from ..graph.shapes import Shape, ShapeMismatch
from ..proto.prototxt import format_float32
from ..proto.wire import is_repeated

# float32's largest and smallest normal values (Caffe's FLT_MAX, FLT_MIN)
FLT_MAX = 3.4028234663852886e38
FLT_MIN = 1.1754943508222875e-38


# -- shapes: parameter readers and checks -------------------------------------------------------

def axis_index(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ShapeMismatch(f"axis {axis} is out of range for a {ndim}-D blob")
    return axis % ndim


def one_bottom(bottoms: list[Shape]) -> Shape:
    if len(bottoms) != 1:
        raise ShapeMismatch(f"expects 1 bottom, got {len(bottoms)}")
    return bottoms[0]


def spatial(p, n: int, name: str, h: str, w: str, default: int | None) -> list[int]:
    """A per-spatial-axis value given as `name` (once, or once per axis) or as `h`/`w` (2-D)."""
    if is_repeated(p.DESCRIPTOR.fields_by_name[name]):  # Convolution: repeated, N-D
        values = list(getattr(p, name))
    else:                                                # Pooling: optional, 2-D
        values = [getattr(p, name)] if p.HasField(name) else []
    if p.HasField(h) or p.HasField(w):
        if values:
            raise ShapeMismatch(f"give either {name} or {h}/{w}, not both")
        if n != 2:
            raise ShapeMismatch(f"{h}/{w} only apply to 2-D data")
        if not (p.HasField(h) and p.HasField(w)):
            raise ShapeMismatch(f"{h} and {w} must be given together")
        return [getattr(p, h), getattr(p, w)]
    if not values:
        if default is None:
            raise ShapeMismatch(f"{name} (or {h}/{w}) is required")
        return [default] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ShapeMismatch(f"{name} has {len(values)} values for {n} spatial axes")
    return values


def same_bottoms(bottoms: list[Shape]) -> Shape:
    if not bottoms:
        raise ShapeMismatch("expects at least 1 bottom")
    if any(b != bottoms[0] for b in bottoms):
        raise ShapeMismatch("all bottoms must have the same shape")
    return bottoms[0]


_KINDS = {bool: "true or false", int: "an integer", float: "a finite number"}


def fork_given(layer: Layer, message: str, field: str) -> bool:
    """Whether the file gives the fork field `message.field` (has_field for forks' fields)."""
    return bool(layer.extra_values(message, field))


def fork_value(layer: Layer, message: str, field: str, default: Any, kind: type) -> Any:
    """A fork field's first value (layer.extra: any value may come, since no schema checked
    it), checked to be of `kind` (bool, int or float). A bool may be written 1 or 0, as
    protobuf's text format allows (OpenCV's face detector: `clip: 1`)."""
    value = layer.extra_value(message, field, default)
    if kind is bool and type(value) is int and value in (0, 1):
        value = bool(value)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ShapeMismatch(f"{message}.{field} must be {_KINDS[kind]}, not {shown(value)}")
    return kind(value)


# -- lowerings ----------------------------------------------------------------------------

def lit(v: Any) -> str:
    """A Python literal for a value in generated code (floats as the shortest float32 text)."""
    if isinstance(v, float):
        return format_float32(v) if math.isfinite(v) else f"float('{v}')"
    if isinstance(v, tuple):
        return "(" + ", ".join(map(lit, v)) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(map(lit, v)) + "]"
    return repr(v)


def one(values: Sequence[int]):
    """A per-axis tuple, or one int when all axes agree (nn's own convention)."""
    values = tuple(int(v) for v in values)
    return values[0] if len(set(values)) == 1 else values


def each_bottom(expr: str, layer: Layer) -> tuple[str, bool]:
    """A layer applied to each of several bottoms (Caffe shares the weights): a tuple."""
    if len(layer.bottom) == 1:
        return expr % 0, False
    return "(" + ", ".join(expr % k for k in range(len(layer.bottom))) + ")", True


def same_text(values) -> str:
    """Per-axis values for a label: one number when the axes agree (3), else 3×5."""
    values = list(values)
    return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))


def window_text(p, n: int) -> str:
    """A window's kernel, stride and padding for a label: 3×3, /2, pad 1."""
    kernel = spatial(p, n, "kernel_size", "kernel_h", "kernel_w", 1)
    stride = spatial(p, n, "stride", "stride_h", "stride_w", 1)
    pad = spatial(p, n, "pad", "pad_h", "pad_w", 0)
    return f"{'×'.join(map(str, kernel))}, /{same_text(stride)}" + (
        f", pad {same_text(pad)}" if any(pad) else "")


def single(b) -> None:
    """Refuse a layer with other than one bottom and one top (a lowering that needs that)."""
    if len(b.layer.bottom) != 1 or len(b.layer.top) != 1:
        raise Unsupported(f"expects 1 bottom and 1 top, has {len(b.layer.bottom)} and "
                          f"{len(b.layer.top)}")


def linear_onnx(b, x: str, scale: float, shift: float) -> str:
    """shift + scale * x, without the parts that do nothing."""
    if scale != 1:
        x = b.op("Mul", [x, b.scalar(scale, "scale")])
    if shift != 0:
        x = b.op("Add", [x, b.scalar(shift, "shift")])
    return x
