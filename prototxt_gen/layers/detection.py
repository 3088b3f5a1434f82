"""SSD's detection layers (fork types, `prior_box_param` and `detection_output_param` read from
the layer's fork fields): PriorBox, whose boxes depend on the feature map's and the image's
sizes only -- computed here once, as SSD's prior_box_layer.cpp does (docs/caffe.md §9), and
handed to both back ends as a constant -- and DetectionOutput's shapes."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import Unsupported
from ..graph.shapes import ShapeMismatch
from ..limits import check_memory
from ..registry import draw, label, onnx_lowering, rule, torch_lowering
from .common import FLT_MAX, fork_given, fork_value

draw("detection", "PriorBox", "DetectionOutput")


# -- parameters -------------------------------------------------------------------------

@dataclass(frozen=True)
class PriorBoxParams:
    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]
    aspect_ratios: tuple[float, ...]  # 1 first, then each given one (and its inverse: flip)
    clip: bool
    variances: tuple[float, ...]      # one for every coordinate, or four
    img_h: int                        # 0: the second bottom's height
    img_w: int
    step_h: float                     # 0: the image's size over the feature map's
    step_w: float
    offset: float

    @property
    def num_priors(self) -> int:
        return len(self.aspect_ratios) * len(self.min_sizes) + len(self.max_sizes)


def _numbers(layer, field: str) -> list[float]:
    values = layer.extra_values("prior_box_param", field)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ShapeMismatch(f"prior_box_param.{field} must be finite numbers, not {v!r}")
    return [float(v) for v in values]


def _size_pair(layer, one: str, h: str, w: str, kind: type) -> tuple:
    """A size given once (`one`) or as height and width, positive either way (LayerSetUp's
    checks); (0, 0) when absent: derived from the bottoms then."""
    given = [f for f in (one, h, w) if fork_given(layer, "prior_box_param", f)]
    if not given:
        return 0, 0
    if one in given and len(given) > 1:
        raise ShapeMismatch(f"prior_box_param: give {one} or {h}/{w}, not both")
    if one in given:
        hv = wv = fork_value(layer, "prior_box_param", one, 0, kind)
    else:
        hv = fork_value(layer, "prior_box_param", h, 0, kind)
        wv = fork_value(layer, "prior_box_param", w, 0, kind)
    if not (hv > 0 and wv > 0):
        raise ShapeMismatch(f"prior_box_param: {'/'.join(given)} must be positive (both "
                            "height and width)")
    return hv, wv


def prior_box_params(layer) -> PriorBoxParams:
    """PriorBox's parameters, checked as its LayerSetUp checks them."""
    min_sizes = _numbers(layer, "min_size")
    max_sizes = _numbers(layer, "max_size")
    if not min_sizes or any(m <= 0 for m in min_sizes):
        raise ShapeMismatch("prior_box_param.min_size must be given, and positive")
    if max_sizes and (len(max_sizes) != len(min_sizes)
                      or any(mx <= mn for mn, mx in zip(min_sizes, max_sizes))):
        raise ShapeMismatch("prior_box_param.max_size needs one value above each min_size")
    flip = fork_value(layer, "prior_box_param", "flip", True, bool)
    ratios = [1.0]
    for ar in _numbers(layer, "aspect_ratio"):
        if ar <= 0:
            raise ShapeMismatch(f"prior_box_param.aspect_ratio must be positive, not {ar:g}")
        if any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(ar)
        if flip:
            ratios.append(1.0 / ar)
    variances = _numbers(layer, "variance") or [0.1]
    if len(variances) not in (1, 4) or any(v <= 0 for v in variances):
        raise ShapeMismatch("prior_box_param.variance takes 1 or 4 positive values")
    img_h, img_w = _size_pair(layer, "img_size", "img_h", "img_w", int)
    step_h, step_w = _size_pair(layer, "step", "step_h", "step_w", float)
    return PriorBoxParams(tuple(min_sizes), tuple(max_sizes), tuple(ratios),
                          fork_value(layer, "prior_box_param", "clip", False, bool),
                          tuple(variances), img_h, img_w, step_h, step_w,
                          fork_value(layer, "prior_box_param", "offset", 0.5, float))


