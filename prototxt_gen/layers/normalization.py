"""Normalizations and per-channel affines: BatchNorm (its statistics divided by the scale-factor
blob, docs/caffe.md §3), Scale, Bias, LRN (across and within channels), MVN, SSD's Normalize and
the forks' BN (PSPNet's and SegNet's)."""
from __future__ import annotations

from typing import Any

from ..errors import Unsupported, shown
from ..graph.net import Layer
from ..graph.shapes import Shape, ShapeMismatch, format_shape
from ..proto import caffe_pb2
from ..proto.prototxt import format_float32
from ..registry import draw, label, onnx_lowering, placeholder, rule, torch_lowering
from .common import (axis_index, fork_given, fork_value, lit, linear_onnx, one_bottom,
                     single)

draw("normalization", "BatchNorm", "Scale", "Bias", "LRN", "MVN", "Normalize", "BN")
# BatchNorm: mean 0, variance and factor 1; Scale: factor 1, bias 0; BN: slope 1, bias 0,
# mean 0, variance 1
placeholder("BatchNorm")(lambda layer, k, shape: float(k >= 1))
placeholder("Scale")(lambda layer, k, shape: float(k == 0))
placeholder("Normalize")(lambda layer, k, shape: 1.0)
placeholder("BN")(lambda layer, k, shape: float(k in (0, 3)))


# -- shapes -----------------------------------------------------------------------------

def batchnorm_eps(layer: Layer) -> float:
    """BatchNorm's eps as the prototxt wrote it (1e-5, not float32's 9.99999974e-06): the
    value a back end should pass on."""
    return float(format_float32(layer.param.batch_norm_param.eps))


def batchnorm_statistics(layer: Layer):
    """BatchNorm's mean and variance (numpy arrays) in float64: the stored sums divided by the
    scale-factor blob (a factor of 0 means no statistics yet: zeros, as Caffe does); None
    without blobs."""
    if len(layer.blobs) < 2:
        return None
    blobs = [b.reshape(-1).astype("float64") for b in layer.blobs]  # numpy arrays
    s = blobs[2][0] if len(blobs) > 2 else 1.0
    f = 0.0 if s == 0 else 1.0 / s
    return blobs[0] * f, blobs[1] * f


@rule("BatchNorm")
def _batch_norm_shape(layer, bottoms):
    bottom = one_bottom(bottoms)
    channels = bottom[1] if len(bottom) > 1 else 1
    return [bottom], [(channels,), (channels,), (1,)]


def _scale_shape(axis: int, num_axes: int, bottom: Shape, what: str) -> Shape:
    axis = axis_index(axis, len(bottom))
    if num_axes < -1:
        raise ShapeMismatch(f"{what}.num_axes must be -1 or more")
    end = len(bottom) if num_axes == -1 else axis + num_axes
    if end > len(bottom):
        raise ShapeMismatch(f"{what} axis {axis} + num_axes {num_axes} exceed the input's axes")
    return bottom[axis:end]


def _broadcast_check(bottom: Shape, other: Shape, axis: int) -> None:
    axis = axis_index(axis, len(bottom))
    if bottom[axis:axis + len(other)] != other:
        raise ShapeMismatch(f"second bottom {format_shape(other)} does not match the first from "
                            f"axis {axis}")


def _affine(sub, bottoms: list[Shape], what: str) -> tuple[Shape, Shape, bool]:
    """Scale and Bias: (input shape, shape of the learned or given factor, whether the factor
    is a second bottom rather than a learned blob)."""
    if len(bottoms) == 2:
        _broadcast_check(bottoms[0], bottoms[1], sub.axis)
        return bottoms[0], bottoms[1], True
    bottom = one_bottom(bottoms)
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
def _scale_rule(layer, bottoms):
    sp = layer.param.scale_param
    bottom, shape, given = _affine(sp, bottoms, "scale_param")
    blobs = ([] if given else [shape]) + ([shape] if sp.bias_term else [])
    return [bottom], blobs


