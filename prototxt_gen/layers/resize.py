"""Resizing forks: PSPNet's and DeepLab's Interp (interp_param: zoom_factor, shrink_factor,
height/width, pad_beg/pad_end cropping), Caffe's align-corners bilinear (caffe_cpu_interp2,
docs/caffe.md §11)."""
from __future__ import annotations

from ..graph.shapes import ShapeMismatch
from ..registry import draw, label, onnx_lowering, rule, torch_lowering
from .common import fork_value, lit, single

draw("resize", "Interp")


def _given(layer, field: str) -> bool:
    return bool(layer.extra_values("interp_param", field))


def interp_geometry(layer, bottom) -> tuple[int, int, int, int, int]:
    """(pad_beg, pad_end, input height and width after cropping, output height, width), as
    interp_layer.cpp's Reshape computes them."""
    if len(bottom) != 4:
        raise ShapeMismatch(f"Interp needs a 4-D input, not {len(bottom)}-D")

    def get(field, default):
        return fork_value(layer, "interp_param", field, default, int)
    pad_beg, pad_end = get("pad_beg", 0), get("pad_end", 0)
    if pad_beg > 0 or pad_end > 0:
        raise ShapeMismatch("interp_param: pad_beg and pad_end crop (they must be <= 0)")
    h, w = (d + pad_beg + pad_end for d in bottom[2:])
    if h <= 0 or w <= 0:
        raise ShapeMismatch(f"interp_param: the cropping leaves {h}×{w}")
    zoom, shrink = _given(layer, "zoom_factor"), _given(layer, "shrink_factor")
    if shrink:
        factor = get("shrink_factor", 1)
        if factor < 1:
            raise ShapeMismatch("interp_param.shrink_factor must be at least 1")
        out = [(h - 1) // factor + 1, (w - 1) // factor + 1]
    elif not zoom and _given(layer, "height") and _given(layer, "width"):
        out = [get("height", 0), get("width", 0)]
    elif not zoom:
        raise ShapeMismatch("interp_param needs zoom_factor, shrink_factor or height and width")
    else:
        out = [h, w]
    if zoom:
        factor = get("zoom_factor", 1)
        if factor < 1:
            raise ShapeMismatch("interp_param.zoom_factor must be at least 1")
        out = [d + (d - 1) * (factor - 1) for d in out]
    if min(out) <= 0:
        raise ShapeMismatch(f"interp_param gives an output of {out[0]}×{out[1]}")
    return pad_beg, pad_end, h, w, out[0], out[1]


@rule("Interp")
def _interp_shape(layer, bottoms):
    if len(bottoms) != 1:
        raise ShapeMismatch(f"Interp takes 1 bottom, got {len(bottoms)}")
    *_, ho, wo = interp_geometry(layer, bottoms[0])
    return [bottoms[0][:2] + (ho, wo)], []


@label("Interp")
def _interp_label(layer, s):
    *_, ho, wo = interp_geometry(layer, s.bottoms[0])
    return [f"bilinear to {ho}×{wo}"]


def _crop_torch(x: str, pad_beg: int, pad_end: int) -> str:
    """The rows and columns pad_beg/pad_end crop away (both <= 0)."""
    if not pad_beg and not pad_end:
        return x
    span = f"{-pad_beg}:{pad_end or ''}"
    return f"{x}[:, :, {span}, {span}]"


@torch_lowering("Interp")
def _interp_torch(b):
    single(b)
    pad_beg, pad_end, h, w, ho, wo = interp_geometry(b.layer, b.s.bottoms[0])
    x = _crop_torch("{0}", pad_beg, pad_end)
    if (h, w) == (ho, wo):  # caffe_cpu_interp2 copies
        return b.emit(x)
    b.emit(f"F.interpolate({x}, size={lit((ho, wo))}, mode='bilinear', align_corners=True)")


@onnx_lowering("Interp")
def _interp_onnx(b):
    single(b)
    pad_beg, pad_end, h, w, ho, wo = interp_geometry(b.layer, b.s.bottoms[0])
    x = b.x[0]
    if pad_beg or pad_end:
        x = b.op("Slice", [x, b.ints([-pad_beg] * 2, "crop_start"),
                           b.ints([b.s.bottoms[0][2] + pad_end, b.s.bottoms[0][3] + pad_end],
                                  "crop_end"), b.ints([2, 3], "crop_axes")])
    if (h, w) == (ho, wo):
        return b.out("Identity", [x])
    sizes = b.op("Concat", [b.op("Slice", [b.op("Shape", [x]), b.ints([0], "s0"),
                                           b.ints([2], "s2")]), b.ints([ho, wo], "size")],
                 axis=0)
    b.out("Resize", [x, "", "", sizes], mode="linear",
          coordinate_transformation_mode="align_corners")