def prior_boxes(np, p: PriorBoxParams, layer_h: int, layer_w: int, image_h: int, image_w: int):
    """PriorBox's top, 1×2×(H·W·priors·4): each prior's (xmin, ymin, xmax, ymax) relative to
    the image, then the variances, in Caffe's order (cell by cell; per min_size the square box,
    the sqrt(min·max) one, then one per aspect ratio). `np` is numpy."""
    img_h, img_w = p.img_h or image_h, p.img_w or image_w
    step_h, step_w = p.step_h or img_h / layer_h, p.step_w or img_w / layer_w
    sizes = []  # (width, height) of each prior in a cell, in order
    for k, mn in enumerate(p.min_sizes):
        sizes.append((mn, mn))
        if p.max_sizes:
            side = math.sqrt(mn * p.max_sizes[k])
            sizes.append((side, side))
        for ar in p.aspect_ratios:
            if abs(ar - 1.0) < 1e-6:
                continue
            sizes.append((mn * math.sqrt(ar), mn / math.sqrt(ar)))
    wh = np.asarray(sizes, np.float64) / 2                                # (priors, 2)
    cy, cx = np.meshgrid((np.arange(layer_h) + p.offset) * step_h,
                         (np.arange(layer_w) + p.offset) * step_w, indexing="ij")
    centers = np.stack([cx.ravel(), cy.ravel()], 1)[:, None, :]          # (cells, 1, 2)
    scale = np.asarray([img_w, img_h], np.float64)
    boxes = np.concatenate([(centers - wh) / scale, (centers + wh) / scale], 2)
    if p.clip:
        boxes = np.clip(boxes, 0.0, 1.0)
    boxes = boxes.astype(np.float32).reshape(-1)
    variances = np.resize(np.asarray(p.variances, np.float32), boxes.shape)
    return np.stack([boxes, variances])[None]


# -- shapes -----------------------------------------------------------------------------

@rule("PriorBox")
def _prior_box_shape(layer, bottoms):
    if len(bottoms) != 2 or len(bottoms[0]) != 4 or len(bottoms[1]) != 4:
        raise ShapeMismatch("PriorBox needs 2 bottoms, a 4-D feature map and the 4-D image")
    p = prior_box_params(layer)
    h, w = bottoms[0][2:]
    return [(1, 2, h * w * p.num_priors * 4)], []


CODE_TYPES = {"CORNER": 1, "CENTER_SIZE": 2, "CORNER_SIZE": 3}
NMS = "detection_output_param.nms_param"


@dataclass(frozen=True)
class DetectionParams:
    num_classes: int
    share_location: bool
    background: int
    nms_threshold: float
    top_k: int                    # candidates per class before NMS; -1: all
    eta: float
    keep_top_k: int               # detections per image; -1: all
    confidence_threshold: float   # -FLT_MAX when not given: every score counts
    code_type: str
    variance_encoded_in_target: bool
    clip: bool                    # OpenCV's fork field: clip decoded boxes to [0, 1]


def detection_params(layer) -> DetectionParams:
    """DetectionOutput's parameters with SSD's defaults, checked as its LayerSetUp does."""
    def get(field, default, kind, message="detection_output_param"):
        return fork_value(layer, message, field, default, kind)
    classes = get("num_classes", 0, int)
    if classes < 1:
        raise ShapeMismatch("detection_output_param.num_classes must be given, and positive")
    code = layer.extra_value("detection_output_param", "code_type", "CORNER")
    code = {v: k for k, v in CODE_TYPES.items()}.get(code, code)
    if code not in CODE_TYPES:
        raise ShapeMismatch(f"detection_output_param.code_type {code!r} is not one of "
                            f"{', '.join(CODE_TYPES)}")
    nms_threshold = get("nms_threshold", 0.3, float, NMS)
    eta = get("eta", 1.0, float, NMS)
    if nms_threshold < 0 or not 0 < eta <= 1:
        raise ShapeMismatch("nms_param: nms_threshold must be >= 0 and eta in (0, 1]")
    return DetectionParams(
        classes, get("share_location", True, bool), get("background_label_id", 0, int),
        nms_threshold, get("top_k", -1, int, NMS), eta, get("keep_top_k", -1, int),
        get("confidence_threshold", -FLT_MAX, float), code,
        get("variance_encoded_in_target", False, bool), get("clip", False, bool))