@rule("Bias")
def _bias_shape(layer, bottoms):
    bottom, shape, given = _affine(layer.param.bias_param, bottoms, "bias_param")
    return [bottom], [] if given else [shape]


@rule("MVN")
def _mvn_shape(layer, bottoms):
    return [one_bottom(bottoms)], []


@rule("LRN")
def _lrn_shape(layer, bottoms):
    size = layer.param.lrn_param.local_size
    if size % 2 != 1:  # Caffe: CHECK_EQ(size_ % 2, 1)
        raise ShapeMismatch(f"local_size must be odd, not {size}")
    return [one_bottom(bottoms)], []


def normalize_params(layer: Layer) -> tuple[bool, bool, float]:
    """SSD's Normalize (a fork field): across_spatial, channel_shared, eps."""
    return (fork_value(layer, "norm_param", "across_spatial", True, bool),
            fork_value(layer, "norm_param", "channel_shared", True, bool),
            fork_value(layer, "norm_param", "eps", 1e-10, float))


@rule("Normalize")
def _normalize_shape(layer, bottoms):
    # SSD's fork layer: L2 normalization across channels with a learned scale per channel.
    bottom = one_bottom(bottoms)
    _, shared, _ = normalize_params(layer)
    return [bottom], [(1,) if shared else (bottom[1],)]


# The forks' BN: one type name, three layers (docs/caffe.md §13), told apart by their fields.
# - yjxiong's (TSN, PSPNet's later code): blobs slope, bias, moving mean, moving variance, each
#   1×C×1×1; at test time y = slope·(x − mean)·(variance + eps)^−½ + bias, bn_param.eps (1e-5).
# - PSPNet's released files (scale_filler, moving_average: true, decay): the same four blobs and
#   formula with var_eps (1e-10); without moving_average it uses the batch's own statistics.
# - SegNet's (alexgkendall/caffe-segnet; scale_filler and shift_filler, bn_mode): blobs scale
#   and shift; INFERENCE gives y = scale·x + shift (compute_bn_statistics.py folds the
#   statistics in), LEARN (its default) the batch's own statistics with eps 1e-9.
BN_MOVING, BN_AFFINE, BN_BATCH = "moving statistics", "scale and shift", "batch statistics"


def bn_form(layer: Layer) -> tuple[str, float, int]:
    """Which BN the layer is: its form, eps and number of blobs."""
    def given(*fields):
        return any(fork_given(layer, "bn_param", f) for f in fields)
    if given("bn_mode"):
        mode = layer.extra_value("bn_param", "bn_mode", None)
        if mode in ("INFERENCE", 1):
            return BN_AFFINE, 0.0, 2
        if mode not in ("LEARN", 0):
            raise ShapeMismatch(f"bn_param.bn_mode must be LEARN or INFERENCE, not "
                                f"{shown(mode)}")
        return BN_BATCH, 1e-9, 2
    if given("var_eps", "moving_average", "decay"):
        eps = fork_value(layer, "bn_param", "var_eps", 1e-10, float)
        moving = fork_value(layer, "bn_param", "moving_average", False, bool)
        return (BN_MOVING if moving else BN_BATCH), eps, 4
    if given("scale_filler", "shift_filler"):
        return BN_BATCH, 1e-9, 2
    return BN_MOVING, fork_value(layer, "bn_param", "eps", 1e-5, float), 4


@rule("BN")
def _bn_shape(layer, bottoms):
    bottom = one_bottom(bottoms)
    if len(bottom) != 4:
        raise ShapeMismatch(f"BN takes a 4-D input (N×C×H×W), not {format_shape(bottom)}")
    _, _, count = bn_form(layer)
    return [bottom], [(1, bottom[1], 1, 1)] * count


# -- the picture's label -------------------------------------------------------------------

@label("LRN")
def _lrn_label(layer, s):
    return [f"size {layer.param.lrn_param.local_size}"]


# -- PyTorch ----------------------------------------------------------------------------

