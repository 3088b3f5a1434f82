"""Generated networks load in OpenCV's Caffe importer (an independent reading of Caffe's format)
and OpenCV computes the same blob shapes as our shape inference, layer by layer."""
import numpy as np
import pytest

from prototxt_gen import generate
from prototxt_gen.caffe.weights import write_caffemodel
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.graph.shapes import infer
from prototxt_gen.build.spec import parse_spec

from conftest import DATA, ROOT, ZOO
from weights import random_weights

import cv2  # opencv-python-headless<5, from the [test] extra


# Pooling with kernel 2, stride 2, pad 1 on an odd size: ceil gives 34, the clip rule 33.
CLIPPED = parse_spec((ROOT / "examples" / "my_resnet.toml").read_text().replace(
    "pool_kernel = 3\npool_stride = 2\npool_pad = 1",
    "pool_kernel = 2\npool_stride = 2\npool_pad = 1"), "clipped.toml")

CASES = [
    ("resnet18", None, "original", "input_dim"),
    ("resnet18", (2, 3, 97, 131), "modern", "layer"),          # odd, non-square: kernel_h/w head
    ("resnet50", (1, 3, 67, 67), "original", "input_dim"),     # pool1 rounds up: 34 -> 17
    ("resnet34", (1, 3, 160, 160), "modern", "input_shape"),
    (ROOT / "examples" / "my_resnet.toml", None, "modern", "layer"),  # groups, dilation
    (CLIPPED, (1, 3, 65, 65), "modern", "layer"),
]


@pytest.mark.parametrize("model,shape,layout,style", CASES,
                         ids=[f"{getattr(c[0], 'source', c[0])}-{c[1]}-{c[3]}".split("/")[-1]
                              for c in CASES])
def test_opencv_agrees_on_every_shape(tmp_path, model, shape, layout, style):
    net = generate(model, input_shape=shape)
    prototxt = tmp_path / "net.prototxt"
    weights = tmp_path / "net.caffemodel"
    prototxt.write_text(net.to_prototxt(layout, style))
    write_caffemodel(random_weights(net), weights)
    if model is CLIPPED:
        assert {s.layer.name: s.tops[0] for s in infer(net)}["pool1"] == (1, 16, 33, 33)
    check_with_opencv(net, prototxt, weights)


def check_with_opencv(net, prototxt, weights):
    """OpenCV reads the prototxt and our caffemodel, agrees on every layer's output shape, and
    runs the net to a probability vector per image."""
    cv = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    ours = {s.layer.name: s.tops for s in infer(net)}
    assert list(cv.getLayerNames()) == list(ours)
    input_shape = list(net.inputs[0].shape)
    ids, _, outs = cv.getLayersShapes(input_shape)
    theirs = {cv.getLayer(int(i)).name: [tuple(int(d) for d in top.ravel()) for top in o]
              for i, o in zip(np.ravel(ids), outs) if int(i) > 0}
    assert theirs == ours
    cv.setInput(np.random.default_rng(1).standard_normal(input_shape).astype(np.float32))
    prob = cv.forward()
    assert prob.shape == ours[net.layers[-1].name][0]
    assert np.isfinite(prob).all()
    if net.layers[-1].type == "Softmax":
        np.testing.assert_allclose(prob.reshape(prob.shape[0], -1).sum(axis=1), 1.0, rtol=1e-4)


# OpenCV 4 reads the fork field ceil_mode itself (its caffe.proto has it); its Axpy computes
# a·Y + X, not SENet's a·X + Y (test_user_files.py), so SE-ResNet is checked with Axpy rewritten.
ZOO_FOR_OPENCV = sorted(p.name for p in ZOO.glob("*.prototxt") if p.name != "SE-ResNet-50.prototxt")


@pytest.mark.parametrize("name", ZOO_FOR_OPENCV)
def test_opencv_agrees_on_zoo_shapes(tmp_path, name):
    """The zoo as users have it (V1 syntax, input_dim, fork fields): our reader's shapes match
    OpenCV's, and OpenCV loads the weights our writer produced."""
    net = read_prototxt(ZOO / name)
    weights = tmp_path / "net.caffemodel"
    write_caffemodel(random_weights(net), weights)
    check_with_opencv(net, ZOO / name, weights)


def test_opencv_agrees_on_more_layer_types(tmp_path):
    """Slice, Crop, Permute (a fork field read from layer.extra), Reshape with 0/-1,
    InnerProduct with axis 2, Deconvolution with groups, kernel_h/w with dilation, global and
    clipped pooling, N-D Flatten, Scale over two axes... (OpenCV 4 has no Bias layer)."""
    net = read_prototxt(DATA / "shapes_zoo.prototxt")
    shapes = {s.layer.name: s.tops for s in infer(net)}
    assert shapes["slice"] == [(2, 2, 8, 10), (2, 3, 8, 10), (2, 1, 8, 10)]
    # 3 rows, kernel 2, stride 2, pad 1: ceil gives 3 windows, the third would start in the
    # bottom padding, so the clip rule drops it; 10 columns give 6.
    assert shapes["pool_clip"] == [(2, 3, 2, 6)]
    weights = tmp_path / "net.caffemodel"
    write_caffemodel(random_weights(net), weights)
    check_with_opencv(net, DATA / "shapes_zoo.prototxt", weights)