@rule("DetectionOutput")
def _detection_output_shape(layer, bottoms):
    """1×1×N×7, [image, label, score, xmin, ymin, xmax, ymax] per detection. N depends on the
    data; the shape given is its bound: keep_top_k per image (else every prior of every class
    but the background)."""
    if len(bottoms) not in (3, 4):
        raise ShapeMismatch("DetectionOutput needs 3 bottoms (locations, confidences, priors)")
    loc, conf, prior = bottoms[:3]
    d = detection_params(layer)
    classes, share, keep = d.num_classes, d.share_location, d.keep_top_k
    if len(prior) != 3 or prior[:2] != (1, 2) or prior[2] % 4:
        raise ShapeMismatch("the priors must be 1×2×(4·boxes), not "
                            + "×".join(map(str, prior)))
    priors = prior[2] // 4
    loc_classes = 1 if share else classes
    if math.prod(loc[1:]) != priors * loc_classes * 4 or math.prod(conf[1:]) != priors * classes:
        raise ShapeMismatch(f"{priors} priors need {priors * loc_classes * 4} locations and "
                            f"{priors * classes} confidences per image")
    if loc[0] != conf[0]:
        raise ShapeMismatch("locations and confidences have different batch sizes")
    per_image = keep if keep > 0 else priors * max(classes - 1, 1)
    return [(1, 1, loc[0] * per_image, 7)], []


# -- the picture's label -------------------------------------------------------------------

@label("PriorBox")
def _prior_box_label(layer, s):
    p = prior_box_params(layer)
    return [f"{p.num_priors} priors per cell", f"min {', '.join(f'{m:g}' for m in p.min_sizes)}"]


@label("DetectionOutput")
def _detection_output_label(layer, s):
    d = detection_params(layer)
    return [f"{d.num_classes} classes", f"keep {d.keep_top_k}" if d.keep_top_k > 0
            else "keep all"]


# -- lowerings: the priors are a constant of the file's shapes ----------------------------

def _priors(b):
    p = prior_box_params(b.layer)
    feature, image = b.s.bottoms
    check_memory(3 * 4 * math.prod(b.s.tops[0]),  # float64 boxes, then the float32 top
                 f"layer '{b.name}' (PriorBox): its boxes")
    return prior_boxes(b.np, p, feature[2], feature[3], image[2], image[3])


@torch_lowering("PriorBox")
def _prior_box_torch(b):
    priors = _priors(b)
    b.emit("{m}.value", b.ctor("Constant", (priors.shape,), tensors={"value": priors}))


@onnx_lowering("PriorBox")
def _prior_box_onnx(b):
    b.out("Identity", [b.const(_priors(b), "priors")])


@torch_lowering("DetectionOutput")
def _detection_output_torch(b):
    if len(b.layer.bottom) != 3:
        raise Unsupported("a fourth bottom (RefineDet's ARM confidences)")
    d = detection_params(b.layer)
    b.emit("{m}({0}, {1}, {2})", b.ctor("DetectionOutput", (), {
        "num_classes": d.num_classes, "share_location": d.share_location,
        "background": d.background, "nms_threshold": d.nms_threshold, "top_k": d.top_k,
        "eta": d.eta, "keep_top_k": d.keep_top_k,
        "confidence_threshold": d.confidence_threshold, "code_type": d.code_type,
        "variance_encoded_in_target": d.variance_encoded_in_target, "clip": d.clip}))