_BATCHNORM = {2: "nn.BatchNorm1d", 3: "nn.BatchNorm1d", 4: "nn.BatchNorm2d", 5: "nn.BatchNorm3d"}


@torch_lowering("BatchNorm")
def _batch_norm_torch(b):
    layer, s = b.layer, b.s
    single(b)
    bp = layer.param.batch_norm_param
    bottom = s.bottoms[0]
    eps = batchnorm_eps(layer)
    if bp.HasField("use_global_stats") and not bp.use_global_stats:
        # Caffe normalizes with the batch's own statistics then, in any phase.
        return b.emit(f"F.batch_norm({{0}}, None, None, training=True, eps={lit(eps)})")
    if len(bottom) not in _BATCHNORM:
        raise Unsupported(f"a {len(bottom)}-D input (torch's BatchNorm takes 2-5-D)")
    stats = batchnorm_statistics(layer)
    mean, var = (None, None) if stats is None else (x.astype(b.np.float32) for x in stats)
    tensors = {"running_mean": mean, "running_var": var,
               "num_batches_tracked": None if stats is None else b.np.zeros((), b.np.int64)}
    keys = [("running_mean", None), ("running_var", None),
                           b.np.ones(1, b.np.float32)]
    kwargs: dict[str, Any] = {"affine": False}
    if eps != 1e-5:
        kwargs = {"eps": eps, **kwargs}
    return b.emit("{m}({0})", b.ctor(_BATCHNORM[len(bottom)], (bottom[1],), kwargs, tensors),
                   keys)


@torch_lowering("BN")
def _bn_torch(b):
    single(b)
    c = b.s.bottoms[0][1]
    form, eps, count = bn_form(b.layer)
    flat = (lambda a: a.reshape(-1))  # noqa: E731 - 1×C×1×1 blobs as torch's C vectors
    names = ["weight", "bias"] + (["running_mean", "running_var"] if form == BN_MOVING else [])
    tensors = {name: b.blob(k, flat) for k, name in enumerate(names)}
    keys = [(n, None) for n in names] + [b.np.zeros((1, c, 1, 1), b.np.float32)] * \
        (count - len(names))  # the unused statistics of a layer in batch mode
    if form == BN_AFFINE:
        return b.emit("{m}({0})", b.ctor("Scale", ((c,), 2), {}, tensors), keys)
    if form == BN_MOVING:
        tensors["num_batches_tracked"] = None if not b.layer.blobs else \
            b.np.zeros((), b.np.int64)
        kwargs = {"eps": eps}
    else:  # the batch's own statistics: a BatchNorm2d that tracks none
        kwargs = {"eps": eps, "track_running_stats": False}
    return b.emit("{m}({0})", b.ctor("nn.BatchNorm2d", (c,), kwargs, tensors), keys)


@torch_lowering("Scale")
def _scale_torch(b):
    layer, s = b.layer, b.s
    sp = layer.param.scale_param
    shape, trailing = affine_layout(sp, s.bottoms)
    two = len(s.bottoms) == 2
    if layer.fused_from and len(s.bottoms[0]) == 4 and trailing == 2 and len(shape) == 1:
        # A BatchNorm + Scale chain with no convolution before it, folded (fuse.py) into
        # y = a * x + b: one BatchNorm2d whose statistics are the identity.
        c = shape[0]
        tensors = {"weight": b.blob(0), "bias": b.blob(1),
                   "running_mean": b.np.zeros(c, b.np.float32),
                   "running_var": b.np.ones(c, b.np.float32),
                   "num_batches_tracked": b.np.zeros((), b.np.int64)}
        return b.emit("{m}({0})", b.ctor("nn.BatchNorm2d", (c,), {"eps": 0.0}, tensors))
    tensors, keys = {}, []
    if not two:
        tensors["weight"] = b.blob(0)
        keys.append(("weight", None))
    if sp.bias_term:
        tensors["bias"] = b.blob(0 if two else 1)
        keys.append(("bias", None))
    kwargs = {} if not two else {"learned": False}
    if not sp.bias_term:
        kwargs["bias"] = False
    return b.emit("{m}({0}, {1})" if two else "{m}({0})",
                   b.ctor("Scale", (shape, trailing), kwargs, tensors), keys)


