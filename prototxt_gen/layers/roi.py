"""Region-of-interest pooling (fork fields): Faster R-CNN's ROIPooling -- for each region
[image, x1, y1, x2, y2] (image coordinates), max pooling over a pooled_h×pooled_w grid of the
region scaled by spatial_scale, with Caffe's rounding and bins (roi_pooling_layer.cpp) -- and
R-FCN's position-sensitive PSROIPooling, the average of bin (i, j) taken from its own group of
channels (psroi_pooling_layer.cu). docs/caffe.md §12."""
from __future__ import annotations

import math

from ..graph.shapes import ShapeMismatch
from ..registry import draw, label, onnx_lowering, rule, torch_lowering
from .common import fork_given, fork_value

draw("pooling", "ROIPooling", "PSROIPooling")


def _regions(layer, bottoms) -> int:
    """The number of regions, checking the bottoms: a 4-D map and R×5 regions."""
    if len(bottoms) != 2 or len(bottoms[0]) != 4:
        raise ShapeMismatch(f"{layer.type} needs 2 bottoms, a 4-D feature map and the regions")
    rois = bottoms[1]
    if len(rois) < 2 or rois[1] != 5 or math.prod(rois[2:]) != 1:
        raise ShapeMismatch("the regions must be R×5 [image, x1, y1, x2, y2], not "
                            + "×".join(map(str, rois)))
    return rois[0]


# -- ROIPooling ----------------------------------------------------------------------------

def roi_params(layer) -> tuple[int, int, float]:
    """(pooled_h, pooled_w, spatial_scale)."""
    ph = fork_value(layer, "roi_pooling_param", "pooled_h", 0, int)
    pw = fork_value(layer, "roi_pooling_param", "pooled_w", 0, int)
    scale = fork_value(layer, "roi_pooling_param", "spatial_scale", 1.0, float)
    if ph <= 0 or pw <= 0:
        raise ShapeMismatch("roi_pooling_param: pooled_h and pooled_w must be positive")
    return ph, pw, scale


@rule("ROIPooling")
def _roi_pooling_shape(layer, bottoms):
    regions = _regions(layer, bottoms)
    ph, pw, _ = roi_params(layer)
    return [(regions, bottoms[0][1], ph, pw)], []


@label("ROIPooling")
def _roi_pooling_label(layer, s):
    ph, pw, scale = roi_params(layer)
    return [f"MAX {ph}×{pw}, scale {scale:g}"]


@torch_lowering("ROIPooling")
def _roi_pooling_torch(b):
    ph, pw, scale = roi_params(b.layer)
    b.emit("{m}({0}, {1})", b.ctor("ROIPool", (ph, pw, scale)))


@onnx_lowering("ROIPooling")
def _roi_pooling_onnx(b):
    ph, pw, scale = roi_params(b.layer)
    b.out("MaxRoiPool", [b.x[0], b.reshape(b.x[1], [-1, 5])], pooled_shape=[ph, pw],
          spatial_scale=scale)


# -- PSROIPooling --------------------------------------------------------------------------

def psroi_params(layer) -> tuple[float, int, int]:
    """(spatial_scale, output_dim, group_size), each required."""
    def get(field, kind):
        if not fork_given(layer, "psroi_pooling_param", field):
            raise ShapeMismatch(f"psroi_pooling_param.{field} is required")
        return fork_value(layer, "psroi_pooling_param", field, 0, kind)
    scale, dim, group = (get("spatial_scale", float), get("output_dim", int),
                         get("group_size", int))
    if dim <= 0 or group <= 0:
        raise ShapeMismatch("psroi_pooling_param: output_dim and group_size must be positive")
    return scale, dim, group


@rule("PSROIPooling")
def _psroi_pooling_shape(layer, bottoms):
    regions = _regions(layer, bottoms)
    _, dim, group = psroi_params(layer)
    if bottoms[0][1] != dim * group * group:
        raise ShapeMismatch(f"the map needs output_dim·group_size² = {dim * group * group} "
                            f"channels, not {bottoms[0][1]}")
    return [(regions, dim, group, group)], []


@label("PSROIPooling")
def _psroi_pooling_label(layer, s):
    scale, dim, group = psroi_params(layer)
    return [f"AVE {group}×{group}, {dim} outputs", f"scale {scale:g}"]


@torch_lowering("PSROIPooling")
def _psroi_pooling_torch(b):
    b.emit("{m}({0}, {1})", b.ctor("PSROIPool", psroi_params(b.layer)))


