"""Faster R-CNN's ROIPooling (roi_pooling_param, a fork field): for each region of interest
[image, x1, y1, x2, y2] (image coordinates), max pooling over a pooled_h×pooled_w grid of the
region scaled by spatial_scale, with Caffe's rounding and bins (roi_pooling_layer.cpp,
docs/caffe.md §12)."""
from __future__ import annotations

import math

from ..graph.shapes import ShapeMismatch
from ..registry import draw, label, onnx_lowering, rule, torch_lowering
from .common import fork_value

draw("pooling", "ROIPooling")


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
    if len(bottoms) != 2 or len(bottoms[0]) != 4:
        raise ShapeMismatch("ROIPooling needs 2 bottoms, a 4-D feature map and the regions")
    rois = bottoms[1]
    if len(rois) < 2 or rois[1] != 5 or math.prod(rois[2:]) != 1:
        raise ShapeMismatch("the regions must be R×5 [image, x1, y1, x2, y2], not "
                            + "×".join(map(str, rois)))
    ph, pw, _ = roi_params(layer)
    return [(rois[0], bottoms[0][1], ph, pw)], []


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
