"""Layers that move values without computing: Flatten, Reshape, Crop, SSD's Permute, Tile and
ShuffleChannel."""
from __future__ import annotations

import math

from ..errors import shown
from ..graph.net import Layer
from ..graph.shapes import ShapeMismatch, format_shape
from ..registry import draw, onnx_lowering, rule, torch_lowering
from .common import axis_index, fork_value, one_bottom, single

draw("elementwise / concat", "Flatten", "Reshape", "Crop", "Permute", "Tile",
     "ShuffleChannel")


# -- shapes -----------------------------------------------------------------------------

@rule("Flatten")
def _flatten_shape(layer, bottoms):
    p = layer.param
    bottom = one_bottom(bottoms)
    fp = p.flatten_param
    start, end = flatten_axes(fp, len(bottom))
    if end < start:
        raise ShapeMismatch(f"end_axis {fp.end_axis} comes before axis {fp.axis}")
    return [bottom[:start] + (math.prod(bottom[start:end + 1]),) + bottom[end + 1:]], []


def flatten_axes(fp, ndim: int) -> tuple[int, int]:
    """Flatten's first and last merged axes, made non-negative."""
    return axis_index(fp.axis, ndim), axis_index(fp.end_axis, ndim)


@rule("Reshape")
def _reshape_shape(layer, bottoms):
    rp = layer.param.reshape_param
    bottom = one_bottom(bottoms)
    ndim = len(bottom)
    start, end = reshape_span(rp, ndim)
    if not 0 <= start <= ndim:
        raise ShapeMismatch(f"reshape_param.axis {rp.axis} is out of range")
    if rp.num_axes < -1 or end > ndim:
        raise ShapeMismatch(f"reshape_param.num_axes {rp.num_axes} is out of range")
    dims = list(rp.shape.dim)
    if sum(d == -1 for d in dims) > 1:
        raise ShapeMismatch("at most one dimension may be -1")
    new = []
    for k, d in enumerate(dims):
        if d == 0:
            if start + k >= ndim:
                raise ShapeMismatch(f"dim {k} is 0 (copy) but the input has no axis {start + k}")
            new.append(bottom[start + k])
        elif d < -1:
            raise ShapeMismatch(f"dim {d} is invalid (use a size, 0 to copy or -1 to infer)")
        else:
            new.append(d)
    replaced = math.prod(bottom[start:end])
    if -1 in new:
        known = math.prod(d for d in new if d != -1)
        if known == 0 or replaced % known:
            raise ShapeMismatch(f"cannot infer the -1 dimension: {replaced} elements do not "
                                f"divide by {known}")
        new[new.index(-1)] = replaced // known
    elif math.prod(new) != replaced:
        raise ShapeMismatch(f"shape {format_shape(new)} has {math.prod(new)} elements, the input "
                            f"axes being replaced have {replaced}")
    return [bottom[:start] + tuple(new) + bottom[end:]], []


def reshape_span(rp, ndim: int) -> tuple[int, int]:
    """The axes [start, end) that Reshape's `shape` replaces (axis may count from the end,
    where -1 means after the last axis; num_axes -1 means to the end)."""
    start = rp.axis + ndim + 1 if rp.axis < 0 else rp.axis
    return start, ndim if rp.num_axes == -1 else start + rp.num_axes


@rule("Crop")
def _crop_shape(layer, bottoms):
    cp = layer.param.crop_param
    if len(bottoms) != 2:
        raise ShapeMismatch(f"Crop needs 2 bottoms (data, reference), got {len(bottoms)}")
    data, ref = bottoms
    if len(data) != len(ref):
        raise ShapeMismatch(f"the reference {format_shape(ref)} must have as many axes as "
                            f"{format_shape(data)}")
    axis, offsets = crop_offsets(cp, len(data))
    n = len(data) - axis
    if len(offsets) != n:
        raise ShapeMismatch(f"{len(offsets)} offsets for {n} cropped axes")
    out = list(data)
    for k, off in zip(range(axis, len(data)), offsets):
        if off + ref[k] > data[k]:
            raise ShapeMismatch(f"axis {k}: offset {off} + size {ref[k]} exceeds {data[k]}")
        out[k] = ref[k]
    return [tuple(out)], []


def crop_offsets(cp, ndim: int) -> tuple[int, list[int]]:
    """Crop's first cropped axis and one offset per cropped axis (one given offset serves
    them all; none means 0)."""
    axis = axis_index(cp.axis, ndim)
    offsets = list(cp.offset) or [0]
    return axis, offsets * (ndim - axis) if len(offsets) == 1 else offsets


@rule("Permute")
def _permute_shape(layer, bottoms):
    # SSD's fork layer; its permute_param is not in caffe.proto, so it arrives in layer.extra.
    bottom = one_bottom(bottoms)
    return [tuple(bottom[k] for k in permute_order(layer, len(bottom)))], []


def permute_order(layer: Layer, ndim: int) -> list[int]:
    """Permute's full axis order: the given axes, then the rest in order (SSD's rule)."""
    orders = layer.extra_values("permute_param", "order")
    order: list[int] = []
    for o in orders:
        if not isinstance(o, int) or not 0 <= o < ndim or o in order:
            raise ShapeMismatch(f"permute order {orders} is not a permutation of the "
                                f"{ndim} axes")
        order.append(o)
    return order + [k for k in range(ndim) if k not in order]


@rule("Tile")
def _tile_shape(layer, bottoms):
    tp = layer.param.tile_param
    bottom = one_bottom(bottoms)
    axis = axis_index(tp.axis, len(bottom))
    if tp.tiles < 1:
        raise ShapeMismatch("tile_param.tiles must be positive")
    return [bottom[:axis] + (bottom[axis] * tp.tiles,) + bottom[axis + 1:]], []


