"""Blob shapes and weight shapes of every layer, with Caffe's own arithmetic.

One rule per layer type, registered in RULES: rule(layer_param, bottom_shapes) returns
(top_shapes, weight_blob_shapes). The arithmetic follows Caffe's Reshape/LayerSetUp code as
recorded in caffe_facts.md (§2 blob layouts, §4 output sizes), including pooling's ceil rounding
and clip rule. A rule reports a misfit by raising ShapeMismatch; infer() names the layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from . import caffe_pb2
from ._pb import is_repeated
from .errors import NetError
from .net import Layer, Net, input_layer_shapes

Shape = tuple[int, ...]
Rule = Callable[[caffe_pb2.LayerParameter, list[Shape]], tuple[list[Shape], list[Shape]]]

RULES: dict[str, Rule] = {}


class ShapeMismatch(Exception):
    """Raised by a rule; infer() turns it into a NetError naming the layer."""


def rule(*types: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for t in types:
            RULES[t] = fn
        return fn
    return register


@dataclass
class LayerShapes:
    layer: Layer
    bottoms: list[Shape]
    tops: list[Shape]
    blobs: list[Shape]  # weight blobs, in Caffe's order


def infer(net: Net) -> list[LayerShapes]:
    """Shapes of every layer's bottoms, tops and weight blobs, in execution order."""
    blobs: dict[str, Shape] = {i.name: tuple(i.shape) for i in net.inputs}
    result = []
    for layer in net.layers:
        where = f"layer '{layer.name}' ({layer.type})"
        bottoms = []
        for b in layer.bottom:
            if b not in blobs:
                raise NetError(f"{where}: bottom '{b}' is not produced by any earlier layer "
                               "or input")
            bottoms.append(blobs[b])
        fn = RULES.get(layer.type)
        if fn is None:
            raise NetError(f"{where}: no shape rule for layer type '{layer.type}'")
        try:
            tops, weights = fn(layer.param, bottoms)
        except ShapeMismatch as exc:
            shapes = ", ".join(_fmt(s) for s in bottoms)
            raise NetError(f"{where}: {exc} (input {shapes or 'none'})") from None
        if len(tops) < len(layer.top):
            raise NetError(f"{where}: has {len(layer.top)} tops, the layer type produces "
                           f"{len(tops)}")
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


# -- helpers --------------------------------------------------------------------------------------

def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ShapeMismatch(f"axis {axis} is out of range for a {ndim}-D blob")
    return axis % ndim


def _one_bottom(bottoms: list[Shape]) -> Shape:
    if len(bottoms) != 1:
        raise ShapeMismatch(f"expects 1 bottom, got {len(bottoms)}")
    return bottoms[0]


def _spatial(p, n: int, name: str, h: str, w: str, default: int | None) -> list[int]:
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


def _fmt(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape))


# -- rules ----------------------------------------------------------------------------------------

@rule("Input")
def _input(p, bottoms):
    return input_layer_shapes(p), []


