"""Layers that reduce an axis: Softmax, Reduction (SUM, ASUM, SUMSQ, MEAN) and ArgMax."""
from __future__ import annotations

from ..errors import Unsupported
from ..graph.shapes import ShapeMismatch
from ..proto import caffe_pb2
from ..registry import draw, onnx_lowering, rule, torch_lowering
from .common import axis_index, lit, one_bottom, single

draw("elementwise / concat", "Reduction")
draw("loss / output", "Softmax", "ArgMax")


# -- shapes -----------------------------------------------------------------------------

@rule("Softmax")
def _softmax_shape(layer, bottoms):
    p = layer.param
    bottom = one_bottom(bottoms)
    axis_index(p.softmax_param.axis, len(bottom))
    return [bottom], []


@rule("Reduction")
def _reduction_shape(layer, bottoms):
    bottom = one_bottom(bottoms)
    axes = reduction_axes(layer.param.reduction_param, len(bottom))
    return [bottom[:axes[0]] if axes else bottom], []


def reduction_axes(rp, ndim: int) -> list[int]:
    """The axes Reduction reduces: all from `axis` on."""
    return list(range(axis_index(rp.axis, ndim) if ndim else 0, ndim))


@rule("ArgMax")
def _argmax_shape(layer, bottoms):
    ap = layer.param.argmax_param
    bottom = one_bottom(bottoms)
    if ap.HasField("axis"):
        axis = axis_index(ap.axis, len(bottom))
        if ap.top_k > bottom[axis]:
            raise ShapeMismatch(f"top_k {ap.top_k} exceeds axis size {bottom[axis]}")
        return [bottom[:axis] + (ap.top_k,) + bottom[axis + 1:]], []
    shape = [1] * max(3, len(bottom))
    shape[0] = bottom[0]
    shape[2] = ap.top_k
    if ap.out_max_val:
        shape[1] = 2
    return [tuple(shape)], []


# -- PyTorch ----------------------------------------------------------------------------

@torch_lowering("Softmax")
def _softmax_torch(b):
    layer, s = b.layer, b.s
    single(b)
    axis = layer.param.softmax_param.axis % len(s.bottoms[0])
    return b.emit(f"torch.softmax({{0}}, {axis})")


@torch_lowering("Reduction")
def _reduction_torch(b):
    layer, s = b.layer, b.s
    single(b)
    rp = layer.param.reduction_param
    R = caffe_pb2.ReductionParameter
    dims = tuple(reduction_axes(rp, len(s.bottoms[0])))
    x = {R.SUM: "{0}", R.ASUM: "torch.abs({0})", R.SUMSQ: "{0} * {0}",
         R.MEAN: "{0}"}[rp.operation]
    fn = "mean" if rp.operation == R.MEAN else "sum"
    expr = f"torch.{fn}({x}, {lit(dims)})" if dims else x
    return b.emit(expr if rp.coeff == 1 else f"{lit(rp.coeff)} * {expr}")


@torch_lowering("ArgMax")
def _argmax_torch(b):
    layer, s = b.layer, b.s
    single(b)
    ap = layer.param.argmax_param
    axis = ap.axis % len(s.bottoms[0]) if ap.HasField("axis") else None
    return b.emit("{m}({0})", b.ctor("ArgMax", (), {
        "top_k": ap.top_k, "out_max_val": ap.out_max_val, "axis": axis}))


# -- ONNX -------------------------------------------------------------------------------

@onnx_lowering("Softmax")
def _softmax_onnx(b):
    single(b)
    b.out("Softmax", b.x, axis=b.layer.param.softmax_param.axis % len(b.s.bottoms[0]))


@onnx_lowering("Reduction")
def _reduction_onnx(b):
    single(b)
    rp = b.layer.param.reduction_param
    R = caffe_pb2.ReductionParameter
    axes = reduction_axes(rp, len(b.s.bottoms[0]))
    op_type = {R.SUM: "ReduceSum", R.ASUM: "ReduceL1", R.SUMSQ: "ReduceSumSquare",
               R.MEAN: "ReduceMean"}[rp.operation]
    if not axes:
        raise Unsupported("a reduction over no axes")
    if rp.coeff == 1:
        b.reduce(op_type, b.x[0], axes, False, b.y)
    else:
        b.out("Mul", [b.reduce(op_type, b.x[0], axes, False), b.scalar(rp.coeff, "coeff")])


@onnx_lowering("ArgMax")
def _argmax_onnx(b):
    single(b)
    ap = b.layer.param.argmax_param
    x = b.x[0]
    k = b.ints([ap.top_k], "k")
    if ap.HasField("axis"):
        axis = ap.axis % len(b.s.bottoms[0])
        values, index = b.op("TopK", [x, k], 2, axis=axis)
        if ap.out_max_val:
            b.result(values)
        else:
            b.out("Cast", [index], to=b.FLOAT)
        return
    values, index = b.op("TopK", [b.op("Flatten", [x], axis=1), k], 2, axis=1)
    index = b.op("Cast", [index], to=b.FLOAT)
    if ap.out_max_val:
        both = b.op("Concat", [b.unsqueeze(index, [1]), b.unsqueeze(values, [1])], axis=1)
    else:
        both = b.unsqueeze(index, [1])
    b.reshape(both, [0] + list(b.s.tops[0][1:]), b.y)
