"""Activations, one value in, one out: ReLU (leaky), PReLU, Sigmoid, TanH, AbsVal, BNLL, ELU,
Power, Exp, Log, Threshold, Clip, Swish, the forks' ReLU6, HardSwish and Mish (docs/caffe.md
§8), and Dropout (the identity at inference)."""
from __future__ import annotations

import math
from typing import Callable

from ..graph.net import Layer
from ..graph.shapes import ShapeMismatch
from ..registry import draw, label, onnx_lowering, placeholder, rule, torch_lowering
from .common import lit, linear_onnx, one_bottom, single

draw("activation", "ReLU", "PReLU", "ReLU6", "Sigmoid", "TanH", "ELU", "AbsVal", "BNLL",
     "Power", "Exp", "Log", "Threshold", "Clip", "Swish", "HardSwish", "Mish", "Dropout")
placeholder("PReLU")(lambda layer, k, shape: 0.25)  # Caffe's default slope


# -- shapes -----------------------------------------------------------------------------

@rule("ReLU", "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU", "Power", "Exp", "Log",
      "Threshold", "Clip", "Swish", "ReLU6", "HardSwish", "Mish")
def _same_shape_shape(layer, bottoms):
    return [one_bottom(bottoms)], []


@rule("Dropout")
def _dropout_shape(layer, bottoms):
    ratio = layer.param.dropout_param.dropout_ratio
    if not 0 <= ratio < 1:  # Caffe scales kept values by 1 / (1 - ratio)
        raise ShapeMismatch(f"dropout_ratio must be in [0, 1), not {ratio:g}")
    return [one_bottom(bottoms)], []


@rule("PReLU")
def _prelu_shape(layer, bottoms):
    p = layer.param
    bottom = one_bottom(bottoms)
    if len(bottom) < 2:
        raise ShapeMismatch("PReLU needs an input with a channel axis")
    return [bottom], [(1,) if p.prelu_param.channel_shared else (bottom[1],)]


# -- the picture's label -------------------------------------------------------------------

@label("Dropout")
def _dropout_label(layer, s):
    return [f"ratio {layer.param.dropout_param.dropout_ratio:g}"]


# -- PyTorch ----------------------------------------------------------------------------

@torch_lowering("ReLU")
def _relu_torch(b):
    layer = b.layer
    slope = layer.param.relu_param.negative_slope
    if slope:
        return b.emit(f"F.leaky_relu({{0}}, {lit(slope)})")
    return b.emit("F.relu({0})")


@torch_lowering("PReLU")
def _prelu_torch(b):
    s = b.s
    n = s.blobs[0][0]
    return b.emit("{m}({0})", b.ctor("nn.PReLU", (n,) if n != 1 else (),
                                    tensors={"weight": b.blob(0)}), [("weight", None)])


def _simple_torch(expr: Callable[[Layer], str]):
    def convert(b):
        single(b)
        return b.emit(expr(b.layer))
    return convert


for _type, _fn in {
    "Sigmoid": _simple_torch(lambda layer: "torch.sigmoid({0})"),
    "TanH": _simple_torch(lambda layer: "torch.tanh({0})"),
    "AbsVal": _simple_torch(lambda layer: "torch.abs({0})"),
    "BNLL": _simple_torch(lambda layer: "F.softplus({0})"),
    "ReLU6": _simple_torch(lambda layer: "F.relu6({0})"),
    "HardSwish": _simple_torch(lambda layer: "F.hardswish({0})"),  # x * ReLU6(x + 3) / 6
    "Mish": _simple_torch(lambda layer: "F.mish({0})"),            # x * tanh(softplus(x))
    "ELU": _simple_torch(lambda layer: f"F.elu({{0}}, {lit(layer.param.elu_param.alpha)})"),
    "Threshold": _simple_torch(lambda layer: f"({{0}} > {lit(layer.param.threshold_param.threshold)})"
                         ".to({0}.dtype)"),
    "Clip": _simple_torch(lambda layer: f"torch.clamp({{0}}, {lit(layer.param.clip_param.min)}, "
                    f"{lit(layer.param.clip_param.max)})"),
    "Swish": _simple_torch(lambda layer: f"{{0}} * torch.sigmoid({lit(layer.param.swish_param.beta)}"
                     " * {0})" if layer.param.swish_param.beta != 1 else "F.silu({0})"),
    "Dropout": _simple_torch(lambda layer: f"F.dropout({{0}}, "
                       f"{lit(layer.param.dropout_param.dropout_ratio)}, self.training)"),
}.items():
    torch_lowering(_type)(_fn)


def _linear_expr(scale: float, shift: float, x: str = "{0}") -> str:
    """shift + scale * x, written without the parts that do nothing."""
    term = x if scale == 1 else f"{lit(scale)} * {x}"
    return term if shift == 0 else f"({lit(shift)} + {term})"