def _conv_geometry(cp, bottom: Shape):
    axis = _axis(cp.axis, len(bottom))
    n = len(bottom) - axis - 1
    if n < 1:
        raise ShapeMismatch("needs at least one spatial axis after the channel axis")
    kernel = _spatial(cp, n, "kernel_size", "kernel_h", "kernel_w", None)
    pad = _spatial(cp, n, "pad", "pad_h", "pad_w", 0)
    stride = _spatial(cp, n, "stride", "stride_h", "stride_w", 1)
    dilation = list(cp.dilation) or [1]
    if len(dilation) == 1:
        dilation = dilation * n
    elif len(dilation) != n:
        raise ShapeMismatch(f"dilation has {len(dilation)} values for {n} spatial axes")
    if any(k == 0 for k in kernel) or any(s == 0 for s in stride) or any(d == 0 for d in dilation):
        raise ShapeMismatch("kernel, stride and dilation must be positive")
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
    axis, kernel, pad, stride, dilation, channels, group = _conv_geometry(cp, bottom)
    out = tuple(size_rule(*axis_params) for axis_params in
                zip(bottom[axis + 1:], kernel, pad, stride, dilation))
    top = bottom[:axis] + (cp.num_output,) + out
    n = cp.num_output
    blobs = [(channels, n // group, *kernel) if transposed else (n, channels // group, *kernel)]
    if cp.bias_term:
        blobs.append((n,))
    return [top] * len(bottoms), blobs


@rule("Convolution")
def _convolution(p, bottoms):
    return _conv_family(p, bottoms, _conv_size, transposed=False)


@rule("Deconvolution")
def _deconvolution(p, bottoms):
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
def _pooling(p, bottoms):
    pp = p.pooling_param
    bottom = _one_bottom(bottoms)
    if len(bottom) != 4:
        raise ShapeMismatch(f"Pooling needs a 4-D input, got {_fmt(bottom)}")
    h, w = bottom[2], bottom[3]
    if pp.global_pooling:
        if pp.HasField("kernel_size") or pp.HasField("kernel_h") or pp.HasField("kernel_w"):
            raise ShapeMismatch("global_pooling takes no kernel size")
        kernel = [h, w]
    else:
        kernel = _spatial(pp, 2, "kernel_size", "kernel_h", "kernel_w", None)
    pad = _spatial(pp, 2, "pad", "pad_h", "pad_w", 0)
    stride = _spatial(pp, 2, "stride", "stride_h", "stride_w", 1)
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
def _inner_product(p, bottoms):
    ip = p.inner_product_param
    bottom = _one_bottom(bottoms)
    axis = _axis(ip.axis, len(bottom))
    k = math.prod(bottom[axis:])
    n = ip.num_output
    blobs = [(k, n) if ip.transpose else (n, k)]
    if ip.bias_term:
        blobs.append((n,))
    return [bottom[:axis] + (n,)], blobs


@rule("BatchNorm")
def _batch_norm(p, bottoms):
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
        raise ShapeMismatch(f"second bottom {_fmt(other)} does not match the first from "
                            f"axis {axis}")


@rule("Scale")
def _scale(p, bottoms):
    sp = p.scale_param
    if len(bottoms) == 2:
        _broadcast_check(bottoms[0], bottoms[1], sp.axis)
        return [bottoms[0]], ([bottoms[1]] if sp.bias_term else [])
    bottom = _one_bottom(bottoms)
    shape = _scale_shape(sp.axis, sp.num_axes, bottom, "scale_param")
    return [bottom], [shape, shape] if sp.bias_term else [shape]


@rule("Bias")
def _bias(p, bottoms):
    bp = p.bias_param
    if len(bottoms) == 2:
        _broadcast_check(bottoms[0], bottoms[1], bp.axis)
        return [bottoms[0]], []
    bottom = _one_bottom(bottoms)
    return [bottom], [_scale_shape(bp.axis, bp.num_axes, bottom, "bias_param")]


@rule("ReLU", "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU", "Power", "Exp", "Log", "Dropout",
      "Threshold", "Clip", "Swish", "LRN", "MVN")
def _same_shape(p, bottoms):
    return [_one_bottom(bottoms)], []


@rule("PReLU")
def _prelu(p, bottoms):
    bottom = _one_bottom(bottoms)
    if len(bottom) < 2:
        raise ShapeMismatch("PReLU needs an input with a channel axis")
    return [bottom], [(1,) if p.prelu_param.channel_shared else (bottom[1],)]


@rule("Softmax")
def _softmax(p, bottoms):
    bottom = _one_bottom(bottoms)
    _axis(p.softmax_param.axis, len(bottom))
    return [bottom], []


@rule("Eltwise")
def _eltwise(p, bottoms):
    if len(bottoms) < 2:
        raise ShapeMismatch(f"Eltwise needs at least 2 bottoms, got {len(bottoms)}")
    if any(b != bottoms[0] for b in bottoms):
        raise ShapeMismatch("all bottoms must have the same shape: "
                            + ", ".join(_fmt(b) for b in bottoms))
    ep = p.eltwise_param
    if ep.coeff and ep.operation != caffe_pb2.EltwiseParameter.SUM:
        raise ShapeMismatch("coeff only applies to the SUM operation")
    if ep.coeff and len(ep.coeff) != len(bottoms):
        raise ShapeMismatch(f"{len(ep.coeff)} coeffs for {len(bottoms)} bottoms")
    return [bottoms[0]], []


@rule("Concat")
def _concat(p, bottoms):
    if not bottoms:
        raise ShapeMismatch("Concat needs at least 1 bottom")
    cp = p.concat_param
    axis = cp.axis if cp.HasField("axis") or not cp.HasField("concat_dim") else cp.concat_dim
    axis = _axis(axis, len(bottoms[0]))
    first = bottoms[0]
    for b in bottoms[1:]:
        if len(b) != len(first) or b[:axis] + b[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ShapeMismatch(f"bottoms differ outside the concat axis {axis}: "
                                + ", ".join(_fmt(x) for x in bottoms))
    total = sum(b[axis] for b in bottoms)
    return [bottoms[0][:axis] + (total,) + bottoms[0][axis + 1:]], []


@rule("Flatten")
def _flatten(p, bottoms):
    bottom = _one_bottom(bottoms)
    fp = p.flatten_param
    start = _axis(fp.axis, len(bottom))
    end = _axis(fp.end_axis, len(bottom))
    if end < start:
        raise ShapeMismatch(f"end_axis {fp.end_axis} comes before axis {fp.axis}")
    return [bottom[:start] + (math.prod(bottom[start:end + 1]),) + bottom[end + 1:]], []


@rule("Split")
def _split(p, bottoms):
    bottom = _one_bottom(bottoms)
    return [bottom] * max(1, len(p.top)), []
