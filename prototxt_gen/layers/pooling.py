"""Pooling: MAX, AVE and STOCHASTIC (its inference form), global or windowed, with Caffe's
ceil rounding, clip rule and average divisor (docs/caffe.md §4), exact in both back ends."""
from __future__ import annotations

import math
from typing import Any

from ..errors import Unsupported
from ..graph.shapes import ShapeMismatch, format_shape
from ..proto import caffe_pb2
from ..registry import draw, label, onnx_lowering, rule, torch_lowering
from .common import FLT_MAX, FLT_MIN, one, one_bottom, spatial, window_text

draw("pooling", "Pooling", "SPP")


# -- shapes -----------------------------------------------------------------------------

def pooling_output(size: int, kernel: int, pad: int, stride: int, ceil: bool) -> int:
    """Caffe's pooled size: ceil (default) or floor rounding, then the clip rule: with padding,
    the last window must start inside the image or its left padding."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@rule("Pooling")
def _pooling_shape(layer, bottoms):
    p = layer.param
    pp = p.pooling_param
    bottom = one_bottom(bottoms)
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


# -- the picture's label -------------------------------------------------------------------

@label("Pooling")
def _pooling_label(layer, s):
    pp = layer.param.pooling_param
    kind = pp.PoolMethod.Name(pp.pool)
    return [f"{kind}, global"] if pp.global_pooling else [f"{kind} {window_text(pp, 2)}"]


# -- PyTorch ----------------------------------------------------------------------------

def _with_mask(b) -> bool:
    """Whether the layer also writes MAX pooling's argmax mask (a second top: SegNet)."""
    if len(b.layer.bottom) != 1 or len(b.layer.top) not in (1, 2):
        raise Unsupported(f"expects 1 bottom and 1 or 2 tops, has {len(b.layer.bottom)} and "
                          f"{len(b.layer.top)}")
    mask = len(b.layer.top) == 2
    if mask and b.layer.param.pooling_param.pool != caffe_pb2.PoolingParameter.MAX:
        raise Unsupported("a second top (the argmax mask) is MAX pooling's only")
    return mask


@torch_lowering("Pooling")
def _pooling_torch(b):
    layer = b.layer
    mask = _with_mask(b)
    pp = layer.param.pooling_param
    P = caffe_pb2.PoolingParameter
    mode = {P.MAX: "max", P.AVE: "ave", P.STOCHASTIC: "stochastic"}[pp.pool]
    if mask and pp.global_pooling:
        raise Unsupported("the argmax mask of global pooling")
    if pp.global_pooling and mode != "stochastic":
        cls = "nn.AdaptiveMaxPool2d" if mode == "max" else "nn.AdaptiveAvgPool2d"
        return b.emit("{m}({0})", b.ctor(cls, (1,)))
    if pp.global_pooling:
        return b.emit("{m}({0})", b.ctor("CaffePool2d", (mode, (1, 1)),
                                        {"global_pool": True}))
    kernel = spatial(pp, 2, "kernel_size", "kernel_h", "kernel_w", None)
    pad = spatial(pp, 2, "pad", "pad_h", "pad_w", 0)
    stride = spatial(pp, 2, "stride", "stride_h", "stride_w", 1)
    ceil = pp.round_mode == P.CEIL
    # torch's pooling equals Caffe's for every input size when the padding is at most half
    # the kernel and, without padding, the stride does not exceed the kernel (torch clips an
    # empty last window that Caffe keeps); see docs/caffe.md §4.
    native = mode != "stochastic" and all(
        2 * p <= k and (p > 0 or k >= st or not ceil) for k, p, st in zip(kernel, pad, stride))
    if native:
        kwargs: dict[str, Any] = {}
        if kernel != stride:
            kwargs["stride"] = one(stride)
        if any(pad):
            kwargs["padding"] = one(pad)
        if ceil:
            kwargs["ceil_mode"] = True
        if mask:  # values and Caffe's mask: each maximum's index in its plane, as floats
            return b.emit("{m}({0})", b.ctor("MaxPoolMask", (one(kernel),), kwargs),
                          tuple_out=True)
        cls = "nn.MaxPool2d" if mode == "max" else "nn.AvgPool2d"
        return b.emit("{m}({0})", b.ctor(cls, (one(kernel),), kwargs))
    if mask:
        raise Unsupported("the argmax mask where a window reaches past the padding")
    return b.emit("{m}({0})", b.ctor("CaffePool2d", (mode, tuple(kernel)),
                                    {"stride": tuple(stride), "pad": tuple(pad),
                                     "ceil_mode": ceil}))


# -- ONNX -------------------------------------------------------------------------------

def _pool_geometry(b):
    pp = b.layer.param.pooling_param
    kernel = spatial(pp, 2, "kernel_size", "kernel_h", "kernel_w", None)
    pad = spatial(pp, 2, "pad", "pad_h", "pad_w", 0)
    stride = spatial(pp, 2, "stride", "stride_h", "stride_w", 1)
    size, out = b.s.bottoms[0][2:], b.s.tops[0][2:]
    return kernel, pad, stride, size, out


@onnx_lowering("Pooling")
def _pooling_onnx(b):
    mask = _with_mask(b)
    pp = b.layer.param.pooling_param
    P = caffe_pb2.PoolingParameter
    x = b.x[0]
    if len(b.s.bottoms[0]) != 4:
        raise Unsupported(f"a {len(b.s.bottoms[0])}-D input (Caffe pools 4-D blobs)")
    if mask and pp.global_pooling:
        raise Unsupported("the argmax mask of global pooling")
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
        if all(p < k for p, k in zip(pads, kernel * 2)) and mask:
            # Caffe's mask: the index of each maximum within its plane (ONNX's Indices count
            # over the whole tensor), as floats
            values, index = b.op("MaxPool", [x], 2, pads=pads, **geometry)
            b.out("Identity", [values])
            plane = b.ints([size[0] * size[1]], "plane")
            b.out("Cast", [b.op("Mod", [index, plane])], 1, to=b.FLOAT)
        elif all(p < k for p, k in zip(pads, kernel * 2)):
            b.out("MaxPool", [x], pads=pads, **geometry)
        elif mask:
            raise Unsupported("the argmax mask where a window lies wholly in the padding")
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


def _stochastic_sums(b, x: str, axes, pool_attrs) -> None:
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
