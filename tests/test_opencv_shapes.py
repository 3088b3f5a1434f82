"""Generated networks load in OpenCV's Caffe importer (an independent reading of Caffe's format)
and OpenCV computes the same blob shapes as our shape inference, layer by layer."""
import math

import numpy as np
import pytest

from prototxt_gen import generate
from prototxt_gen.shapes import infer
from prototxt_gen.spec import parse_spec

from conftest import ROOT

import cv2  # opencv-python-headless<5, from the [test] extra


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def caffemodel(net, seed=0):
    """A .caffemodel for `net` with random weights. Blob data goes in as raw packed float32
    bytes (BlobProto.data is field 5, length-delimited), not as a Python list."""
    rng = np.random.default_rng(seed)
    blobs = {s.layer.name: s.blobs for s in infer(net)}
    proto = net.to_proto("layer")
    for layer in proto.layer:
        for k, shape in enumerate(blobs.get(layer.name, [])):
            data = rng.standard_normal(math.prod(shape)).astype("<f4")
            if len(shape) > 1:  # conv/fc weights, scaled by fan-in so deep nets stay finite
                data *= np.float32(math.sqrt(1.0 / math.prod(shape[1:])))
            elif layer.type == "BatchNorm":  # mean, variance (> 0), scale factor
                data = [data, np.abs(data) + 0.5, np.float32([2.0])][k]
            else:  # biases, Scale's gamma (near 1) and beta
                gamma = layer.type == "Scale" and k == 0
                data = data * np.float32(0.1) + np.float32(1.0 if gamma else 0.0)
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            payload = data.tobytes()
            blob.MergeFromString(b"\x2a" + _varint(len(payload)) + payload)
    return proto.SerializeToString()


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
    weights.write_bytes(caffemodel(net))
    cv = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    ours = {s.layer.name: s.tops[0] for s in infer(net)}
    if model is CLIPPED:
        assert ours["pool1"] == (1, 16, 33, 33)
    assert list(cv.getLayerNames()) == list(ours)
    input_shape = list(net.inputs[0].shape)
    ids, _, outs = cv.getLayersShapes(input_shape)
    theirs = {cv.getLayer(int(i)).name: tuple(int(d) for d in o[0].ravel())
              for i, o in zip(np.ravel(ids), outs) if int(i) > 0}
    assert theirs == ours
    # And it runs: a probability vector per image.
    cv.setInput(np.random.default_rng(1).standard_normal(input_shape).astype(np.float32))
    prob = cv.forward()
    assert prob.shape == ours[net.layers[-1].name]
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-4)