@torch_lowering("Bias")
def _bias_torch(b):
    layer, s = b.layer, b.s
    bp = layer.param.bias_param
    shape, trailing = affine_layout(bp, s.bottoms)
    if len(s.bottoms) == 2:
        return b.emit("{m}({0}, {1})", b.ctor("Bias", (shape, trailing),
                                             {"learned": False}))
    return b.emit("{m}({0})", b.ctor("Bias", (shape, trailing), {},
                                    {"bias": b.blob(0)}), [("bias", None)])


@torch_lowering("LRN")
def _lrn_torch(b):
    layer = b.layer
    single(b)
    lp = layer.param.lrn_param
    if lp.norm_region == caffe_pb2.LRNParameter.WITHIN_CHANNEL:
        return b.emit("{m}({0})", b.ctor("LRNWithinChannel",
                                        (lp.local_size, lp.alpha, lp.beta)))
    return b.emit("{m}({0})", b.ctor("nn.LocalResponseNorm", (lp.local_size,),
                                    {"alpha": lp.alpha, "beta": lp.beta, "k": lp.k}))


@torch_lowering("MVN")
def _mvn_torch(b):
    layer = b.layer
    single(b)
    mp = layer.param.mvn_param
    return b.emit("{m}({0})", b.ctor("MVN", (), {
        "normalize_variance": mp.normalize_variance, "across_channels": mp.across_channels,
        "eps": mp.eps}))


@torch_lowering("Normalize")
def _normalize_torch(b):
    layer, s = b.layer, b.s
    single(b)
    c = s.bottoms[0][1]
    across, shared, eps = normalize_params(layer)
    return b.emit("{m}({0})", b.ctor("Normalize", (c,), {
        "across_spatial": across, "channel_shared": shared, "eps": eps},
        {"weight": b.blob(0)}), [("weight", None)])


# -- ONNX -------------------------------------------------------------------------------

def _batch_statistics(b, x: str, eps: float) -> tuple[str, str]:
    """(x - mean, sqrt(var + eps)) over every axis but the channels, as Caffe's BatchNorm
    does when use_global_stats is false."""
    axes = [0] + list(range(2, len(b.s.bottoms[0])))
    centered = b.op("Sub", [x, b.reduce("ReduceMean", x, axes, True)])
    var = b.reduce("ReduceMean", b.op("Mul", [centered, centered]), axes, True)
    return centered, b.op("Sqrt", [b.op("Add", [var, b.scalar(eps, "eps")])])


def _statistics(b) -> tuple[str, str]:
    c = b.s.bottoms[0][1]
    stats = batchnorm_statistics(b.layer)
    mean, var = (b.np.zeros(c), b.np.ones(c)) if stats is None else stats
    return b.const(mean, "mean"), b.const(var, "var")


@onnx_lowering("BatchNorm")
def _batch_norm_onnx(b):
    single(b)
    bp = b.layer.param.batch_norm_param
    if bp.HasField("use_global_stats") and not bp.use_global_stats:
        b.out("Div", list(_batch_statistics(b, b.x[0], batchnorm_eps(b.layer))))
        return
    if len(b.s.bottoms[0]) < 2:
        raise Unsupported("a 1-D input (BatchNorm normalizes axis 1)")
    c = b.s.bottoms[0][1]
    mean, var = _statistics(b)
    b.out("BatchNormalization", [b.x[0], b.const(b.np.ones(c), "scale"),
                                 b.const(b.np.zeros(c), "bias"), mean, var],
          epsilon=batchnorm_eps(b.layer))