def _psroi_windows_onnx(b, rois: str, scale: float, group: int, height: int, width: int):
    """(hs, he, ws, we): every bin's window edges, R x 1 x G x 1 and R x 1 x 1 x G, with
    Caffe's float32 arithmetic and C's round (sign·floor(|v| + 0.5), in double)."""
    np = b.np

    def column(k):  # R x 1 x 1 x 1
        return b.reshape(b.op("Gather", [rois, b.ints([k], f"c{k}")], axis=1), [-1, 1, 1, 1])

    def rounded(v):
        d = b.op("Cast", [v], to=11)
        half = b.op("Cast", [b.scalar(0.5, "half")], to=11)
        r = b.op("Mul", [b.op("Sign", [d]), b.op("Floor", [b.op("Add", [b.op("Abs", [d]),
                                                                       half])])])
        return b.op("Cast", [r], to=b.FLOAT)

    s, one, tenth = b.scalar(scale, "scale"), b.scalar(1.0, "one"), b.scalar(0.1, "tenth")
    g = b.scalar(group, "g")
    edges = []
    for lo_col, hi_col, shape, limit, name in ((2, 4, (1, 1, group, 1), height, "h"),
                                               (1, 3, (1, 1, 1, group), width, "w")):
        start = b.op("Mul", [rounded(column(lo_col)), s])
        end = b.op("Mul", [b.op("Add", [rounded(column(hi_col)), one]), s])
        size = b.op("Div", [b.op("Max", [b.op("Sub", [end, start]), tenth]), g])
        k = np.arange(group, dtype=np.float32)
        lo = b.op("Floor", [b.op("Add", [b.op("Mul", [b.const(k.reshape(shape), f"{name}k"),
                                                      size]), start])])
        hi = b.op("Ceil", [b.op("Add", [b.op("Mul", [b.const((k + 1).reshape(shape),
                                                             f"{name}k1"), size]), start])])
        clip = [b.scalar(0.0, "zero"), b.scalar(float(limit), f"{name}_limit")]
        edges += [b.op("Cast", [b.op("Clip", [lo, *clip])], to=7),
                  b.op("Cast", [b.op("Clip", [hi, *clip])], to=7)]
    return edges


@onnx_lowering("PSROIPooling")
def _psroi_pooling_onnx(b):
    """Every bin at once: its window from the regions, its sum from a float64 summed-area
    table of the map (CumSum twice, a zero row and column first) by four Gathers, divided by
    its area; an empty bin 0."""
    np = b.np
    scale, dim, group = psroi_params(b.layer)
    _, channels, height, width = b.s.bottoms[0]
    rois = b.reshape(b.x[1], [-1, 5])
    hs, he, ws, we = _psroi_windows_onnx(b, rois, scale, group, height, width)
    table = b.op("Pad", [b.op("Cast", [b.x[0]], to=11),
                         b.ints([0, 0, 1, 1, 0, 0, 0, 0], "pads")])
    flat = b.reshape(b.op("CumSum", [b.op("CumSum", [table, b.ints([2], "ax2")]),
                                     b.ints([3], "ax3")]), [-1])
    image = b.op("Cast", [b.reshape(b.op("Gather", [rois, b.ints([0], "c0")], axis=1),
                                    [-1, 1, 1, 1])], to=7)
    c = ((np.arange(dim)[:, None, None] * group + np.arange(group)[:, None]) * group
         + np.arange(group))[None].astype(np.int64)                 # 1 x D x G x G
    base = b.op("Add", [b.op("Mul", [image, b.ints([channels], "channels")]),
                        b.const(c, "group_channel", np.int64)])
    rows = b.op("Mul", [base, b.ints([height + 1], "rows")])

    def at(h, w):
        i = b.op("Add", [b.op("Mul", [b.op("Add", [rows, h]), b.ints([width + 1], "cols")]), w])
        return b.op("Gather", [flat, i], axis=0)
    total = b.op("Add", [b.op("Sub", [b.op("Sub", [at(he, we), at(hs, we)]), at(he, ws)]),
                         at(hs, ws)])
    area = b.op("Mul", [b.op("Sub", [he, hs]), b.op("Sub", [we, ws])])
    empty = b.op("LessOrEqual", [area, b.ints([0], "none")])
    mean = b.op("Div", [total, b.op("Cast", [b.op("Max", [area, b.ints([1], "least")])],
                                    to=11)])
    b.out("Where", [empty, b.scalar(0.0, "zero_out"), b.op("Cast", [mean], to=b.FLOAT)])
