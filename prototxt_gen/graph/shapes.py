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
from typing import Any, Callable, Sequence

from ..proto import caffe_pb2
from ..proto.wire import is_repeated
from ..errors import NetError, shown
from .net import Layer, Net, input_layer_shapes
from ..registry import put

Shape = tuple[int, ...]
Rule = Callable[[Layer, list[Shape]], tuple[list[Shape], list[Shape]]]

RULES: dict[str, Rule] = {}


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
    def register(fn: Rule) -> Rule:
        put(RULES, types, fn, "a shape rule", replace)
        return fn
    return register


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

def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ShapeMismatch(f"axis {axis} is out of range for a {ndim}-D blob")
    return axis % ndim


def _one_bottom(bottoms: list[Shape]) -> Shape:
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


def format_shape(shape: Sequence[int]) -> str:
    """1×3×224×224."""
    return "×".join(map(str, shape))


# -- rules ----------------------------------------------------------------------------------------

@rule("Input")
def _input(layer, bottoms):
    p = layer.param
    return input_layer_shapes(p), []


def conv_geometry(cp, bottom: Shape):
    axis = _axis(cp.axis, len(bottom))
    n = len(bottom) - axis - 1
    if n < 1:
        raise ShapeMismatch("needs at least one spatial axis after the channel axis")
    kernel = spatial(cp, n, "kernel_size", "kernel_h", "kernel_w", None)
    pad = spatial(cp, n, "pad", "pad_h", "pad_w", 0)
    stride = spatial(cp, n, "stride", "stride_h", "stride_w", 1)
    dilation = list(cp.dilation) or [1]
    if len(dilation) == 1:
        dilation = dilation * n
    elif len(dilation) != n:
        raise ShapeMismatch(f"dilation has {len(dilation)} values for {n} spatial axes")
    if any(k == 0 for k in kernel) or any(s == 0 for s in stride) or any(d == 0 for d in dilation):
        raise ShapeMismatch("kernel, stride and dilation must be positive")
    if cp.num_output == 0:  # Caffe: CHECK_GT(num_output_, 0)
        raise ShapeMismatch("num_output must be positive")
    channels = bottom[axis]
    group = cp.group
    if group == 0 or channels % group or cp.num_output % group:
        raise ShapeMismatch(f"group {group} must divide both the {channels} input channels "
                            f"and num_output {cp.num_output}")
    return axis, kernel, pad, stride, dilation, channels, group


def _same_bottoms(bottoms: list[Shape]) -> Shape:
    if not bottoms:
        raise ShapeMismatch("expects at least 1 bottom")
    if any(b != bottoms[0] for b in bottoms):
        raise ShapeMismatch("all bottoms must have the same shape")
    return bottoms[0]


def _conv_size(size: int, k: int, pad: int, stride: int, dilation: int) -> int:
    extent = dilation * (k - 1) + 1
    out = (size + 2 * pad - extent) // stride + 1
    if out < 1:
        raise ShapeMismatch(f"kernel extent {extent} does not fit input size {size} with pad {pad}")
    return out


def _deconv_size(size: int, k: int, pad: int, stride: int, dilation: int) -> int:
    out = stride * (size - 1) + dilation * (k - 1) + 1 - 2 * pad
    if out < 1:
        raise ShapeMismatch(f"output size {out} with pad {pad} is not positive")
    return out


