"""Resizing forks: SegNet's Upsample (values written where their pooling mask says, or
nearest with one bottom) and PSPNet's and DeepLab's Interp (interp_param: zoom_factor,
shrink_factor, height/width, pad_beg/pad_end cropping; Caffe's align-corners bilinear,
caffe_cpu_interp2). docs/caffe.md §11."""
from __future__ import annotations

from ..graph.shapes import ShapeMismatch
from ..registry import draw, label, onnx_lowering, rule, torch_lowering
from .common import fork_given, fork_value, lit, single

draw("resize", "Interp", "Upsample")


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
    zoom, shrink = fork_given(layer, "interp_param", "zoom_factor"), \
        fork_given(layer, "interp_param", "shrink_factor")
    if shrink:
        factor = get("shrink_factor", 1)
        if factor < 1:
            raise ShapeMismatch("interp_param.shrink_factor must be at least 1")
        out = [(h - 1) // factor + 1, (w - 1) // factor + 1]
    elif not zoom and fork_given(layer, "interp_param", "height") and \
            fork_given(layer, "interp_param", "width"):
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
    if not s.bottoms or s.bottoms[0] is None:  # a shape the file does not give
        return ["bilinear"]
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


# -- Upsample: SegNet's unpooling (a second bottom: the pooling mask), or nearest -----------

def upsample_size(layer, bottom) -> tuple[int, int, int, int]:
    """(scale_h, scale_w, out_h, out_w) as SegNet's upsample_layer.cpp computes them:
    upsample_h/upsample_w when both are given, else the input times scale (default 2) or
    scale_h/scale_w, less 1 where pad_out_h/pad_out_w (which need a scale of 2)."""
    if len(bottom) != 4:
        raise ShapeMismatch(f"Upsample needs a 4-D input, not {len(bottom)}-D")

    def get(field, default, kind=int):
        return fork_value(layer, "upsample_param", field, default, kind)
    given = [f for f in ("upsample_h", "upsample_w", "scale", "scale_h", "scale_w")
             if fork_given(layer, "upsample_param", f)]
    if "upsample_h" in given and "upsample_w" in given:
        out = get("upsample_h", 0), get("upsample_w", 0)
        if min(out) <= 1:
            raise ShapeMismatch("upsample_param: upsample_h and upsample_w must be above 1")
        return 0, 0, out[0], out[1]
    if "scale_h" in given or "scale_w" in given:
        if "scale" in given or not ("scale_h" in given and "scale_w" in given):
            raise ShapeMismatch("upsample_param: give scale, or scale_h and scale_w")
        sh, sw = get("scale_h", 2), get("scale_w", 2)
    else:
        sh = sw = get("scale", 2)
    if sh <= 1 or sw <= 1:
        raise ShapeMismatch("upsample_param: the scale must be above 1")
    pad_h, pad_w = get("pad_out_h", False, bool), get("pad_out_w", False, bool)
    if (pad_h and sh != 2) or (pad_w and sw != 2):
        raise ShapeMismatch("upsample_param: pad_out_h/pad_out_w need a scale of 2")
    return sh, sw, bottom[2] * sh - int(pad_h), bottom[3] * sw - int(pad_w)


@rule("Upsample")
def _upsample_shape(layer, bottoms):
    if len(bottoms) not in (1, 2):
        raise ShapeMismatch(f"Upsample takes the values and optionally their pooling mask, "
                            f"not {len(bottoms)} bottoms")
    if len(bottoms) == 2 and bottoms[0] != bottoms[1]:
        raise ShapeMismatch("the pooling mask must have the values' shape")
    sh, sw, oh, ow = upsample_size(layer, bottoms[0])
    if len(bottoms) == 1 and not sh:
        raise ShapeMismatch("Upsample without a mask (nearest) needs scale, not upsample_h/w")
    return [bottoms[0][:2] + (oh, ow)], []


@label("Upsample")
def _upsample_label(layer, s):
    if not s.bottoms or s.bottoms[0] is None:
        return ["unpool" if len(layer.bottom) == 2 else "nearest"]
    *_, oh, ow = upsample_size(layer, s.bottoms[0])
    return [("unpool" if len(s.bottoms) == 2 else "nearest") + f" to {oh}×{ow}"]


@torch_lowering("Upsample")
def _upsample_torch(b):
    sh, sw, oh, ow = upsample_size(b.layer, b.s.bottoms[0])
    if len(b.layer.bottom) == 2:
        return b.emit("{m}({0}, {1})", b.ctor("Unpool", (oh, ow)))
    b.emit(f"{{0}}.repeat_interleave({sh}, 2).repeat_interleave({sw}, 3)"
           f"[:, :, :{oh}, :{ow}]")


@onnx_lowering("Upsample")
def _upsample_onnx(b):
    sh, sw, oh, ow = upsample_size(b.layer, b.s.bottoms[0])
    x = b.x[0]
    shape = b.op("Shape", [x])
    if len(b.layer.bottom) == 1:  # nearest: each value repeated scale times, then cut
        up = b.op("Resize", [x, "", b.const([1, 1, sh, sw], "scales")], mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        return b.out("Slice", [up, b.ints([0, 0], "start"), b.ints([oh, ow], "end"),
                               b.ints([2, 3], "axes")])
    n_c = b.op("Slice", [shape, b.ints([0], "s0"), b.ints([2], "s2")])
    flat = b.op("Concat", [n_c, b.ints([-1], "rest")], axis=0)
    zeros = b.op("Expand", [b.scalar(0.0, "zero"), b.op("Concat", [
        n_c, b.ints([oh * ow], "plane")], axis=0)])
    index = b.op("Cast", [b.op("Reshape", [b.x[1], flat])], to=7)
    out = b.op("ScatterElements", [zeros, index, b.op("Reshape", [x, flat])], axis=2)
    b.out("Reshape", [out, b.op("Concat", [n_c, b.ints([oh, ow], "size")], axis=0)])
