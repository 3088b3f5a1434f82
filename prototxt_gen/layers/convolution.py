"""Convolution, Deconvolution and InnerProduct: their geometry (docs/caffe.md §2 weight layouts,
§4 output sizes), shapes and lowerings; grouped and dilated convolutions, N-D kernels."""
from __future__ import annotations

import math
from typing import Any

from ..errors import Unsupported
from ..graph.shapes import Shape, ShapeMismatch
from ..registry import draw, label, macs, onnx_lowering, placeholder, rule, torch_lowering
from .common import (axis_index, each_bottom, one, one_bottom, same_bottoms, same_text, spatial,
                     window_text)

draw("convolution", "Convolution", "Deconvolution", "ConvolutionDepthwise")
draw("inner product", "InnerProduct", "Embed")


@placeholder("Convolution", "Deconvolution")
def bilinear_filler(layer, k: int, shape: tuple[int, ...]):
    """Caffe's BilinearFiller where the file asks for it (FCN's and DeepLab's upsampling
    deconvolutions, lr_mult 0): every square w×w kernel gets (1 - |x/f - c|)·(1 - |y/f - c|),
    f = ceil(w/2), c = (w - 1)/(2f), in float32 as filler.hpp computes it. Other weights of a
    net without its caffemodel are zeros (graph/placeholders.py)."""
    cp = layer.param.convolution_param
    if k != 0 or cp.weight_filler.type != "bilinear" or len(shape) != 4 \
            or shape[2] != shape[3]:
        return 0.0
    import numpy as np  # here: generating a net's text needs no numpy
    f32 = np.float32
    w = shape[3]
    f = math.ceil(w / 2)
    c = f32((w - 1) / (2.0 * f))
    line = f32(1) - np.abs(np.arange(w, dtype=f32) / f32(f) - c)
    return np.broadcast_to(line[:, None] * line[None, :], shape)


# -- shapes -----------------------------------------------------------------------------

def conv_geometry(cp, bottom: Shape):
    axis = axis_index(cp.axis, len(bottom))
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
    bottom = same_bottoms(bottoms)
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
def _convolution_shape(layer, bottoms):
    p = layer.param
    return _conv_family(p, bottoms, _conv_size, transposed=False)


@rule("Deconvolution")
def _deconvolution_shape(layer, bottoms):
    p = layer.param
    return _conv_family(p, bottoms, _deconv_size, transposed=True)


def depthwise_param(layer, bottoms):
    """A ConvolutionDepthwise layer's parameters as the grouped Convolution it is (a fork's
    type: one group per input channel, as many outputs as inputs)."""
    p = type(layer.param)()
    p.CopyFrom(layer.param)
    channels = bottoms[0][1] if bottoms and len(bottoms[0]) > 1 else 0
    if p.convolution_param.num_output != channels:
        raise ShapeMismatch(f"ConvolutionDepthwise needs num_output equal to the {channels} "
                            f"input channels, not {p.convolution_param.num_output}")
    p.convolution_param.group = channels
    return p


@rule("ConvolutionDepthwise")
def _depthwise_shape(layer, bottoms):
    return _conv_family(depthwise_param(layer, bottoms), bottoms, _conv_size, transposed=False)


@rule("InnerProduct")
def _inner_product_shape(layer, bottoms):
    p = layer.param
    ip = p.inner_product_param
    bottom = one_bottom(bottoms)
    axis = axis_index(ip.axis, len(bottom))
    k = math.prod(bottom[axis:])
    n = ip.num_output
    if n == 0:
        raise ShapeMismatch("num_output must be positive")
    blobs = [(k, n) if ip.transpose else (n, k)]
    if ip.bias_term:
        blobs.append((n,))
    return [bottom[:axis] + (n,)], blobs


# -- analysis: MACs and the picture's label ------------------------------------------------

@macs("Convolution", "ConvolutionDepthwise")
def _convolution_macs(s):
    if not s.blobs:
        return 0
    return sum(math.prod(top) for top in s.tops) * math.prod(s.blobs[0][1:])  # (out, C/g, k..)


@macs("Deconvolution")
def _deconvolution_macs(s):
    if not s.blobs:
        return 0
    return sum(math.prod(b) for b in s.bottoms) * math.prod(s.blobs[0][1:])  # (C, out/g, k..)