def _conv_family(p, bottoms, size_rule, transposed: bool):
    """Convolution and Deconvolution: same parameters, per-axis size rule and weight layout
    differ (deconvolution stores (C_in, num_output/group, k...))."""
    cp = p.convolution_param
    bottom = _same_bottoms(bottoms)
    axis, kernel, pad, stride, dilation, channels, group = conv_geometry(cp, bottom)
    out = tuple(size_rule(*axis_params) for axis_params in
                zip(bottom[axis + 1:], kernel, pad, stride, dilation))
    top = bottom[:axis] + (cp.num_output,) + out
    n = cp.num_output
    blobs = [(channels, n // group, *kernel) if transposed else (n, channels // group, *kernel)]
    if cp.bias_term:
        blobs.append((n,))
    return [top] * len(bottoms), blobs


@rule("Convolution")
def _convolution(layer, bottoms):
    p = layer.param
    return _conv_family(p, bottoms, _conv_size, transposed=False)


@rule("Deconvolution")
def _deconvolution(layer, bottoms):
    p = layer.param
    return _conv_family(p, bottoms, _deconv_size, transposed=True)


def pooling_output(size: int, kernel: int, pad: int, stride: int, ceil: bool) -> int:
    """Caffe's pooled size: ceil (default) or floor rounding, then the clip rule: with padding,
    the last window must start inside the image or its left padding."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@rule("Pooling")
def _pooling(layer, bottoms):
    p = layer.param
    pp = p.pooling_param
    bottom = _one_bottom(bottoms)
    if len(bottom) != 4:
        raise ShapeMismatch(f"Pooling needs a 4-D input, got {format_shape(bottom)}")
    h, w = bottom[2], bottom[3]
    if pp.global_pooling:
        if pp.HasField("kernel_size") or pp.HasField("kernel_h") or pp.HasField("kernel_w"):
            raise ShapeMismatch("global_pooling takes no kernel size")
        kernel = [h, w]
    else:
        kernel = spatial(pp, 2, "kernel_size", "kernel_h", "kernel_w", None)
    pad = spatial(pp, 2, "pad", "pad_h", "pad_w", 0)
    stride = spatial(pp, 2, "stride", "stride_h", "stride_w", 1)
    if pp.global_pooling and (any(pad) or any(s != 1 for s in stride)):
        raise ShapeMismatch("global_pooling requires pad 0 and stride 1")
    if any(s == 0 for s in stride) or any(k == 0 for k in kernel):
        raise ShapeMismatch("kernel and stride must be positive")
    if any(q and q >= k for q, k in zip(pad, kernel)):
        raise ShapeMismatch(f"pad {pad} must be smaller than kernel {kernel}")
    ceil = pp.round_mode == caffe_pb2.PoolingParameter.CEIL
    out = []
    for size, k, q, s in zip((h, w), kernel, pad, stride):
        o = pooling_output(size, k, q, s, ceil)
        if o < 1:
            raise ShapeMismatch(f"kernel {k} does not fit input size {size} with pad {q}")
        out.append(o)
    top = (bottom[0], bottom[1], out[0], out[1])
    return [top, top], []  # MAX may expose its argmax mask as a second top


@rule("InnerProduct")
def _inner_product(layer, bottoms):
    p = layer.param
    ip = p.inner_product_param
    bottom = _one_bottom(bottoms)
    axis = _axis(ip.axis, len(bottom))
    k = math.prod(bottom[axis:])
    n = ip.num_output
    if n == 0:
        raise ShapeMismatch("num_output must be positive")
    blobs = [(k, n) if ip.transpose else (n, k)]
    if ip.bias_term:
        blobs.append((n,))
    return [bottom[:axis] + (n,)], blobs


@rule("BatchNorm")
def _batch_norm(layer, bottoms):
    bottom = _one_bottom(bottoms)
    channels = bottom[1] if len(bottom) > 1 else 1
    return [bottom], [(channels,), (channels,), (1,)]


def _scale_shape(axis: int, num_axes: int, bottom: Shape, what: str) -> Shape:
    axis = _axis(axis, len(bottom))
    if num_axes < -1:
        raise ShapeMismatch(f"{what}.num_axes must be -1 or more")
    end = len(bottom) if num_axes == -1 else axis + num_axes
    if end > len(bottom):
        raise ShapeMismatch(f"{what} axis {axis} + num_axes {num_axes} exceed the input's axes")
    return bottom[axis:end]


def _broadcast_check(bottom: Shape, other: Shape, axis: int) -> None:
    axis = _axis(axis, len(bottom))
    if bottom[axis:axis + len(other)] != other:
        raise ShapeMismatch(f"second bottom {format_shape(other)} does not match the first from "
                            f"axis {axis}")


def _affine(sub, bottoms: list[Shape], what: str) -> tuple[Shape, Shape, bool]:
    """Scale and Bias: (input shape, shape of the learned or given factor, whether the factor
    is a second bottom rather than a learned blob)."""
    if len(bottoms) == 2:
        _broadcast_check(bottoms[0], bottoms[1], sub.axis)
        return bottoms[0], bottoms[1], True
    bottom = _one_bottom(bottoms)
    return bottom, _scale_shape(sub.axis, sub.num_axes, bottom, what), False


def affine_layout(sub, bottoms: list[Shape]) -> tuple[Shape, int]:
    """Scale/Bias (`sub` their parameter message): the factor's shape, learned or given as a
    second bottom, and how many trailing axes of the input it broadcasts over."""
    x = bottoms[0]
    axis = sub.axis % len(x)
    if len(bottoms) == 2:
        shape = bottoms[1]
    else:
        end = len(x) if sub.num_axes == -1 else axis + sub.num_axes
        shape = x[axis:end]
    return tuple(shape), len(x) - axis - len(shape)


@rule("Scale")
def _scale(layer, bottoms):
    sp = layer.param.scale_param
    bottom, shape, given = _affine(sp, bottoms, "scale_param")
    blobs = ([] if given else [shape]) + ([shape] if sp.bias_term else [])
    return [bottom], blobs


@rule("Bias")
def _bias(layer, bottoms):
    bottom, shape, given = _affine(layer.param.bias_param, bottoms, "bias_param")
    return [bottom], [] if given else [shape]


@rule("ReLU", "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU", "Power", "Exp", "Log",
      "Threshold", "Clip", "Swish", "MVN", "ReLU6", "HardSwish", "Mish")
def _same_shape(layer, bottoms):
    return [_one_bottom(bottoms)], []


@rule("Dropout")
def _dropout(layer, bottoms):
    ratio = layer.param.dropout_param.dropout_ratio
    if not 0 <= ratio < 1:  # Caffe scales kept values by 1 / (1 - ratio)
        raise ShapeMismatch(f"dropout_ratio must be in [0, 1), not {ratio:g}")
    return [_one_bottom(bottoms)], []


@rule("LRN")
def _lrn(layer, bottoms):
    size = layer.param.lrn_param.local_size
    if size % 2 != 1:  # Caffe: CHECK_EQ(size_ % 2, 1)
        raise ShapeMismatch(f"local_size must be odd, not {size}")
    return [_one_bottom(bottoms)], []


def shuffle_group(layer: Layer) -> int:
    """ShuffleChannel's group (a fork field, so any value may come): a positive integer."""
    group = fork_value(layer, "shuffle_channel_param", "group", 1, int)
    if group < 1:
        raise ShapeMismatch(f"shuffle_channel_param.group must be a positive integer, not "
                            f"{shown(group)}")
    return group


@rule("ShuffleChannel")
def _shuffle_channel(layer, bottoms):
    bottom = _one_bottom(bottoms)
    group = shuffle_group(layer)
    if len(bottom) < 2 or bottom[1] % group:
        raise ShapeMismatch(f"group {group} does not divide the "
                            f"{bottom[1] if len(bottom) > 1 else 'missing'} channels")
    return [bottom], []


@rule("PReLU")
def _prelu(layer, bottoms):
    p = layer.param
    bottom = _one_bottom(bottoms)
    if len(bottom) < 2:
        raise ShapeMismatch("PReLU needs an input with a channel axis")
    return [bottom], [(1,) if p.prelu_param.channel_shared else (bottom[1],)]


@rule("Softmax")
def _softmax(layer, bottoms):
    p = layer.param
    bottom = _one_bottom(bottoms)
    _axis(p.softmax_param.axis, len(bottom))
    return [bottom], []


@rule("Eltwise")
def _eltwise(layer, bottoms):
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
def _concat(layer, bottoms):
    p = layer.param
    if not bottoms:
        raise ShapeMismatch("Concat needs at least 1 bottom")
    axis = _axis(concat_axis(p.concat_param), len(bottoms[0]))
    first = bottoms[0]
    for b in bottoms[1:]:
        if len(b) != len(first) or b[:axis] + b[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ShapeMismatch(f"bottoms differ outside the concat axis {axis}: "
                                + ", ".join(format_shape(x) for x in bottoms))
    total = sum(b[axis] for b in bottoms)
    return [bottoms[0][:axis] + (total,) + bottoms[0][axis + 1:]], []


@rule("Flatten")
def _flatten(layer, bottoms):
    p = layer.param
    bottom = _one_bottom(bottoms)
    fp = p.flatten_param
    start, end = flatten_axes(fp, len(bottom))
    if end < start:
        raise ShapeMismatch(f"end_axis {fp.end_axis} comes before axis {fp.axis}")
    return [bottom[:start] + (math.prod(bottom[start:end + 1]),) + bottom[end + 1:]], []


@rule("Split")
def _split(layer, bottoms):
    p = layer.param
    bottom = _one_bottom(bottoms)
    return [bottom] * max(1, len(p.top)), []


@rule("Axpy")
def _axpy(layer, bottoms):
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
def _slice(layer, bottoms):
    sp = layer.param.slice_param
    bottom = _one_bottom(bottoms)
    axis = _axis(slice_axis(sp), len(bottom))
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


@rule("Reshape")
def _reshape(layer, bottoms):
    rp = layer.param.reshape_param
    bottom = _one_bottom(bottoms)
    ndim = len(bottom)
    start, end = reshape_span(rp, ndim)
    if not 0 <= start <= ndim:
        raise ShapeMismatch(f"reshape_param.axis {rp.axis} is out of range")
    if rp.num_axes < -1 or end > ndim:
        raise ShapeMismatch(f"reshape_param.num_axes {rp.num_axes} is out of range")
    dims = list(rp.shape.dim)
    if sum(d == -1 for d in dims) > 1:
        raise ShapeMismatch("at most one dimension may be -1")
    new = []
    for k, d in enumerate(dims):
        if d == 0:
            if start + k >= ndim:
                raise ShapeMismatch(f"dim {k} is 0 (copy) but the input has no axis {start + k}")
            new.append(bottom[start + k])
        elif d < -1:
            raise ShapeMismatch(f"dim {d} is invalid (use a size, 0 to copy or -1 to infer)")
        else:
            new.append(d)
    replaced = math.prod(bottom[start:end])
    if -1 in new:
        known = math.prod(d for d in new if d != -1)
        if known == 0 or replaced % known:
            raise ShapeMismatch(f"cannot infer the -1 dimension: {replaced} elements do not "
                                f"divide by {known}")
        new[new.index(-1)] = replaced // known
    elif math.prod(new) != replaced:
        raise ShapeMismatch(f"shape {format_shape(new)} has {math.prod(new)} elements, the input "
                            f"axes being replaced have {replaced}")
    return [bottom[:start] + tuple(new) + bottom[end:]], []


@rule("Crop")
def _crop(layer, bottoms):
    cp = layer.param.crop_param
    if len(bottoms) != 2:
        raise ShapeMismatch(f"Crop needs 2 bottoms (data, reference), got {len(bottoms)}")
    data, ref = bottoms
    if len(data) != len(ref):
        raise ShapeMismatch(f"the reference {format_shape(ref)} must have as many axes as {format_shape(data)}")
    axis, offsets = crop_offsets(cp, len(data))
    n = len(data) - axis
    if len(offsets) != n:
        raise ShapeMismatch(f"{len(offsets)} offsets for {n} cropped axes")
    out = list(data)
    for k, off in zip(range(axis, len(data)), offsets):
        if off + ref[k] > data[k]:
            raise ShapeMismatch(f"axis {k}: offset {off} + size {ref[k]} exceeds {data[k]}")
        out[k] = ref[k]
    return [tuple(out)], []


@rule("Permute")
def _permute(layer, bottoms):
    # SSD's fork layer; its permute_param is not in caffe.proto, so it arrives in layer.extra.
    bottom = _one_bottom(bottoms)
    return [tuple(bottom[k] for k in permute_order(layer, len(bottom)))], []


def permute_order(layer: Layer, ndim: int) -> list[int]:
    """Permute's full axis order: the given axes, then the rest in order (SSD's rule)."""
    orders = layer.extra_values("permute_param", "order")
    order: list[int] = []
    for o in orders:
        if not isinstance(o, int) or not 0 <= o < ndim or o in order:
            raise ShapeMismatch(f"permute order {orders} is not a permutation of the "
                                f"{ndim} axes")
        order.append(o)
    return order + [k for k in range(ndim) if k not in order]


def flatten_axes(fp, ndim: int) -> tuple[int, int]:
    """Flatten's first and last merged axes, made non-negative."""
    return _axis(fp.axis, ndim), _axis(fp.end_axis, ndim)


def reshape_span(rp, ndim: int) -> tuple[int, int]:
    """The axes [start, end) that Reshape's `shape` replaces (axis may count from the end,
    where -1 means after the last axis; num_axes -1 means to the end)."""
    start = rp.axis + ndim + 1 if rp.axis < 0 else rp.axis
    return start, ndim if rp.num_axes == -1 else start + rp.num_axes


def crop_offsets(cp, ndim: int) -> tuple[int, list[int]]:
    """Crop's first cropped axis and one offset per cropped axis (one given offset serves
    them all; none means 0)."""
    axis = _axis(cp.axis, ndim)
    offsets = list(cp.offset) or [0]
    return axis, offsets * (ndim - axis) if len(offsets) == 1 else offsets


def tile_repeats(tp, ndim: int) -> list[int]:
    """Tile's repeat count per axis."""
    reps = [1] * ndim
    reps[_axis(tp.axis, ndim)] = tp.tiles
    return reps


def reduction_axes(rp, ndim: int) -> list[int]:
    """The axes Reduction reduces: all from `axis` on."""
    return list(range(_axis(rp.axis, ndim) if ndim else 0, ndim))


def normalize_params(layer: Layer) -> tuple[bool, bool, float]:
    """SSD's Normalize (a fork field): across_spatial, channel_shared, eps."""
    return (fork_value(layer, "norm_param", "across_spatial", True, bool),
            fork_value(layer, "norm_param", "channel_shared", True, bool),
            fork_value(layer, "norm_param", "eps", 1e-10, float))


_KINDS = {bool: "true or false", int: "an integer", float: "a finite number"}


def fork_value(layer: Layer, message: str, field: str, default: Any, kind: type) -> Any:
    """A fork field's first value (layer.extra: any value may come, since no schema checked
    it), checked to be of `kind` (bool, int or float)."""
    value = layer.extra_value(message, field, default)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ShapeMismatch(f"{message}.{field} must be {_KINDS[kind]}, not {shown(value)}")
    return kind(value)


def concat_axis(cp) -> int:
    """Concat's axis: `axis`, or the legacy `concat_dim` when only that is given."""
    return cp.axis if cp.HasField("axis") or not cp.HasField("concat_dim") else cp.concat_dim


def slice_axis(sp) -> int:
    """Slice's axis: `axis`, or the legacy `slice_dim` when only that is given."""
    return sp.axis if sp.HasField("axis") or not sp.HasField("slice_dim") else sp.slice_dim


@rule("Reduction")
def _reduction(layer, bottoms):
    bottom = _one_bottom(bottoms)
    axes = reduction_axes(layer.param.reduction_param, len(bottom))
    return [bottom[:axes[0]] if axes else bottom], []


@rule("ArgMax")
def _argmax(layer, bottoms):
    ap = layer.param.argmax_param
    bottom = _one_bottom(bottoms)
    if ap.HasField("axis"):
        axis = _axis(ap.axis, len(bottom))
        if ap.top_k > bottom[axis]:
            raise ShapeMismatch(f"top_k {ap.top_k} exceeds axis size {bottom[axis]}")
        return [bottom[:axis] + (ap.top_k,) + bottom[axis + 1:]], []
    shape = [1] * max(3, len(bottom))
    shape[0] = bottom[0]
    shape[2] = ap.top_k
    if ap.out_max_val:
        shape[1] = 2
    return [tuple(shape)], []


@rule("Tile")
def _tile(layer, bottoms):
    tp = layer.param.tile_param
    bottom = _one_bottom(bottoms)
    axis = _axis(tp.axis, len(bottom))
    if tp.tiles < 1:
        raise ShapeMismatch("tile_param.tiles must be positive")
    return [bottom[:axis] + (bottom[axis] * tp.tiles,) + bottom[axis + 1:]], []


@rule("Normalize")
def _normalize(layer, bottoms):
    # SSD's fork layer: L2 normalization across channels with a learned scale per channel.
    bottom = _one_bottom(bottoms)
    _, shared, _ = normalize_params(layer)
    return [bottom], [(1,) if shared else (bottom[1],)]


@rule("Silence")
def _silence(layer, bottoms):
    return [], []


@rule("Accuracy")
def _accuracy(layer, bottoms):
    if len(bottoms) != 2:
        raise ShapeMismatch(f"Accuracy needs 2 bottoms (scores, labels), got {len(bottoms)}")
    axis = _axis(layer.param.accuracy_param.axis, len(bottoms[0]))
    return [(), (bottoms[0][axis],)], []


LOSS_LAYERS = ("SoftmaxWithLoss", "SigmoidCrossEntropyLoss", "EuclideanLoss", "HingeLoss",
               "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss")


@rule(*LOSS_LAYERS)
def _loss(layer, bottoms):
    if len(bottoms) < 2:
        raise ShapeMismatch(f"a loss layer needs at least 2 bottoms, got {len(bottoms)}")
    return [(), bottoms[0]], []  # SoftmaxWithLoss may expose the probabilities as a second top


@rule("MemoryData")
def _memory_data(layer, bottoms):
    mp = layer.param.memory_data_param
    shape = (mp.batch_size, mp.channels, mp.height, mp.width)
    if any(d < 1 for d in shape):
        raise ShapeMismatch("memory_data_param needs positive batch_size, channels, height, "
                            "width")
    return [shape, (mp.batch_size,)], []


@rule("DummyData")
def _dummy_data(layer, bottoms):
    dp = layer.param.dummy_data_param
    shapes = [tuple(s.dim) for s in dp.shape]
    if not shapes and dp.num:
        count = max(len(dp.num), len(dp.channels), len(dp.height), len(dp.width))
        pick = lambda v, k: v[k] if len(v) > 1 else v[0]  # noqa: E731
        shapes = [(pick(dp.num, k), pick(dp.channels, k), pick(dp.height, k),
                   pick(dp.width, k)) for k in range(count)]
    if len(shapes) == 1:
        shapes *= len(layer.top)
    if len(shapes) != len(layer.top):
        raise ShapeMismatch(f"{len(shapes)} shapes for {len(layer.top)} tops")
    return shapes, []


@rule("Parameter")
def _parameter(layer, bottoms):
    shape = tuple(layer.param.parameter_param.shape.dim)
    return [shape], [shape]


# Layers that read a dataset: their tops' shapes come from their parameters where the file
# says them (dataset_shapes), else from --input-shape (Net.set_shape).
DATASET_LAYERS = ("Data", "ImageData", "WindowData", "HDF5Data", "AnnotatedData")
# ...and those with a Python layer, whose tops only its code knows.
DATA_READERS = DATASET_LAYERS + ("Python",)


def dataset_shapes(layer) -> tuple[list[Shape | None], list[str]]:
    """The shapes a dataset layer's tops get in Caffe, as far as the file tells them (None where
    only the data knows), and what was assumed (docs/caffe.md §7): [data, label] as N×C×H×W
    and N. The batch is
    the layer's batch_size; H×W is transform_param.crop_size, else ImageData's new_height ×
    new_width; C is 1 or 3 where the file says (is_color, force_gray, force_color), else 3."""
    p, t = layer.param, layer.param.transform_param
    kind = layer.type
    if kind == "HDF5Data":  # its tops are the HDF5 file's datasets: any number, any shape
        return [None] * len(layer.top), []
    sub = {"ImageData": p.image_data_param, "WindowData": p.window_data_param}.get(
        kind, p.data_param)
    batch = sub.batch_size or None
    assumed = []
    crop = t.crop_size or (p.window_data_param.crop_size if kind == "WindowData" else 0)
    if crop:
        hw = (crop, crop)
    elif kind == "ImageData" and p.image_data_param.new_height and \
            p.image_data_param.new_width:
        hw = (p.image_data_param.new_height, p.image_data_param.new_width)
    else:
        hw = None
    if t.force_gray or (kind == "ImageData" and not p.image_data_param.is_color):
        channels = 1
    elif t.force_color or kind == "ImageData":
        channels = 3
    else:
        channels = 3
        assumed.append("3 channels")
    data = (batch, channels, *hw) if batch and hw else None
    tops: list[Shape | None] = [data]
    if len(layer.top) > 1:
        if kind == "AnnotatedData":  # one row per box, 8 values each; 1 box until data is read
            tops.append((1, 1, 1, 8) if batch else None)
            assumed.append("1 box per batch")
        else:
            tops.append((batch,) if batch else None)
    return tops + [None] * (len(layer.top) - len(tops)), assumed


def data_layer_note(net: Net) -> str | None:
    """One line saying what shapes the layers that read data give, and where each came from:
    the file's parameters, --input-shape, or an assumption (None if there is no such layer)."""
    parts = []
    for layer in net.layers:
        if layer.bottom or layer.type not in DATA_READERS:
            continue
        tops, assumed = dataset_shapes(layer) if layer.type != "Python" else \
            ([None] * len(layer.top), [])
        if layer.top and layer.top[0] in net.top_shapes:
            assumed = [a for a in assumed if "channels" not in a]
        shapes = []
        for top, shape in zip(layer.top, tops):
            given = net.top_shapes.get(top)
            if given is not None or shape is not None:
                shapes.append(f"'{top}' {format_shape(given or shape)}"
                              + (" (--input-shape)" if given is not None else ""))
        parts.append(f"layer '{layer.name}' ({layer.type}) gives "
                     + (", ".join(shapes) or "no known shape")
                     + (f", assuming {' and '.join(assumed)}" if assumed else ""))
    return "data: " + "; ".join(parts) if parts else None


@rule(*DATASET_LAYERS)
def _dataset(layer, bottoms):
    return dataset_shapes(layer)[0], []  # None where only the data knows: infer says so


@rule("Python")
def _python(layer, bottoms):
    raise ShapeMismatch("its output shape depends on its Python code; give its tops' shapes "
                        "with --input-shape NAME=N,C,H,W")


# -- multiply-accumulates -------------------------------------------------------------------------

def macs(s: LayerShapes) -> int:
    """Multiply-accumulates of one forward pass: convolutions and inner products, the figure
    papers quote (ResNet-50: 3.86 G). Element-wise layers count 0."""
    t = s.layer.type
    if t == "Convolution" and s.blobs:
        weights = s.blobs[0]  # (num_output, C_in/group, k...)
        return sum(math.prod(top) for top in s.tops) * math.prod(weights[1:])
    if t == "Deconvolution" and s.blobs:
        weights = s.blobs[0]  # (C_in, num_output/group, k...)
        return sum(math.prod(b) for b in s.bottoms) * math.prod(weights[1:])
    if t == "InnerProduct" and s.blobs:
        n = s.layer.param.inner_product_param.num_output
        return math.prod(s.tops[0]) * (math.prod(s.blobs[0]) // n)
    return 0
