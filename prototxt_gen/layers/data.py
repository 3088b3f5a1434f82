"""Where a net's data comes from and where training ends: Input, Parameter, the dataset
layers (Data, ImageData, WindowData, HDF5Data, AnnotatedData), MemoryData, DummyData, Python,
and the loss and Accuracy layers (shapes only: the translators leave them out at inference,
see backends/inference.py)."""
from __future__ import annotations

from ..graph.net import Net, input_layer_shapes
from ..graph.shapes import (DATA_READERS, DATASET_LAYERS, LOSS_LAYERS, Shape, ShapeMismatch,
                            format_shape)
from ..registry import draw, onnx_lowering, rule, torch_lowering
from .common import axis_index

draw("data", "Input", "Data", "ImageData", "WindowData", "HDF5Data", "MemoryData", "DummyData",
     "AnnotatedData", "Python", "Parameter")
draw("loss / output", "SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
     "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss", "Accuracy")


# -- shapes -----------------------------------------------------------------------------

@rule("Input")
def _input_shape(layer, bottoms):
    p = layer.param
    return input_layer_shapes(p), []


@rule("Accuracy")
def _accuracy_shape(layer, bottoms):
    if len(bottoms) != 2:
        raise ShapeMismatch(f"Accuracy needs 2 bottoms (scores, labels), got {len(bottoms)}")
    axis = axis_index(layer.param.accuracy_param.axis, len(bottoms[0]))
    return [(), (bottoms[0][axis],)], []


@rule(*LOSS_LAYERS)
def _loss_shape(layer, bottoms):
    if len(bottoms) < 2:
        raise ShapeMismatch(f"a loss layer needs at least 2 bottoms, got {len(bottoms)}")
    return [(), bottoms[0]], []  # SoftmaxWithLoss may expose the probabilities as a second top


@rule("MemoryData")
def _memory_data_shape(layer, bottoms):
    mp = layer.param.memory_data_param
    shape = (mp.batch_size, mp.channels, mp.height, mp.width)
    if any(d < 1 for d in shape):
        raise ShapeMismatch("memory_data_param needs positive batch_size, channels, height, "
                            "width")
    return [shape, (mp.batch_size,)], []


@rule("DummyData")
def _dummy_data_shape(layer, bottoms):
    dp = layer.param.dummy_data_param
    shapes = [tuple(s.dim) for s in dp.shape]
    if not shapes and dp.num:
        count = max(len(dp.num), len(dp.channels), len(dp.height), len(dp.width))
        pick = lambda v, k: v[k] if len(v) > 1 else v[0]  # noqa: E731
        shapes = [(pick(dp.num, k), pick(dp.channels, k), pick(dp.height, k),
                   pick(dp.width, k)) for k in range(count)]
    if len(shapes) == 1:
        shapes *= len(layer.top)
    if len(shapes) != len(layer.top):
        raise ShapeMismatch(f"{len(shapes)} shapes for {len(layer.top)} tops")
    return shapes, []


@rule("Parameter")
def _parameter_shape(layer, bottoms):
    shape = tuple(layer.param.parameter_param.shape.dim)
    return [shape], [shape]


def dataset_shapes(layer) -> tuple[list[Shape | None], list[str]]:
    """The shapes a dataset layer's tops get in Caffe, as far as the file tells them (None where
    only the data knows), and what was assumed (docs/caffe.md §7): [data, label] as N×C×H×W
    and N. The batch is
    the layer's batch_size; H×W is transform_param.crop_size, else ImageData's new_height ×
    new_width; C is 1 or 3 where the file says (is_color, force_gray, force_color), else 3."""
    p, t = layer.param, layer.param.transform_param
    kind = layer.type
    if kind == "HDF5Data":  # its tops are the HDF5 file's datasets: any number, any shape
        return [None] * len(layer.top), []
    sub = {"ImageData": p.image_data_param, "WindowData": p.window_data_param}.get(
        kind, p.data_param)
    batch = sub.batch_size or None
    assumed = []
    crop = t.crop_size or (p.window_data_param.crop_size if kind == "WindowData" else 0)
    if crop:
        hw = (crop, crop)
    elif kind == "ImageData" and p.image_data_param.new_height and \
            p.image_data_param.new_width:
        hw = (p.image_data_param.new_height, p.image_data_param.new_width)
    else:
        hw = None
    if t.force_gray or (kind == "ImageData" and not p.image_data_param.is_color):
        channels = 1
    elif t.force_color or kind == "ImageData":
        channels = 3
    else:
        channels = 3
        assumed.append("3 channels")
    data = (batch, channels, *hw) if batch and hw else None
    tops: list[Shape | None] = [data]
    if len(layer.top) > 1:
        if kind == "AnnotatedData":  # one row per box, 8 values each; 1 box until data is read
            tops.append((1, 1, 1, 8) if batch else None)
            assumed.append("1 box per batch")
        else:
            tops.append((batch,) if batch else None)
    return tops + [None] * (len(layer.top) - len(tops)), assumed


def data_layer_note(net: Net) -> str | None:
    """One line saying what shapes the layers that read data give, and where each came from:
    the file's parameters, --input-shape, or an assumption (None if there is no such layer)."""
    parts = []
    for layer in net.layers:
        if layer.bottom or layer.type not in DATA_READERS:
            continue
        tops, assumed = dataset_shapes(layer) if layer.type != "Python" else \
            ([None] * len(layer.top), [])
        if layer.top and layer.top[0] in net.top_shapes:
            assumed = [a for a in assumed if "channels" not in a]
        shapes = []
        for top, shape in zip(layer.top, tops):
            given = net.top_shapes.get(top)
            if given is not None or shape is not None:
                shapes.append(f"'{top}' {format_shape(given or shape)}"
                              + (" (--input-shape)" if given is not None else ""))
        parts.append(f"layer '{layer.name}' ({layer.type}) gives "
                     + (", ".join(shapes) or "no known shape")
                     + (f", assuming {' and '.join(assumed)}" if assumed else ""))
    return "data: " + "; ".join(parts) if parts else None


@rule(*DATASET_LAYERS)
def _dataset_shape(layer, bottoms):
    return dataset_shapes(layer)[0], []  # None where only the data knows: infer says so


@rule("Python")
def _python_shape(layer, bottoms):
    raise ShapeMismatch("its output shape depends on its Python code; give its tops' shapes "
                        "with --input-shape NAME=N,C,H,W")


# -- PyTorch ----------------------------------------------------------------------------

@torch_lowering("Parameter")
def _parameter_torch(b):
    s = b.s
    return b.emit("{m}.weight", b.ctor("Blob", (tuple(s.blobs[0]),),
                                      tensors={"weight": b.blob(0)}), [("weight", None)])


# -- ONNX -------------------------------------------------------------------------------

@onnx_lowering("Parameter")
def _parameter_onnx(b):
    b.out("Identity", [b.blob(0, "weight")])
