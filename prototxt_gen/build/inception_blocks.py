"""Inception-ResNet-v1 (FaceNet's, Szegedy et al. 2016) as block builders: the stem, the
scaled residual blocks block35/block17/block8, reductions A and B, and the embedding head.

Layers are named after the TF-slim scopes of FaceNet's inception_resnet_v1.py
(Conv2d_1a_3x3, Repeat/block35_1/Branch_1/Conv2d_0b_3x3, Mixed_6a/..., Bottleneck). Padding and
pooling rounding are always explicit: TF's VALID is pad 0 with floor rounding, SAME (at
stride 1, odd kernels) is pad (k-1)/2 -- never Caffe's ceil default by accident. slim's batch
norm there has no gamma (scale=False) and eps 0.001: BatchNorm + Bias (beta).
"""
from __future__ import annotations

from .blocks import BLOCKS, HEADS, STEMS, Builder, register
from .schema import boolean, choice, non_negative_int, positive_float, positive_int, string

EPS = 0.001


def conv_bn(b: Builder, bottom: str, scope: str, num_output: int, kernel, stride: int = 1,
            padding: str = "SAME", relu: bool = True) -> str:
    """slim.conv2d with batch_norm (no gamma) and ReLU: Convolution (no bias) + BatchNorm +
    Bias (beta) + ReLU, in place on `scope`."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if padding == "SAME" and stride != 1:
        raise ValueError("SAME padding with a stride pads unevenly in TF; not used here")
    ph, pw = ((kh - 1) // 2, (kw - 1) // 2) if padding == "SAME" else (0, 0)
    conv = {"num_output": num_output, "bias_term": False, "stride": stride}
    if kh == kw:
        conv.update(kernel_size=kh, pad=ph)
    else:
        conv.update(kernel_h=kh, kernel_w=kw, pad_h=ph, pad_w=pw)
    b.net.add_layer("Convolution", scope, bottom, convolution_param=conv)
    b.net.add_layer("BatchNorm", f"{scope}/BatchNorm", scope, scope,
                    batch_norm_param={"use_global_stats": True, "eps": EPS})
    b.net.add_layer("Bias", f"{scope}/BatchNorm/beta", scope, scope)
    if relu:
        b.net.add_layer("ReLU", f"{scope}/Relu", scope, scope)
    b.channels = num_output
    return scope


def max_pool_valid(b: Builder, bottom: str, name: str, kernel: int = 3, stride: int = 2) -> str:
    b.net.add_layer("Pooling", name, bottom, pooling_param={
        "pool": "MAX", "kernel_size": kernel, "stride": stride, "round_mode": "FLOOR"})
    return name


@register(STEMS, "inception_resnet_v1", "FaceNet's Inception-ResNet-v1 stem (VALID convs)")
def stem(b: Builder, bottom: str) -> str:
    x = conv_bn(b, bottom, "Conv2d_1a_3x3", 32, 3, 2, "VALID")
    x = conv_bn(b, x, "Conv2d_2a_3x3", 32, 3, 1, "VALID")
    x = conv_bn(b, x, "Conv2d_2b_3x3", 64, 3)
    x = max_pool_valid(b, x, "MaxPool_3a_3x3")
    x = conv_bn(b, x, "Conv2d_3b_1x1", 80, 1, 1, "VALID")
    x = conv_bn(b, x, "Conv2d_4a_3x3", 192, 3, 1, "VALID")
    return conv_bn(b, x, "Conv2d_4b_3x3", 256, 3, 2, "VALID")


def _residual(b: Builder, scope: str, bottom: str, channels: int, branches: list[str],
              scale: float, activation: bool) -> str:
    """Concat the branches, a 1x1 conv (with bias, no norm) back to the input's `channels`,
    then input + scale * that as an Eltwise SUM with coefficients, and ReLU."""
    mixed = f"{scope}/concat"
    b.net.add_layer("Concat", mixed, branches)
    up = f"{scope}/Conv2d_1x1"
    b.net.add_layer("Convolution", up, mixed,
                    convolution_param={"num_output": channels, "kernel_size": 1})
    b.net.add_layer("Eltwise", scope, [bottom, up],
                    eltwise_param={"operation": "SUM", "coeff": [1.0, scale]})
    if activation:
        b.net.add_layer("ReLU", f"{scope}/Relu", scope, scope)
    b.channels = channels
    return scope


SCALED = dict(scale=positive_float(doc="the residual's scale (0.17, 0.10, 0.20 in FaceNet)"),
              activation=boolean(True, "ReLU after the sum (false for the final block8)"))


@register(BLOCKS, "block35", "Inception-ResNet-A (35x35 grid in the paper): 3 branches",
          scope=string("Repeat/block35_{unit}"), **SCALED)
def block35(b: Builder, unit: str, bottom: str, first: bool, scope: str, scale: float,
            activation: bool) -> str:
    s = scope.format(unit=unit)
    channels = b.channels
    b0 = conv_bn(b, bottom, f"{s}/Branch_0/Conv2d_1x1", 32, 1)
    b1 = conv_bn(b, bottom, f"{s}/Branch_1/Conv2d_0a_1x1", 32, 1)
    b1 = conv_bn(b, b1, f"{s}/Branch_1/Conv2d_0b_3x3", 32, 3)
    b2 = conv_bn(b, bottom, f"{s}/Branch_2/Conv2d_0a_1x1", 32, 1)
    b2 = conv_bn(b, b2, f"{s}/Branch_2/Conv2d_0b_3x3", 32, 3)
    b2 = conv_bn(b, b2, f"{s}/Branch_2/Conv2d_0c_3x3", 32, 3)
    return _residual(b, s, bottom, channels, [b0, b1, b2], scale, activation)


def _factorized(b: Builder, scope: str, bottom: str, width: int, k: int, scale: float,
                activation: bool) -> str:
    """Inception-ResNet-B and -C: a 1x1 branch and a 1x1, 1xk, kx1 branch."""
    channels = b.channels
    b0 = conv_bn(b, bottom, f"{scope}/Branch_0/Conv2d_1x1", width, 1)
    b1 = conv_bn(b, bottom, f"{scope}/Branch_1/Conv2d_0a_1x1", width, 1)
    b1 = conv_bn(b, b1, f"{scope}/Branch_1/Conv2d_0b_1x{k}", width, (1, k))
    b1 = conv_bn(b, b1, f"{scope}/Branch_1/Conv2d_0c_{k}x1", width, (k, 1))
    return _residual(b, scope, bottom, channels, [b0, b1], scale, activation)


@register(BLOCKS, "block17", "Inception-ResNet-B (17x17 grid): 1x7 then 7x1 convs",
          scope=string("Repeat_1/block17_{unit}"), **SCALED)
def block17(b: Builder, unit: str, bottom: str, first: bool, scope: str, scale: float,
            activation: bool) -> str:
    return _factorized(b, scope.format(unit=unit), bottom, 128, 7, scale, activation)


@register(BLOCKS, "block8", "Inception-ResNet-C (8x8 grid): 1x3 then 3x1 convs",
          scope=string("Repeat_2/block8_{unit}"), **SCALED)
def block8(b: Builder, unit: str, bottom: str, first: bool, scope: str, scale: float,
           activation: bool) -> str:
    return _factorized(b, scope.format(unit=unit), bottom, 192, 3, scale, activation)


@register(BLOCKS, "reduction_a", "Reduction-A: 3x3/2 conv, 1x1-3x3-3x3/2 convs, 3x3/2 max pool",
          scope=string("Mixed_6a"), k=positive_int(192), l=positive_int(192),
          m=positive_int(256), n=positive_int(384))
def reduction_a(b: Builder, unit: str, bottom: str, first: bool, scope: str, k: int, l: int,
                m: int, n: int) -> str:
    channels = b.channels
    b0 = conv_bn(b, bottom, f"{scope}/Branch_0/Conv2d_1a_3x3", n, 3, 2, "VALID")
    b1 = conv_bn(b, bottom, f"{scope}/Branch_1/Conv2d_0a_1x1", k, 1)
    b1 = conv_bn(b, b1, f"{scope}/Branch_1/Conv2d_0b_3x3", l, 3)
    b1 = conv_bn(b, b1, f"{scope}/Branch_1/Conv2d_1a_3x3", m, 3, 2, "VALID")
    b2 = max_pool_valid(b, bottom, f"{scope}/Branch_2/MaxPool_1a_3x3")
    b.net.add_layer("Concat", scope, [b0, b1, b2])
    b.channels = n + m + channels
    return scope


@register(BLOCKS, "reduction_b", "Reduction-B: three 1x1-3x3/2 conv branches, 3x3/2 max pool",
          scope=string("Mixed_7a"))
def reduction_b(b: Builder, unit: str, bottom: str, first: bool, scope: str) -> str:
    channels = b.channels
    b0 = conv_bn(b, bottom, f"{scope}/Branch_0/Conv2d_0a_1x1", 256, 1)
    b0 = conv_bn(b, b0, f"{scope}/Branch_0/Conv2d_1a_3x3", 384, 3, 2, "VALID")
    b1 = conv_bn(b, bottom, f"{scope}/Branch_1/Conv2d_0a_1x1", 256, 1)
    b1 = conv_bn(b, b1, f"{scope}/Branch_1/Conv2d_1a_3x3", 256, 3, 2, "VALID")
    b2 = conv_bn(b, bottom, f"{scope}/Branch_2/Conv2d_0a_1x1", 256, 1)
    b2 = conv_bn(b, b2, f"{scope}/Branch_2/Conv2d_0b_3x3", 256, 3)
    b2 = conv_bn(b, b2, f"{scope}/Branch_2/Conv2d_1a_3x3", 256, 3, 2, "VALID")
    b3 = max_pool_valid(b, bottom, f"{scope}/Branch_3/MaxPool_1a_3x3")
    b.net.add_layer("Concat", scope, [b0, b1, b2, b3])
    b.channels = 384 + 256 + 256 + channels
    return scope


@register(HEADS, "embedding",
          "FaceNet's head: average pool over the grid (VALID), dropout, a bottleneck "
          "fully connected layer with batch norm: the embedding",
          size=positive_int(128, "the embedding's size (FaceNet: 128 or 512)"),
          dropout=choice("keep", "none", default="keep"),
          keep_prob=positive_float(0.8),
          pool_stride=non_negative_int(1))
def embedding(b: Builder, bottom: str, last_stage: int, size: int, dropout: str,
              keep_prob: float, pool_stride: int) -> str:
    from ..graph.shapes import blob_shape
    h, w = blob_shape(b.net, bottom)[2:]
    pool = "Logits/AvgPool_1a_8x8"
    b.net.add_layer("Pooling", pool, bottom, pooling_param={
        "pool": "AVE", "kernel_h": h, "kernel_w": w, "stride": 1, "round_mode": "FLOOR"})
    x = pool
    if dropout == "keep":
        b.net.add_layer("Dropout", "Logits/Dropout", x, x,
                        dropout_param={"dropout_ratio": round(1 - keep_prob, 6)})
    b.net.add_layer("InnerProduct", "Bottleneck", x,
                    inner_product_param={"num_output": size, "bias_term": False})
    b.net.add_layer("BatchNorm", "Bottleneck/BatchNorm", "Bottleneck", "Bottleneck",
                    batch_norm_param={"use_global_stats": True, "eps": EPS})
    b.net.add_layer("Bias", "Bottleneck/BatchNorm/beta", "Bottleneck", "Bottleneck")
    return "Bottleneck"
