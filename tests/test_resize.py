"""PSPNet's and DeepLab's Interp: shapes, both back ends against a loop reading of Caffe's
caffe_cpu_interp2 and against OpenCV, ONNX opsets 13-20; FCN's bilinear Deconvolution."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from prototxt_gen.backends.onnx import to_onnx
from prototxt_gen.backends.pytorch import to_torch
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.graph.shapes import infer
from prototxt_gen.layers.resize import interp_geometry

import numpy_ref
from conftest import DATA, assert_info_refuses, run_cli
from reference import assert_close_to, inputs_for, onnx_blobs, opencv_blobs

INTERP = DATA / "interp.prototxt"


def caffe_interp(x, layer):
    """interp_layer.cpp's Forward_cpu: caffe_cpu_interp2 from the cropped region, loop for
    loop, in float32."""
    pad_beg, _, h1, w1, h2, w2 = interp_geometry(layer, x.shape)
    x = x[:, :, -pad_beg:, -pad_beg:]
    out = np.empty(x.shape[:2] + (h2, w2), np.float32)
    if (h1, w1) == (h2, w2):
        return x[:, :, :h1, :w1].copy()
    rh = np.float32((h1 - 1) / (h2 - 1)) if h2 > 1 else np.float32(0)
    rw = np.float32((w1 - 1) / (w2 - 1)) if w2 > 1 else np.float32(0)
    for i in range(h2):
        hr = np.float32(rh * i)
        y = int(hr)
        yp = 1 if y < h1 - 1 else 0
        ly = np.float32(hr - y)
        for j in range(w2):
            wr = np.float32(rw * j)
            c = int(wr)
            cp = 1 if c < w1 - 1 else 0
            lx = np.float32(wr - c)
            out[:, :, i, j] = (1 - ly) * ((1 - lx) * x[:, :, y, c] + lx * x[:, :, y, c + cp]) \
                + ly * ((1 - lx) * x[:, :, y + yp, c] + lx * x[:, :, y + yp, c + cp])
    return out


def test_shapes_and_info():
    shapes = {s.layer.name: s.tops[0] for s in infer(read_prototxt(INTERP))}
    assert shapes == {"zoom": (1, 3, 25, 31), "shrink": (1, 3, 5, 6),
                      "size": (1, 3, 17, 6), "both": (1, 3, 17, 21),
                      "cropped": (1, 3, 11, 15), "same": (1, 3, 9, 11)}
    r = run_cli("info", INTERP)
    assert r.returncode == 0 and "Interp" in r.stdout, r.stderr


@pytest.mark.parametrize("opset", list(range(13, 21)))
def test_both_back_ends_follow_caffes_loop(opset):
    net = read_prototxt(INTERP)
    xs = inputs_for(net)
    tops = [layer.top[0] for layer in net.layers if layer.type == "Interp"]
    want = {layer.top[0]: caffe_interp(xs[0], layer) for layer in net.layers
            if layer.type == "Interp"}
    with torch.no_grad():
        ours = {k: v.numpy() for k, v in to_torch(net).blobs(torch.from_numpy(xs[0])).items()}
    onnx_out = onnx_blobs(net, tops, xs, opset)
    for top in tops:
        assert np.abs(ours[top] - want[top]).max() <= 1e-5, top
        assert np.abs(onnx_out[top] - want[top]).max() <= 1e-5, top
    # batch 2: each image as alone
    x2 = np.concatenate([xs[0], -xs[0]])
    two = ort.InferenceSession(to_onnx(net, opset=opset).SerializeToString(),
                               providers=["CPUExecutionProvider"])
    for got, name in zip(two.run(None, {"data": x2}), [o.name for o in two.get_outputs()]):
        assert got.shape[0] == 2 and np.abs(got[:1] - want[name]).max() <= 1e-5


def test_interp_matches_opencv(tmp_path):
    """OpenCV 4 reads only zoom_factor and height/width: it refuses shrink_factor alone, and
    ignores it beside zoom_factor and ignores pad_beg/pad_end (docs/caffe.md §11); those
    layers are checked against Caffe's loop only (test_both_back_ends_follow_caffes_loop)."""
    kept = [line for line in INTERP.read_text().splitlines()
            if not line.startswith("layer") or any(f'"{n}"' in line for n in ("zoom", "size",
                                                                             "same"))]
    path = tmp_path / "interp_opencv.prototxt"
    path.write_text("\n".join(line for line in kept if not line.startswith("  interp_param")))
    net = read_prototxt(path)
    xs = inputs_for(net)
    with torch.no_grad():
        ours = {k: v.numpy() for k, v in to_torch(net).blobs(torch.from_numpy(xs[0])).items()}
    refs = opencv_blobs(net, path, "", xs, [b for b in ours if b != "data"])  # no weights
    assert assert_close_to(refs, ours) == 3


