"""Block builders: small functions that emit Caffe layers into a Net, one per kind of stem,
block and head a spec can name. Each kind registers the keys it accepts, so specs are checked
against the builder that will use them, and adding a kind touches only this table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .naming import Naming
from ..registry import put
from ..graph.net import Net
from .schema import Key, boolean, choice, int_or, non_negative_int, positive_int
from ..graph.shapes import blob_shape

# Field order of the ReLUs that follow a convolution in the ResNet-101/152 release.
TOP_FIRST = ("top", "bottom", "name", "type")


@dataclass
class Builder:
    """What builders share: the net being built, the naming scheme, the channel count of the
    trunk so far and the output options that change how layers are written."""

    net: Net
    naming: Naming
    channels: int
    conv_relu_top_first: bool = False

    def conv_bn(self, bottom: str, names: dict[str, str], num_output: int, kernel: int,
                stride: int = 1, pad: int = 0, dilation: int = 1, group: int = 1,
                bias: bool = False, relu: bool = True) -> str:
        """Convolution + BatchNorm + Scale (+ ReLU), the last three in place on the conv's top."""
        conv = {"num_output": num_output, "kernel_size": kernel, "pad": pad, "stride": stride}
        if not bias:
            conv["bias_term"] = False
        if dilation != 1:
            conv["dilation"] = dilation
        if group != 1:
            conv["group"] = group
        top = names["conv"]
        self.net.add_layer("Convolution", top, bottom, convolution_param=conv)
        self.net.add_layer("BatchNorm", names["bn"], top, top,
                           batch_norm_param={"use_global_stats": True})
        self.net.add_layer("Scale", names["scale"], top, top, scale_param={"bias_term": True})
        if relu:
            layer = self.net.add_layer("ReLU", names["relu"], top, top)
            if self.conv_relu_top_first:
                layer.text_order = TOP_FIRST
        return top

    def conv(self, bottom: str, name: str, num_output: int, kernel: int, stride: int = 1,
             pad: int = 0) -> str:
        """A plain convolution with a bias (no BatchNorm after it)."""
        conv = {"num_output": num_output, "kernel_size": kernel, "pad": pad, "stride": stride}
        self.net.add_layer("Convolution", name, bottom, convolution_param=conv)
        return name

    def norm_relu(self, bottom: str, scope: str, unit: str = "", branch: str = "",
                  top: str | None = None) -> str:
        """BatchNorm + Scale + ReLU named after `scope` (the "conv" of the naming templates):
        into `top` (then in place), or in place on `bottom`."""
        top = top or bottom
        self.net.add_layer("BatchNorm", self.naming("bn", unit=unit, branch=branch, conv=scope),
                           bottom, top, batch_norm_param={"use_global_stats": True})
        self.net.add_layer("Scale", self.naming("scale", unit=unit, branch=branch, conv=scope),
                           top, top, scale_param={"bias_term": True})
        self.net.add_layer("ReLU", self.naming("relu", unit=unit, branch=branch, conv=scope),
                           top, top)
        return top

    def unit_names(self, unit: str, branch: str) -> dict[str, str]:
        conv = self.naming("conv", unit=unit, branch=branch)
        return {"conv": conv,
                **{k: self.naming(k, unit=unit, branch=branch, conv=conv)
                   for k in ("bn", "scale", "relu")}}

    def residual_add(self, unit: str, shortcut: str, residual: str) -> str:
        """Eltwise SUM of [shortcut, residual] followed by an in-place ReLU."""
        top = self.naming("add", unit=unit)
        self.net.add_layer("Eltwise", top, [shortcut, residual])
        self.net.add_layer("ReLU", self.naming("add_relu", unit=unit), top, top)
        return top


@dataclass(frozen=True)
class Kind:
    """A registered builder and the spec keys it takes."""

    name: str
    build: Callable
    keys: dict[str, Key]
    doc: str


STEMS: dict[str, Kind] = {}
BLOCKS: dict[str, Kind] = {}
HEADS: dict[str, Kind] = {}


def register(table: dict[str, Kind], name: str, doc: str, *, replace: bool = False,
             **keys: Key):
    def wrap(fn: Callable) -> Callable:
        put(table, [name], Kind(name, fn, keys, doc), "a kind", replace)
        return fn
    return wrap


# -- stems ----------------------------------------------------------------------------------------