def _decode_onnx(b, d: DetectionParams, loc: str, prior: str, priors: int) -> str:
    """N x P x L x 4 decoded boxes from the locations and the priors (bbox_util's
    DecodeBBox, in its order of operations)."""
    def part(t, k):  # coordinate k of the last axis, kept as an axis of 1
        return b.op("Slice", [t, b.ints([k], "start"), b.ints([k + 1], "end"),
                              b.ints([3], "axis")])

    box = b.reshape(b.op("Gather", [prior, b.ints([0], "box_channel")], axis=1),
                    [1, priors, 1, 4])
    var = b.reshape(b.op("Gather", [prior, b.ints([1], "variance_channel")], axis=1),
                    [1, priors, 1, 4])
    if d.variance_encoded_in_target:
        var = b.const(b.np.ones((1, 1, 1, 4)), "unit_variance")
    if d.code_type == "CORNER":
        out = b.op("Add", [box, b.op("Mul", [var, loc])])
    else:
        p = [part(box, k) for k in range(4)]
        size = [b.op("Sub", [p[2], p[0]]), b.op("Sub", [p[3], p[1]])]
        if d.code_type == "CORNER_SIZE":
            sizes = b.op("Concat", [size[0], size[1], size[0], size[1]], axis=3)
            out = b.op("Add", [box, b.op("Mul", [b.op("Mul", [var, loc]), sizes])])
        else:  # CENTER_SIZE
            v, lo = [part(var, k) for k in range(4)], [part(loc, k) for k in range(4)]
            two = b.scalar(2.0, "two")
            center = [b.op("Add", [b.op("Mul", [b.op("Mul", [v[k], lo[k]]), size[k]]),
                                   b.op("Div", [b.op("Add", [p[k], p[k + 2]]), two])])
                      for k in (0, 1)]
            half = [b.op("Div", [b.op("Mul", [b.op("Exp", [b.op("Mul", [v[k + 2], lo[k + 2]])]),
                                              size[k]]), two]) for k in (0, 1)]
            out = b.op("Concat", [b.op("Sub", [center[0], half[0]]),
                                  b.op("Sub", [center[1], half[1]]),
                                  b.op("Add", [center[0], half[0]]),
                                  b.op("Add", [center[1], half[1]])], axis=3)
    if d.clip:
        out = b.op("Clip", [out, b.scalar(0.0, "zero"), b.scalar(1.0, "one")])
    return out


def _candidates_onnx(b, d: DetectionParams, priors: int, k: int):
    """(N x C·K x 4 candidate boxes, N x C x C·K scores): each class's top_k candidates in a
    block of its own, the other classes' blocks below any threshold, so that
    NonMaxSuppression sees each class's own candidates only."""
    np, classes = b.np, d.num_classes
    loc_in, conf_in, prior = b.x
    locs = 1 if d.share_location else classes
    slots = classes * k
    low = b.scalar(-FLT_MAX, "none")
    boxes = _decode_onnx(b, d, b.reshape(loc_in, [0, priors, locs, 4]), prior, priors)
    scores = b.op("Transpose", [b.reshape(conf_in, [0, priors, classes])], perm=[0, 2, 1])
    background = np.zeros((1, classes, 1), bool)
    if 0 <= d.background < classes:
        background[0, d.background] = True
    scores = b.op("Where", [b.const(background, "background", bool), low, scores])
    best, index = b.op("TopK", [scores, b.ints([k], "top_k")], 2, axis=2)  # N x C x K
    if d.share_location:
        cand = b.op("GatherND", [b.reshape(boxes, [0, priors, 4]),
                                 b.reshape(index, [0, slots, 1])], batch_dims=1)
    else:
        cand = b.reshape(b.op("GatherND", [
            b.op("Transpose", [boxes], perm=[0, 2, 1, 3]),
            b.unsqueeze(index, [3])], batch_dims=2), [0, slots, 4])
    own = np.eye(classes, dtype=bool)[None, :, :, None]
    block = b.reshape(b.op("Where", [b.const(own, "own_block", bool),
                                     b.unsqueeze(best, [2]), low]), [0, classes, slots])
    return cand, block


def _kept_onnx(b, d: DetectionParams, cand: str, block: str, k: int):
    """(N x C·M table of the kept scores, -FLT_MAX elsewhere; N x keep positions in the table,
    ascending -- by label, then the class's score order -- the unused ones past the end)."""
    classes, slots = d.num_classes, d.num_classes * k
    low = b.scalar(-FLT_MAX, "none")
    selected = b.op("NonMaxSuppression", [
        cand, block, b.ints([k], "max_per_class"), b.const([d.nms_threshold], "iou"),
        b.const([d.confidence_threshold], "threshold")])           # S x [image, class, slot]

    def column(j):
        return b.op("Gather", [selected, b.ints([j], f"column{j}")], axis=1)
    flat = b.op("Add", [b.op("Mul", [column(1), b.ints([slots], "slots")]), column(2)])
    batch = b.op("Gather", [b.op("Shape", [b.x[0]]), b.ints([0], "batch")], axis=0)
    empty = b.op("Expand", [low, b.op("Concat", [batch, b.ints([classes * slots], "table")],
                                      axis=0)])
    table = b.op("ScatterND", [empty, b.op("Concat", [column(0), flat], axis=1),
                               b.op("GatherND", [block, selected])])
    keep = min(d.keep_top_k, classes * slots) if d.keep_top_k > -1 else classes * slots
    top, pos = b.op("TopK", [table, b.ints([keep], "keep_top_k")], 2, axis=1)
    past = b.scalar(float(classes * slots), "past")
    key = b.op("Where", [b.op("Greater", [top, low]), b.op("Cast", [pos], to=b.FLOAT), past])
    ascending = b.op("TopK", [b.op("Neg", [key]), b.ints([keep], "all")], 2, axis=1)[0]
    return table, b.op("Neg", [ascending]), past