@pytest.mark.parametrize("param,error", [
    ("zoom_factor: 0", "interp_param.zoom_factor must be at least 1"),
    ("pad_beg: 1 zoom_factor: 2", "interp_param: pad_beg and pad_end crop (they must be <= 0)"),
    ("height: 4", "interp_param needs zoom_factor, shrink_factor or height and width"),
])
def test_bad_interp_parameters(tmp_path, param, error):
    assert_info_refuses(
        tmp_path, 'input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
        'layer { name: "i" type: "Interp" bottom: "data" top: "i" '
        f'interp_param {{ {param} }} }}\n', f"layer 'i' (Interp): {error} (input 1×3×8×8)")


# -- SegNet's Upsample and the pooling mask ---------------------------------------------------

SEGNET = DATA / "segnet.prototxt"


def caffe_max_pool_with_mask(x, layer):
    """pooling_layer.cpp's MAX forward with its mask top, loop for loop: windows clipped to
    the input, the first maximum's index h·W + w."""
    pp = layer.param.pooling_param
    k, s, p = pp.kernel_size, pp.stride, pp.pad
    n, c, height, width = x.shape
    oh = -(-(height + 2 * p - k) // s) + 1
    ow = -(-(width + 2 * p - k) // s) + 1
    if p and (oh - 1) * s >= height + p:
        oh -= 1
    if p and (ow - 1) * s >= width + p:
        ow -= 1
    out = np.zeros((n, c, oh, ow), np.float32)
    mask = np.zeros((n, c, oh, ow), np.float32)
    for i in range(oh):
        hs, he = i * s - p, min(i * s - p + k, height)
        hs = max(hs, 0)
        for j in range(ow):
            ws, we = j * s - p, min(j * s - p + k, width)
            ws = max(ws, 0)
            window = x[:, :, hs:he, ws:we].reshape(n, c, -1)
            arg = window.argmax(axis=2)  # the first maximum
            out[:, :, i, j] = window.max(axis=2)
            mask[:, :, i, j] = (hs + arg // (we - ws)) * width + ws + arg % (we - ws)
    return out, mask


@pytest.mark.parametrize("opset", list(range(13, 21)))
def test_pooling_mask_and_upsample_follow_caffes_loops(opset):
    from weights import random_weights
    net = random_weights(read_prototxt(SEGNET))
    xs = inputs_for(net)
    with torch.no_grad():
        ours = {k: v.numpy() for k, v in to_torch(net).blobs(torch.from_numpy(xs[0])).items()}
    conv1 = ours["conv1"]
    want = {}
    for pool, up in (("pool1", ("up_scale", "up_size")), ("pool2", ("unpool2",))):
        values, mask = caffe_max_pool_with_mask(conv1, net.layer(pool))
        want[pool], want[pool + "_mask"] = values, mask
        for name in up:
            want[name] = numpy_ref.upsample(net.layer(name), values, mask)[0]
    want["nearest"] = numpy_ref.upsample(net.layer("nearest"), conv1)[0]
    assert want["nearest"].shape == (2, 4, 27, 24)
    names = sorted(want)
    onnx_out = onnx_blobs(net, names, xs, opset)
    for name in names:
        assert np.abs(ours[name] - want[name]).max() <= 1e-6, name
        assert np.abs(onnx_out[name] - want[name]).max() <= 1e-6, (name, opset)


# -- FCN's and DeepLab's upsampling Deconvolution with the bilinear filler --------------------

FCN_UPSAMPLE = '''input: "data" input_shape { dim: 2 dim: 3 dim: 7 dim: 9 }
layer { name: "up" type: "Deconvolution" bottom: "data" top: "up"
  param { lr_mult: 0 decay_mult: 0 }
  convolution_param { num_output: 3 group: 3 kernel_size: %d stride: %d pad: %d
    bias_term: false weight_filler { type: "bilinear" } } }
'''


def caffe_bilinear_filler(c, w):
    """filler.hpp's BilinearFiller, element by element over a C×1×w×w blob (float32)."""
    f32 = np.float32
    f = int(np.ceil(w / 2.0))
    center = f32((w - 1) / (2.0 * f))
    data = np.empty(c * w * w, np.float32)
    for i in range(data.size):
        x, y = f32(i % w), f32((i // w) % w)
        data[i] = (f32(1) - abs(x / f32(f) - center)) * (f32(1) - abs(y / f32(f) - center))
    return data.reshape(c, 1, w, w)


def caffe_deconvolution(x, weight, stride, pad):
    """A grouped (one group per channel) Deconvolution as Caffe's col2im scatters it: each
    input value times the kernel added at (i·stride - pad, j·stride - pad), cropped."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    full = np.zeros((n, c, (h - 1) * stride + k, (w - 1) * stride + k), np.float64)
    for i in range(h):
        for j in range(w):
            full[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += \
                x[:, :, i:i + 1, j:j + 1] * weight[None, :, 0]
    ho, wo = (h - 1) * stride + k - 2 * pad, (w - 1) * stride + k - 2 * pad
    return full[:, :, pad:pad + ho, pad:pad + wo].astype(np.float32)


@pytest.mark.parametrize("factor", [2, 3, 8])
def test_fcn_bilinear_upsampling_without_weights(tmp_path, factor):
    """kernel 2f - f%2, stride f, pad ceil((f-1)/2), the bilinear filler and no caffemodel (the
    weights are the filler's, lr_mult 0): the placeholder weights are the filler's; both back
    ends give Caffe's scatter of that kernel, which upsamples a constant map to the same
    constant away from the border, and OpenCV gives the same from those weights."""
    from prototxt_gen import write_caffemodel
    from prototxt_gen.graph.placeholders import fill_placeholders
    k, pad = 2 * factor - factor % 2, math.ceil((factor - 1) / 2)
    path = tmp_path / "fcn.prototxt"
    path.write_text(FCN_UPSAMPLE % (k, factor, pad))
    net = read_prototxt(path)
    assert fill_placeholders(net) == ["up"]  # what ONNX conversion and --verify do
    assert np.array_equal(net.layer("up").blobs[0], caffe_bilinear_filler(3, k))
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 9)).astype(np.float32)
    want = caffe_deconvolution(x, caffe_bilinear_filler(3, k), factor, pad)
    assert infer(net)[-1].tops == [want.shape]
    with torch.no_grad():
        got = to_torch(net)(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-5
    (onnx_got,) = ort.InferenceSession(to_onnx(net).SerializeToString(), providers=[
        "CPUExecutionProvider"]).run(None, {"data": x})
    assert np.abs(onnx_got - want).max() <= 1e-5
    with torch.no_grad():
        flat = to_torch(net)(torch.full((1, 3, 7, 9), 2.5)).numpy()
    inner = flat[:, :, 2 * factor:-2 * factor, 2 * factor:-2 * factor]
    assert inner.size and np.abs(inner - 2.5).max() <= 1e-5
    write_caffemodel(net, tmp_path / "fcn.caffemodel")
    ref = opencv_blobs(net, path, tmp_path / "fcn.caffemodel", [x], ["up"])["up"]
    assert np.abs(ref - want).max() <= 1e-5
