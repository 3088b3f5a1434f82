"""Layers whose output depends on the values of the data, made traceable for torch.export.

torch.export traces shapes, so it cannot follow DetectionOutput's NMS loop (its number of rows
is data-dependent) or ROIPooling's windows (read from the regions' values). As torchvision does
for its `nms`, each is registered here as an operator, `torch.ops.prototxt_gen.*`, that runs
the plain-torch module and tells the tracer only the output's shape (a free size for the
detections). A `.pt2` program holding one needs these operators registered when it is loaded:
`import prototxt_gen.backends.pytorch` first (save_exported says so in a warning).
"""
from __future__ import annotations

import torch
from torch import nn

from .ops import DetectionOutput, ROIPool

NAMESPACE = "prototxt_gen"


@torch.library.custom_op(f"{NAMESPACE}::detection_output", mutates_args=())
def detection_output(loc: torch.Tensor, conf: torch.Tensor, prior: torch.Tensor,
                     ints: list[int], floats: list[float], code_type: str) -> torch.Tensor:
    num_classes, share_location, background, top_k, keep_top_k, encoded, clip = ints
    nms_threshold, eta, confidence_threshold = floats
    return DetectionOutput(num_classes, bool(share_location), background, nms_threshold, top_k,
                           eta, keep_top_k, confidence_threshold, code_type, bool(encoded),
                           bool(clip))(loc, conf, prior)


@detection_output.register_fake
def _(loc, conf, prior, ints, floats, code_type):
    rows = torch.library.get_ctx().new_dynamic_size()
    return loc.new_empty((1, 1, rows, 7))


@torch.library.custom_op(f"{NAMESPACE}::roi_pooling", mutates_args=())
def roi_pooling(x: torch.Tensor, rois: torch.Tensor, pooled_h: int, pooled_w: int,
                spatial_scale: float) -> torch.Tensor:
    return ROIPool(pooled_h, pooled_w, spatial_scale)(x, rois)


@roi_pooling.register_fake
def _(x, rois, pooled_h, pooled_w, spatial_scale):
    return x.new_empty((rois.numel() // 5, x.shape[1], pooled_h, pooled_w))


class TracedDetectionOutput(nn.Module):
    op = "detection_output"

    def __init__(self, m: DetectionOutput):
        super().__init__()
        self.ints = [m.num_classes, int(m.share_location), m.background, m.top_k, m.keep_top_k,
                     int(m.variance_encoded_in_target), int(m.clip)]
        self.floats = [float(m.nms_threshold), float(m.eta), float(m.confidence_threshold)]
        self.code_type = m.code_type

    def forward(self, loc, conf, prior):
        return detection_output(loc, conf, prior, self.ints, self.floats, self.code_type)


class TracedROIPool(nn.Module):
    op = "roi_pooling"

    def __init__(self, m: ROIPool):
        super().__init__()
        self.args = (m.pooled_h, m.pooled_w, float(m.spatial_scale))

    def forward(self, x, rois):
        return roi_pooling(x, rois, *self.args)


TRACEABLE = {DetectionOutput: TracedDetectionOutput, ROIPool: TracedROIPool}


def make_traceable(model: nn.Module) -> list[str]:
    """Swap, in place, each data-dependent submodule for its operator form; returns the
    operators now in the model."""
    used = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            traced = TRACEABLE.get(type(child))
            if traced is not None:
                setattr(parent, name, traced(child))
                used.append(f"torch.ops.{NAMESPACE}.{traced.op}")
    return sorted(set(used))