@onnx_lowering("DetectionOutput")
def _detection_output_onnx(b):
    """Standard ops only: the decoded boxes; per class its top_k candidates (TopK, a block per
    class); NonMaxSuppression; the keep_top_k best of each image (ScatterND into a per-image
    table, TopK); the rows in Caffe's order (image, label, score) from the kept positions
    sorted; with no detection in the batch, one row [image, -1, ..., -1] per image."""
    if len(b.layer.bottom) != 3:
        raise Unsupported("a fourth bottom (RefineDet's ARM confidences)")
    d = detection_params(b.layer)
    if d.eta != 1:
        raise Unsupported(f"nms_param.eta {d.eta:g} (ONNX's NonMaxSuppression has no "
                          "adaptive threshold)")
    np, priors = b.np, b.s.bottoms[2][2] // 4
    k = min(d.top_k, priors) if d.top_k > -1 else priors
    slots = d.num_classes * k
    # the class blocks and the kept-score table hold C·C·K values per image
    check_memory(8 * d.num_classes * slots + d.num_classes ** 2,
                 f"layer '{b.name}' (DetectionOutput): ONNX's per-class candidate tables")
    cand, block = _candidates_onnx(b, d, priors, k)
    table, order, past = _kept_onnx(b, d, cand, block, k)
    at = b.op("Transpose", [b.op("NonZero", [b.op("Less", [order, past])])],
              perm=[1, 0])                                          # R x [image, j]
    image = b.op("Gather", [at, b.ints([0], "image_column")], axis=1)
    flat = b.unsqueeze(b.op("Cast", [b.op("GatherND", [order, at])], to=7), [1])  # int64
    label = b.op("Div", [flat, b.ints([slots], "per_label")])
    slot = b.op("Mod", [flat, b.ints([slots], "per_label")])
    score = b.op("GatherND", [table, b.op("Concat", [image, flat], axis=1)])
    box = b.op("GatherND", [cand, b.op("Concat", [image, slot], axis=1)])
    rows = b.op("Concat", [b.op("Cast", [image], to=b.FLOAT),
                           b.op("Cast", [label], to=b.FLOAT), b.unsqueeze(score, [1]), box],
                axis=1)
    n = b.op("Gather", [b.op("Shape", [b.x[0]]), b.ints([0], "n")], axis=0)
    images = b.op("Cast", [b.op("Range", [b.const(np.int64(0), "start", np.int64),
                                          b.op("Squeeze", [n]),
                                          b.const(np.int64(1), "step", np.int64)])],
                  to=b.FLOAT)
    fake = b.op("Concat", [b.unsqueeze(images, [1]), b.op("Expand", [
        b.const(-np.ones((1, 6)), "minus_one"), b.op("Concat", [n, b.ints([6], "six")],
                                                     axis=0)])], axis=1)
    count = b.op("Gather", [b.op("Shape", [rows]), b.ints([0], "rows")], axis=0)
    none = b.op("Cast", [b.op("Equal", [count, b.ints([0], "zero")])], to=7)
    end = b.op("Add", [count, b.op("Mul", [n, none])])  # the fake rows only when none found
    out = b.op("Slice", [b.op("Concat", [rows, fake], axis=0), b.ints([0], "from"), end,
                         b.ints([0], "row_axis")])
    b.out("Reshape", [out, b.ints([1, 1, -1, 7], "shape")])
    b.data_dependent(0, 2, "detections")
