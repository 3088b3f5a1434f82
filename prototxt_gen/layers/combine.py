"""Layers that join or split blobs: Eltwise (SUM with coefficients, PROD, MAX), Concat, Slice,
Split, SENet's Axpy fork layer, and Silence."""
from __future__ import annotations

from ..graph.shapes import ShapeMismatch, format_shape
from ..proto import caffe_pb2
from ..registry import draw, label, onnx_lowering, rule, torch_lowering
from .common import axis_index, lit, one_bottom

draw("elementwise / concat", "Eltwise", "Concat", "Slice", "Split", "Axpy", "Silence")


# -- shapes -----------------------------------------------------------------------------

@rule("Eltwise")
def _eltwise_shape(layer, bottoms):
    p = layer.param
    if len(bottoms) < 2:
        raise ShapeMismatch(f"Eltwise needs at least 2 bottoms, got {len(bottoms)}")
    if any(b != bottoms[0] for b in bottoms):
        raise ShapeMismatch("all bottoms must have the same shape: "
                            + ", ".join(format_shape(b) for b in bottoms))
    ep = p.eltwise_param
    if ep.coeff and ep.operation != caffe_pb2.EltwiseParameter.SUM:
        raise ShapeMismatch("coeff only applies to the SUM operation")
    if ep.coeff and len(ep.coeff) != len(bottoms):
        raise ShapeMismatch(f"{len(ep.coeff)} coeffs for {len(bottoms)} bottoms")
    return [bottoms[0]], []