@torch_lowering("Power")
def _power_torch(b):
    layer = b.layer
    single(b)
    pp = layer.param.power_param
    base = _linear_expr(pp.scale, pp.shift)
    return b.emit(base if pp.power == 1 else f"torch.pow({base}, {lit(pp.power)})")


@torch_lowering("Exp")
def _exp_torch(b):
    layer = b.layer
    single(b)
    ep = layer.param.exp_param
    ln_base = 1.0 if ep.base == -1 else math.log(ep.base)
    return b.emit(f"torch.exp({_linear_expr(ep.scale * ln_base, ep.shift * ln_base)})")


@torch_lowering("Log")
def _log_torch(b):
    layer = b.layer
    single(b)
    lp = layer.param.log_param
    expr = f"torch.log({_linear_expr(lp.scale, lp.shift)})"
    return b.emit(expr if lp.base == -1 else f"{expr} / {lit(math.log(lp.base))}")


# -- ONNX -------------------------------------------------------------------------------

@onnx_lowering("ReLU")
def _relu_onnx(b):
    slope = b.layer.param.relu_param.negative_slope
    if slope:
        b.out("LeakyRelu", b.x, alpha=slope)
    else:
        b.out("Relu", b.x)


@onnx_lowering("PReLU")
def _prelu_onnx(b):
    nd = len(b.s.bottoms[0])
    n = b.s.blobs[0][0]
    shape = (1,) if n == 1 else (n,) + (1,) * (nd - 2)
    b.out("PRelu", [b.x[0], b.blob(0, "slope", shape=shape)])


def _unary_onnx(op_type: str, **attrs):
    def convert(b):
        single(b)
        b.out(op_type, b.x, **{k: v(b.layer) if callable(v) else v for k, v in attrs.items()})
    return convert


for _type, _fn in {
    "Sigmoid": _unary_onnx("Sigmoid"),
    "TanH": _unary_onnx("Tanh"),
    "AbsVal": _unary_onnx("Abs"),
    "BNLL": _unary_onnx("Softplus"),
    "ELU": _unary_onnx("Elu", alpha=lambda layer: layer.param.elu_param.alpha),
}.items():
    onnx_lowering(_type)(_fn)


@onnx_lowering("ReLU6")
def _relu6_onnx(b):
    single(b)
    b.out("Clip", [b.x[0], b.scalar(0.0, "min"), b.scalar(6.0, "max")])


@onnx_lowering("HardSwish")
def _hard_swish_onnx(b):  # x * ReLU6(x + 3) / 6; ONNX's HardSwish op needs opset 14
    single(b)
    x = b.x[0]
    b.out("Mul", [x, b.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])


@onnx_lowering("Mish")
def _mish_onnx(b):  # x * tanh(softplus(x)); ONNX's Mish op needs opset 18
    single(b)
    x = b.x[0]
    b.out("Mul", [x, b.op("Tanh", [b.op("Softplus", [x])])])


@onnx_lowering("Clip")
def _clip_onnx(b):
    single(b)
    cp = b.layer.param.clip_param
    b.out("Clip", [b.x[0], b.scalar(cp.min, "min"), b.scalar(cp.max, "max")])


@onnx_lowering("Threshold")
def _threshold_onnx(b):
    single(b)
    above = b.op("Greater", [b.x[0], b.scalar(b.layer.param.threshold_param.threshold,
                                               "threshold")])
    b.out("Cast", [above], to=b.FLOAT)


@onnx_lowering("Swish")
def _swish_onnx(b):
    single(b)
    beta = b.layer.param.swish_param.beta
    x = b.x[0]
    arg = x if beta == 1 else b.op("Mul", [x, b.scalar(beta, "beta")])
    b.out("Mul", [x, b.op("Sigmoid", [arg])])


@onnx_lowering("Dropout")
def _dropout_onnx(b):
    # the identity at inference (Caffe scales while training)
    for k in range(len(b.layer.top)):
        b.alias(k, b.x[0])


@onnx_lowering("Power")
def _power_onnx(b):
    single(b)
    pp = b.layer.param.power_param
    base = linear_onnx(b, b.x[0], pp.scale, pp.shift)
    if pp.power != 1:
        b.out("Pow", [base, b.scalar(pp.power, "power")])
    else:
        b.result(base)


@onnx_lowering("Exp")
def _exp_onnx(b):
    single(b)
    ep = b.layer.param.exp_param
    ln_base = 1.0 if ep.base == -1 else math.log(ep.base)
    b.out("Exp", [linear_onnx(b, b.x[0], ep.scale * ln_base, ep.shift * ln_base)])


@onnx_lowering("Log")
def _log_onnx(b):
    single(b)
    lp = b.layer.param.log_param
    arg = linear_onnx(b, b.x[0], lp.scale, lp.shift)
    if lp.base == -1:
        b.out("Log", [arg])
    else:
        b.out("Div", [b.op("Log", [arg]), b.scalar(math.log(lp.base), "ln_base")])