@register(
    STEMS, "resnet", "conv (+BN, Scale, ReLU) then max pooling, as in ResNet v1",
    channels=positive_int(64),
    kernel=positive_int(7),
    stride=positive_int(2),
    pad=non_negative_int(3),
    bias=boolean(False, "the conv has a bias (the ResNet-50 release's conv1 does)"),
    norm=boolean(True, "BatchNorm + Scale + ReLU after the conv (false: ResNet v2's root, a "
                       "plain conv with a bias)"),
    pool=choice("max", "ave", "none", default="max"),
    pool_kernel=positive_int(3),
    pool_stride=positive_int(2),
    pool_pad=non_negative_int(0),
    pool_round=choice("ceil", "floor", default="ceil",
                      doc='"ceil": Caffe\'s default; "floor": torchvision\'s (with pool_pad 1, '
                          '112 -> 56 with windows centred as torchvision has them)'),
)
def resnet_stem(b: Builder, bottom: str, channels: int, kernel: int, stride: int, pad: int,
                bias: bool, norm: bool, pool: str, pool_kernel: int, pool_stride: int,
                pool_pad: int, pool_round: str) -> str:
    conv = b.naming("stem_conv")
    if norm:
        names = {"conv": conv, "bn": b.naming("stem_bn", conv=conv),
                 "scale": b.naming("stem_scale", conv=conv),
                 "relu": b.naming("relu", unit="", branch="", conv=conv)}
        top = b.conv_bn(bottom, names, channels, kernel, stride, pad, bias=bias)
    else:
        top = b.conv(bottom, conv, channels, kernel, stride, pad)
    b.channels = channels
    if pool == "none":
        return top
    name = b.naming("stem_pool")
    pooling = {"kernel_size": pool_kernel, "stride": pool_stride, "pool": pool.upper()}
    if pool_pad:
        pooling["pad"] = pool_pad
    if pool_round == "floor":
        pooling["round_mode"] = "FLOOR"
    b.net.add_layer("Pooling", name, top, pooling_param=pooling)
    return name


# -- blocks ---------------------------------------------------------------------------------------
# A block builder gets the unit id ("2a"), its input blob, whether it is the first unit of its
# stage and the stage's keys, with `stride` already reduced to 1 for all but the first unit.

SHORTCUT = choice("auto", "projection", default="auto",
                  doc='"auto": a projection (1x1 conv + BN) only where channels or stride change; '
                      '"projection": also on the first unit of every stage')


def _shortcut(b: Builder, unit: str, bottom: str, first: bool, channels: int, stride: int,
              policy: str) -> str:
    if b.channels == channels and stride == 1 and not (first and policy == "projection"):
        return bottom
    return b.conv_bn(bottom, b.unit_names(unit, "1"), channels, 1, stride, 0, relu=False)


@register(
    BLOCKS, "basic", "two 3x3 convs (ResNet-18/34)",
    channels=positive_int(),
    stride=positive_int(1),
    dilation=positive_int(1),
    shortcut=SHORTCUT,
)
def basic(b: Builder, unit: str, bottom: str, first: bool, channels: int, stride: int,
          dilation: int, shortcut: str) -> str:
    short = _shortcut(b, unit, bottom, first, channels, stride, shortcut)
    x = b.conv_bn(bottom, b.unit_names(unit, "2a"), channels, 3, stride, dilation, dilation)
    x = b.conv_bn(x, b.unit_names(unit, "2b"), channels, 3, 1, dilation, dilation, relu=False)
    b.channels = channels
    return b.residual_add(unit, short, x)


@register(
    BLOCKS, "bottleneck", "1x1 reduce, 3x3, 1x1 expand (ResNet-50/101/152)",
    width=positive_int(doc="channels of the inner 1x1 and 3x3 convs"),
    channels=positive_int(doc="output channels"),
    stride=positive_int(1),
    dilation=positive_int(1),
    groups=positive_int(1, "groups of the 3x3 conv (ResNeXt cardinality)"),
    stride_on=choice("1x1", "3x3", default="1x1",
                     doc='"1x1": MSRA/Caffe ResNet v1; "3x3": torchvision (v1.5)'),
    shortcut=SHORTCUT,
)
def bottleneck(b: Builder, unit: str, bottom: str, first: bool, width: int, channels: int,
               stride: int, dilation: int, groups: int, stride_on: str, shortcut: str) -> str:
    # The release emits the projection branch first, then branch2a/b/c.
    short = _shortcut(b, unit, bottom, first, channels, stride, shortcut)
    s1, s3 = (stride, 1) if stride_on == "1x1" else (1, stride)
    x = b.conv_bn(bottom, b.unit_names(unit, "2a"), width, 1, s1, 0)
    x = b.conv_bn(x, b.unit_names(unit, "2b"), width, 3, s3, dilation, dilation, groups)
    x = b.conv_bn(x, b.unit_names(unit, "2c"), channels, 1, 1, 0, relu=False)
    b.channels = channels
    return b.residual_add(unit, short, x)