@rule("Concat")
def _concat_shape(layer, bottoms):
    p = layer.param
    if not bottoms:
        raise ShapeMismatch("Concat needs at least 1 bottom")
    axis = axis_index(concat_axis(p.concat_param), len(bottoms[0]))
    first = bottoms[0]
    for b in bottoms[1:]:
        if len(b) != len(first) or b[:axis] + b[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ShapeMismatch(f"bottoms differ outside the concat axis {axis}: "
                                + ", ".join(format_shape(x) for x in bottoms))
    total = sum(b[axis] for b in bottoms)
    return [bottoms[0][:axis] + (total,) + bottoms[0][axis + 1:]], []


def concat_axis(cp) -> int:
    """Concat's axis: `axis`, or the legacy `concat_dim` when only that is given."""
    return cp.axis if cp.HasField("axis") or not cp.HasField("concat_dim") else cp.concat_dim


@rule("Split")
def _split_shape(layer, bottoms):
    p = layer.param
    bottom = one_bottom(bottoms)
    return [bottom] * max(1, len(p.top)), []


@rule("Axpy")
def _axpy_shape(layer, bottoms):
    # SENet's fork layer: top = a * x + y, with a (N, C, 1, 1) scaling x (N, C, H, W) per channel.
    if len(bottoms) != 3:
        raise ShapeMismatch(f"Axpy needs 3 bottoms (a, x, y), got {len(bottoms)}")
    a, x, y = bottoms
    if x != y:
        raise ShapeMismatch(f"x {format_shape(x)} and y {format_shape(y)} must have the same shape")
    if len(a) < 2 or a[:2] != x[:2] or any(d != 1 for d in a[2:]):
        raise ShapeMismatch(f"a {format_shape(a)} must be N×C×1×1 for x {format_shape(x)}")
    return [x], []


@rule("Slice")
def _slice_shape(layer, bottoms):
    sp = layer.param.slice_param
    bottom = one_bottom(bottoms)
    axis = axis_index(slice_axis(sp), len(bottom))
    size = bottom[axis]
    tops = len(layer.top)
    points = list(sp.slice_point)
    if points:
        if len(points) != tops - 1:
            raise ShapeMismatch(f"{len(points)} slice points need {len(points) + 1} tops, "
                                f"the layer has {tops}")
        bounds = [0] + points + [size]
        if any(b >= e for b, e in zip(bounds, bounds[1:])):
            raise ShapeMismatch(f"slice points {points} must increase within 1..{size - 1}")
        sizes = [e - b for b, e in zip(bounds, bounds[1:])]
    else:
        if tops < 1 or size % tops:
            raise ShapeMismatch(f"axis {axis} of size {size} does not split evenly into "
                                f"{tops} tops")
        sizes = [size // tops] * tops
    return [bottom[:axis] + (n,) + bottom[axis + 1:] for n in sizes], []


def slice_axis(sp) -> int:
    """Slice's axis: `axis`, or the legacy `slice_dim` when only that is given."""
    return sp.axis if sp.HasField("axis") or not sp.HasField("slice_dim") else sp.slice_dim


@rule("Silence")
def _silence_shape(layer, bottoms):
    return [], []


# -- the picture's label -------------------------------------------------------------------

@label("Eltwise")
def _eltwise_label(layer, s):
    ep = layer.param.eltwise_param
    op = ep.EltwiseOp.Name(ep.operation)
    return [op + (f", coeff {', '.join(f'{c:g}' for c in ep.coeff)}" if ep.coeff else "")]


# -- PyTorch ----------------------------------------------------------------------------

@torch_lowering("Eltwise")
def _eltwise_torch(b):
    layer = b.layer
    ep = layer.param.eltwise_param
    E = caffe_pb2.EltwiseParameter
    n = len(layer.bottom)
    if ep.operation == E.PROD:
        return b.emit(" * ".join(f"{{{k}}}" for k in range(n)))
    if ep.operation == E.MAX:
        expr = "{0}"
        for k in range(1, n):
            expr = f"torch.maximum({expr}, {{{k}}})"
        return b.emit(expr)
    coeffs = list(ep.coeff) or [1.0] * n
    expr = ""
    for k, c in enumerate(coeffs):  # Caffe adds coeff_k * bottom_k in order
        if k:
            expr += " - " if c < 0 else " + "
        elif c < 0:
            expr += "-"
        expr += f"{{{k}}}" if abs(c) == 1 else f"{lit(abs(c))} * {{{k}}}"
    return b.emit(expr)


@torch_lowering("Concat")
def _concat_torch(b):
    layer, s = b.layer, b.s
    axis = concat_axis(layer.param.concat_param) % len(s.bottoms[0])
    if len(layer.bottom) == 1:
        return b.emit("{0}")
    parts = ", ".join(f"{{{k}}}" for k in range(len(layer.bottom)))
    return b.emit(f"torch.cat(({parts}), {axis})")


@torch_lowering("Slice")
def _slice_torch(b):
    layer, s = b.layer, b.s
    sp = layer.param.slice_param
    axis = slice_axis(sp) % len(s.bottoms[0])
    if len(layer.top) == 1:
        return b.emit("{0}")
    if sp.slice_point:
        return b.emit(f"torch.tensor_split({{0}}, {lit(list(sp.slice_point))}, {axis})",
                       tuple_out=True)
    return b.emit(f"torch.chunk({{0}}, {len(layer.top)}, {axis})", tuple_out=True)


@torch_lowering("Split")
def _split_torch(b):
    return b.emit("{0}")


@torch_lowering("Axpy")
def _axpy_torch(b):
    # SENet's fork layer: top = a * x + y, a being N×C×1×1.
    return b.emit("{0} * {1} + {2}")


@torch_lowering("Silence")
def _silence_torch(b):
    return b.emit("None")


# -- ONNX -------------------------------------------------------------------------------

@onnx_lowering("Split")
def _split_onnx(b):
    for k in range(len(b.layer.top)):  # every top is the bottom itself
        b.alias(k, b.x[0])


@onnx_lowering("Eltwise")
def _eltwise_onnx(b):
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
                b.result(acc)
            continue
        op_type = "Sub" if c < 0 else "Add"
        acc = b.out(op_type, [acc, term]) if last else b.op(op_type, [acc, term])


@onnx_lowering("Concat")
def _concat_onnx(b):
    if len(b.x) == 1:
        b.alias(0, b.x[0])
        return
    b.out("Concat", b.x, axis=concat_axis(b.layer.param.concat_param) % len(b.s.bottoms[0]))


@onnx_lowering("Slice")
def _slice_onnx(b):
    sp = b.layer.param.slice_param
    axis = slice_axis(sp) % len(b.s.bottoms[0])
    if len(b.layer.top) == 1:
        b.alias(0, b.x[0])
        return
    sizes = [t[axis] for t in b.s.tops]
    b.op("Split", [b.x[0], b.ints(sizes, "split")], b.y, axis=axis)


@onnx_lowering("Axpy")
def _axpy_onnx(b):
    # SENet's fork layer: top = a * x + y, a being N×C×1×1.
    a, x, y = b.x
    b.out("Add", [b.op("Mul", [a, x]), y])


@onnx_lowering("Silence")
def _silence_onnx(b):
    pass