def batch_norm_with_scale(b, scale: Layer, s) -> None:
    """A BatchNorm and the per-channel Scale that reads it, as one BatchNormalization."""
    c = b.s.bottoms[0][1]
    mean, var = _statistics(b)
    sb = b.for_layer(scale, s)
    gamma = sb.blob(0, "scale")
    beta = sb.blob(1, "bias") if scale.param.scale_param.bias_term else \
        sb.const(b.np.zeros(c), "bias")
    b.out("BatchNormalization", [b.x[0], gamma, beta, mean, var], epsilon=batchnorm_eps(b.layer))


@onnx_lowering("BN")
def _bn_onnx(b):
    single(b)
    c = b.s.bottoms[0][1]
    form, eps, _ = bn_form(b.layer)
    if form == BN_MOVING:
        b.out("BatchNormalization", [b.x[0]] + [
            b.blob(k, name, shape=(c,)) for k, name in
            enumerate(("scale", "bias", "mean", "var"))], epsilon=eps)
        return
    scale, shift = b.blob(0, "scale"), b.blob(1, "shift")  # 1×C×1×1: broadcast as they are
    x = b.x[0]
    if form == BN_BATCH:
        x = b.op("Div", list(_batch_statistics(b, x, eps)))
    b.out("Add", [b.op("Mul", [x, scale]), shift])


def _factor(b, sub, suffix: str) -> str:
    """Scale's factor or Bias's term -- learned blob 0, or the second bottom -- shaped to
    broadcast over the input's axes it spans."""
    shape, trailing = affine_layout(sub, b.s.bottoms)
    if len(b.x) == 2:
        if not trailing:
            return b.x[1]
        return b.unsqueeze(b.x[1], range(len(shape), len(shape) + trailing))
    return b.blob(0, suffix, shape=tuple(shape) + (1,) * trailing)


@onnx_lowering("Scale")
def _scale_onnx(b):
    sp = b.layer.param.scale_param
    two = len(b.x) == 2
    factor = _factor(b, sp, "scale")
    if not sp.bias_term:
        b.out("Mul", [b.x[0], factor])
        return
    shape, trailing = affine_layout(sp, b.s.bottoms)
    bias = b.blob(1 if not two else 0, "bias", shape=tuple(shape) + (1,) * trailing)
    b.out("Add", [b.op("Mul", [b.x[0], factor]), bias])


@onnx_lowering("Bias")
def _bias_onnx(b):
    b.out("Add", [b.x[0], _factor(b, b.layer.param.bias_param, "bias")])


@onnx_lowering("LRN")
def _lrn_onnx(b):
    single(b)
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
    base = linear_onnx(b, avg, lp.alpha, 1.0)
    b.out("Mul", [x, b.op("Pow", [base, b.scalar(-lp.beta, "power")])])


@onnx_lowering("MVN")
def _mvn_onnx(b):
    single(b)
    mp = b.layer.param.mvn_param
    x = b.x[0]
    axes = list(range(1 if mp.across_channels else 2, len(b.s.bottoms[0])))
    if not mp.normalize_variance:
        b.out("Sub", [x, b.reduce("ReduceMean", x, axes, True)])
        return
    centered = b.op("Sub", [x, b.reduce("ReduceMean", x, axes, True)])
    std = b.op("Sqrt", [b.reduce("ReduceMean", b.op("Mul", [centered, centered]), axes, True)])
    b.out("Div", [centered, b.op("Add", [std, b.scalar(mp.eps, "eps")])])


@onnx_lowering("Normalize")
def _normalize_onnx(b):
    single(b)
    nd = len(b.s.bottoms[0])
    across, _, eps = normalize_params(b.layer)
    x = b.x[0]
    axes = list(range(1, nd)) if across else [1]
    norm = b.op("Sqrt", [b.op("Add", [b.reduce("ReduceSumSquare", x, axes, True),
                                      b.scalar(eps, "eps")])])
    n = b.s.blobs[0][0]
    scale = b.blob(0, "scale", shape=(1,) if n == 1 else (1, n) + (1,) * (nd - 2))
    b.out("Mul", [b.op("Div", [x, norm]), scale])