@register(
    BLOCKS, "preact_bottleneck",
    "pre-activation bottleneck (ResNet v2, TF-slim's bottleneck_v2): BN-ReLU first; the "
    "shortcut is the input (subsampled) or a 1x1 conv on the pre-activated input",
    width=positive_int(doc="channels of the inner 1x1 and 3x3 convs"),
    channels=positive_int(doc="output channels"),
    stride=positive_int(1),
    dilation=positive_int(1),
)
def preact_bottleneck(b: Builder, unit: str, bottom: str, first: bool, width: int,
                      channels: int, stride: int, dilation: int) -> str:
    scope = b.naming("conv", unit=unit, branch="preact")
    preact = b.norm_relu(bottom, scope, unit, "preact", top=scope)
    name = b.naming("conv", unit=unit, branch="shortcut")
    if b.channels == channels:
        short = bottom
        if stride != 1:  # slim's subsample: a 1x1 max pool; FLOOR gives TF's SAME size
            b.net.add_layer("Pooling", name, bottom, pooling_param={
                "pool": "MAX", "kernel_size": 1, "stride": stride, "round_mode": "FLOOR"})
            short = name
    else:
        short = b.conv(preact, name, channels, 1, stride)
    x = b.conv_bn(preact, b.unit_names(unit, "conv1"), width, 1)
    # conv2d_same: TF pads a strided 3x3 by 1 on each side, as Caffe's pad does.
    x = b.conv_bn(x, b.unit_names(unit, "conv2"), width, 3, stride, dilation, dilation)
    x = b.conv(x, b.naming("conv", unit=unit, branch="conv3"), channels, 1)
    b.channels = channels
    top = b.naming("add", unit=unit)
    b.net.add_layer("Eltwise", top, [short, x])
    return top


# -- heads ----------------------------------------------------------------------------------------

@register(
    HEADS, "classifier", "pooling, fully connected layer, softmax",
    pool=choice("ave", "max", "none", default="ave"),
    pool_kernel=int_or("auto", "global", default="auto",
                       doc='"auto": the feature map size, written as kernel_size; "global": '
                           'global_pooling: true'),
    pool_stride=positive_int(1),
    num_classes=positive_int(1000),
    softmax=boolean(True),
    postnorm=boolean(False, "BatchNorm + Scale + ReLU first (pre-activation nets: ResNet v2)"),
    logits=choice("fc", "conv", default="fc",
                  doc='"fc": InnerProduct; "conv": a 1x1 convolution, for dense predictions '
                      'without pooling (Softmax over the channels at every position)'),
)
def classifier(b: Builder, bottom: str, last_stage: int, pool: str, pool_kernel, pool_stride: int,
               num_classes: int, softmax: bool, postnorm: bool, logits: str) -> str:
    x = bottom
    if postnorm:
        x = b.norm_relu(x, "postnorm", top="postnorm")
    if pool != "none":
        name = b.naming("head_pool", stage=last_stage)
        params: dict = {}
        if pool_kernel == "global":
            params["global_pooling"] = True
        else:
            if pool_kernel == "auto":
                h, w = blob_shape(b.net, x)[2:]
                params.update({"kernel_size": h} if h == w else {"kernel_h": h, "kernel_w": w})
            else:
                params["kernel_size"] = pool_kernel
            params["stride"] = pool_stride
        params["pool"] = pool.upper()
        b.net.add_layer("Pooling", name, x, pooling_param=params)
        x = name
    fc = b.naming("fc", num_classes=num_classes)
    if logits == "conv":
        b.conv(x, fc, num_classes, 1)
    else:
        b.net.add_layer("InnerProduct", fc, x, inner_product_param={"num_output": num_classes})
    x = fc
    if softmax:
        x = b.net.add_layer("Softmax", b.naming("prob"), x).name
    return x