@macs("InnerProduct")
def _inner_product_macs(s):
    if not s.blobs:
        return 0
    n = s.layer.param.inner_product_param.num_output
    return math.prod(s.tops[0]) * (math.prod(s.blobs[0]) // n)


@label("Convolution", "Deconvolution", "ConvolutionDepthwise")
def _convolution_label(layer, s):
    cp = layer.param.convolution_param
    n = len(s.bottoms[0]) - 2 if s.bottoms and s.bottoms[0] else 2
    out = [window_text(cp, n), f"{cp.num_output} outputs"]
    if cp.group != 1:
        out.append(f"group {cp.group}")
    dilation = list(cp.dilation) or [1]
    if any(d != 1 for d in dilation):
        out.append(f"dilation {same_text(dilation)}")
    return out


@label("InnerProduct")
def _inner_product_label(layer, s):
    return [f"{layer.param.inner_product_param.num_output} outputs"]


# -- PyTorch ----------------------------------------------------------------------------

_CONV = {1: "nn.Conv1d", 2: "nn.Conv2d", 3: "nn.Conv3d"}


_DECONV = {1: "nn.ConvTranspose1d", 2: "nn.ConvTranspose2d", 3: "nn.ConvTranspose3d"}


def _conv_like_torch(b, table: dict[int, str], cp=None) -> None:
    layer, s = b.layer, b.s
    cp = cp or layer.param.convolution_param
    axis, kernel, pad, stride, dilation, channels, group = conv_geometry(cp, s.bottoms[0])
    if axis != 1 or len(kernel) not in table:
        raise Unsupported(f"{len(kernel)}-D convolution on axis {axis} (torch has 1-3-D, axis 1)")
    kwargs: dict[str, Any] = {"kernel_size": one(kernel)}
    if any(v != 1 for v in stride):
        kwargs["stride"] = one(stride)
    if any(pad):
        kwargs["padding"] = one(pad)
    if any(v != 1 for v in dilation):
        kwargs["dilation"] = one(dilation)
    if group != 1:
        kwargs["groups"] = group
    if not cp.bias_term:
        kwargs["bias"] = False
    tensors = {"weight": b.blob(0)}
    keys = [("weight", None)]
    if cp.bias_term:
        tensors["bias"] = b.blob(1)
        keys.append(("bias", None))
    expr, many = each_bottom("{m}({%d})", layer)
    return b.emit(expr, b.ctor(table[len(kernel)], (channels, cp.num_output), kwargs, tensors),
                   keys, tuple_out=many)


@torch_lowering("Convolution")
def _convolution_torch(b):
    return _conv_like_torch(b, _CONV)


@torch_lowering("ConvolutionDepthwise")
def _depthwise_torch(b):
    return _conv_like_torch(b, _CONV, depthwise_param(b.layer, b.s.bottoms).convolution_param)


@torch_lowering("Deconvolution")
def _deconvolution_torch(b):
    return _conv_like_torch(b, _DECONV)


@torch_lowering("InnerProduct")
def _inner_product_torch(b):
    layer, s = b.layer, b.s
    ip = layer.param.inner_product_param
    bottom = s.bottoms[0]
    axis = ip.axis % len(bottom)
    k = math.prod(bottom[axis:])
    tensors = {"weight": b.blob(0, (lambda w: b.np.ascontiguousarray(w.T))
                              if ip.transpose else None)}
    keys = [("weight", (lambda w: b.np.ascontiguousarray(w.T))
                            if ip.transpose else None)]
    if ip.bias_term:
        tensors["bias"] = b.blob(1)
        keys.append(("bias", None))
    kwargs = {} if ip.bias_term else {"bias": False}
    arg = "{%d}" if len(bottom) == axis + 1 else f"torch.flatten({{%d}}, {axis})"
    expr, many = each_bottom("{m}(" + arg + ")", layer)
    return b.emit(expr, b.ctor("nn.Linear", (k, ip.num_output), kwargs, tensors), keys,
                   tuple_out=many)


# -- ONNX -------------------------------------------------------------------------------

def _conv_like_onnx(b, op_type: str, cp=None) -> None:
    cp = cp or b.layer.param.convolution_param
    axis, kernel, pad, stride, dilation, _, group = conv_geometry(cp, b.s.bottoms[0])
    if axis != 1:
        raise Unsupported(f"convolution on axis {axis} (ONNX convolves from axis 1)")
    inputs = [b.blob(0, "weight")] + ([b.blob(1, "bias")] if cp.bias_term else [])
    for k, x in enumerate(b.x):  # several bottoms share the weights
        b.out(op_type, [x] + inputs, k, kernel_shape=list(kernel), strides=list(stride),
              pads=list(pad) * 2, dilations=list(dilation), group=group)


@onnx_lowering("Convolution")
def _convolution_onnx(b):
    _conv_like_onnx(b, "Conv")


@onnx_lowering("ConvolutionDepthwise")
def _depthwise_onnx(b):
    _conv_like_onnx(b, "Conv", depthwise_param(b.layer, b.s.bottoms).convolution_param)


@onnx_lowering("Deconvolution")
def _deconvolution_onnx(b):
    _conv_like_onnx(b, "ConvTranspose")


@onnx_lowering("InnerProduct")
def _inner_product_onnx(b):
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
                    lambda w: b.np.ascontiguousarray(w.T))
    for k, x in enumerate(b.x):
        flat = b.reshape(x, [0] * axis + [-1])
        if bias:
            b.out("Add", [b.op("MatMul", [flat, weight]), bias[0]], k)
        else:
            b.out("MatMul", [flat, weight], k)