def tile_repeats(tp, ndim: int) -> list[int]:
    """Tile's repeat count per axis."""
    reps = [1] * ndim
    reps[axis_index(tp.axis, ndim)] = tp.tiles
    return reps


def shuffle_group(layer: Layer) -> int:
    """ShuffleChannel's group (a fork field, so any value may come): a positive integer."""
    group = fork_value(layer, "shuffle_channel_param", "group", 1, int)
    if group < 1:
        raise ShapeMismatch(f"shuffle_channel_param.group must be a positive integer, not "
                            f"{shown(group)}")
    return group


@rule("ShuffleChannel")
def _shuffle_channel_shape(layer, bottoms):
    bottom = one_bottom(bottoms)
    group = shuffle_group(layer)
    if len(bottom) < 2 or bottom[1] % group:
        raise ShapeMismatch(f"group {group} does not divide the "
                            f"{bottom[1] if len(bottom) > 1 else 'missing'} channels")
    return [bottom], []


# -- PyTorch ----------------------------------------------------------------------------

@torch_lowering("Flatten")
def _flatten_torch(b):
    layer, s = b.layer, b.s
    single(b)
    n = len(s.bottoms[0])
    start, end = flatten_axes(layer.param.flatten_param, n)
    return b.emit(f"torch.flatten({{0}}, {start}" + (f", {end})" if end != n - 1 else ")"))


@torch_lowering("Reshape")
def _reshape_torch(b):
    layer, s = b.layer, b.s
    single(b)
    rp = layer.param.reshape_param
    n = len(s.bottoms[0])
    start, end = reshape_span(rp, n)
    dims = [f"{{0}}.shape[{k}]" for k in range(start)]
    dims += [f"{{0}}.shape[{start + k}]" if d == 0 else str(d)
             for k, d in enumerate(rp.shape.dim)]
    dims += [f"{{0}}.shape[{k}]" for k in range(end, n)]
    return b.emit(f"{{0}}.reshape({', '.join(dims)})" if dims else "{0}.reshape(())")


@torch_lowering("Crop")
def _crop_torch(b):
    layer, s = b.layer, b.s
    cp = layer.param.crop_param
    axis, offsets = crop_offsets(cp, len(s.bottoms[0]))
    index = [":"] * axis + [f"{o}:{o} + {{1}}.shape[{axis + k}]" if o else
                            f":{{1}}.shape[{axis + k}]" for k, o in enumerate(offsets)]
    return b.emit(f"{{0}}[{', '.join(index)}]")


@torch_lowering("Permute")
def _permute_torch(b):
    layer, s = b.layer, b.s
    single(b)
    order = permute_order(layer, len(s.bottoms[0]))
    return b.emit(f"{{0}}.permute({', '.join(map(str, order))})")


@torch_lowering("Tile")
def _tile_torch(b):
    layer, s = b.layer, b.s
    single(b)
    reps = tile_repeats(layer.param.tile_param, len(s.bottoms[0]))
    return b.emit(f"{{0}}.repeat({', '.join(map(str, reps))})")


@torch_lowering("ShuffleChannel")
def _shuffle_channel_torch(b):
    layer = b.layer
    single(b)
    group = shuffle_group(layer)
    return b.emit(f"F.channel_shuffle({{0}}, {group})")


# -- ONNX -------------------------------------------------------------------------------

@onnx_lowering("Flatten")
def _flatten_onnx(b):
    single(b)
    shape = b.s.bottoms[0]
    n = len(shape)
    start, end = flatten_axes(b.layer.param.flatten_param, n)
    if start == 1 and end == n - 1:
        b.out("Flatten", b.x, axis=1)
    else:
        b.reshape(b.x[0], [0] * start + [-1] + list(shape[end + 1:]), b.y)


@onnx_lowering("Reshape")
def _reshape_onnx(b):
    single(b)
    rp = b.layer.param.reshape_param
    shape = b.s.bottoms[0]
    start, end = reshape_span(rp, len(shape))
    # Caffe's 0 copies the input's dimension at the same position, as ONNX's does.
    dims = [0] * start + list(rp.shape.dim) + list(shape[end:])
    b.reshape(b.x[0], dims, b.y)


@onnx_lowering("Crop")
def _crop_onnx(b):
    cp = b.layer.param.crop_param
    data, ref = b.s.bottoms[0], b.s.bottoms[1]
    axis, offsets = crop_offsets(cp, len(data))
    axes = list(range(axis, len(data)))
    ends = [o + ref[a] for o, a in zip(offsets, axes)]
    b.out("Slice", [b.x[0], b.ints(offsets, "starts"), b.ints(ends, "ends"),
                    b.ints(axes, "axes")])


@onnx_lowering("Permute")
def _permute_onnx(b):
    single(b)
    b.out("Transpose", b.x, perm=permute_order(b.layer, len(b.s.bottoms[0])))


@onnx_lowering("Tile")
def _tile_onnx(b):
    single(b)
    reps = tile_repeats(b.layer.param.tile_param, len(b.s.bottoms[0]))
    b.out("Tile", [b.x[0], b.ints(reps, "repeats")])


@onnx_lowering("ShuffleChannel")
def _shuffle_channel_onnx(b):
    single(b)
    group = shuffle_group(b.layer)
    shape = b.s.bottoms[0]
    c, rest = shape[1], list(shape[2:])
    grouped = b.reshape(b.x[0], [0, group, c // group] + rest)
    swapped = b.op("Transpose", [grouped], perm=[0, 2, 1] + list(range(3, 3 + len(rest))))
    b.reshape(swapped, [0, c] + rest, b.y)
