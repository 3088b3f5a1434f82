"""Faster R-CNN's ROIPooling: both back ends against a loop reading of roi_pooling_layer.cpp
and against OpenCV, on regions inside, across and outside the map, with halves to round."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from prototxt_gen.backends.onnx import to_onnx
from prototxt_gen.backends.pytorch import to_torch
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.graph.shapes import infer

from conftest import DATA, run_cli
from reference import opencv_blobs

NET = '''input: "data" input_shape { dim: 2 dim: 4 dim: 12 dim: 15 }
input: "rois" input_shape { dim: %d dim: 5 }
layer { name: "pool" type: "ROIPooling" bottom: "data" bottom: "rois" top: "pool"
  roi_pooling_param { pooled_h: 3 pooled_w: 4 spatial_scale: %s } }
'''
ROIS = np.asarray([[0, 0, 0, 59, 47],       # the whole map (scale 1/4)
                   [1, 10, 6, 30, 22],      # inside
                   [0, 50, 40, 80, 70],     # across the bottom-right edge
                   [1, -20, -8, 6, 10],     # across the top-left edge
                   [0, 70, 60, 90, 80],     # outside: every bin empty
                   [1, 14, 14, 14, 14],     # one pixel: size 1
                   [0, 2, 6, 10, 18]],      # halves to round: 0.5, 1.5, 2.5, 4.5
                  np.float32)


def caffe_roi_pooling(x, rois, ph, pw, scale):
    """roi_pooling_layer.cpp's Forward_cpu, loop for loop (float32 bins, C's round)."""
    f = np.float32
    out = np.zeros((len(rois), x.shape[1], ph, pw), np.float32)
    height, width = x.shape[2:]
    for r, (n, *box) in enumerate(rois):
        x1, y1, x2, y2 = (int(np.sign(v) * np.floor(abs(float(v)) + 0.5))
                          for v in (f(c) * f(scale) for c in box))
        rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bh, bw = f(rh) / f(ph), f(rw) / f(pw)
        for i in range(ph):
            hs = min(max(int(np.floor(f(i) * bh)) + y1, 0), height)
            he = min(max(int(np.ceil(f(i + 1) * bh)) + y1, 0), height)
            for j in range(pw):
                ws = min(max(int(np.floor(f(j) * bw)) + x1, 0), width)
                we = min(max(int(np.ceil(f(j + 1) * bw)) + x1, 0), width)
                if he > hs and we > ws:
                    out[r, :, i, j] = x[int(n), :, hs:he, ws:we].max(axis=(1, 2))
    return out


def roi_net(tmp_path, scale="0.25", rois=ROIS):
    path = tmp_path / "roi.prototxt"
    path.write_text(NET % (len(rois), scale))
    return path, read_prototxt(path)


def test_shape_and_info(tmp_path):
    path, net = roi_net(tmp_path)
    assert infer(net)[-1].tops == [(7, 4, 3, 4)]
    r = run_cli("info", path)
    assert r.returncode == 0 and "ROIPooling" in r.stdout, r.stderr


@pytest.mark.parametrize("scale", ["0.25", "0.0625", "1"])
def test_both_back_ends_follow_caffes_loop(tmp_path, scale):
    _, net = roi_net(tmp_path, scale)
    x = np.random.default_rng(0).standard_normal((2, 4, 12, 15)).astype(np.float32)
    rois = ROIS * (4 if scale == "1" else 1)  # the same boxes in map coordinates at scale 1
    rois[:, 0] = ROIS[:, 0]
    want = caffe_roi_pooling(x, rois, 3, 4, float(scale))
    with torch.no_grad():
        got = to_torch(net)(torch.from_numpy(x), torch.from_numpy(rois)).numpy()
    assert np.array_equal(got, want)
    for opset in range(13, 21):
        session = ort.InferenceSession(to_onnx(net, opset=opset).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        (onnx_got,) = session.run(None, {"data": x, "rois": rois})
        assert np.array_equal(onnx_got, want), opset


def test_pt2_program_takes_any_number_of_regions_and_images(tmp_path):
    """--to pytorch: ROIPooling runs as torch.ops.prototxt_gen.roi_pooling in the program, whose
    image batch and region count are free, each of its own (the file says 2 and 7)."""
    from prototxt_gen.backends.pytorch import save_exported
    _, net = roi_net(tmp_path)
    with pytest.warns(UserWarning, match="torch.ops.prototxt_gen.roi_pooling"):
        save_exported(net, tmp_path / "roi.pt2")
    program = torch.export.load(tmp_path / "roi.pt2").module()
    x = np.random.default_rng(1).standard_normal((3, 4, 12, 15)).astype(np.float32)
    for rois in (ROIS[:2], np.concatenate([ROIS, ROIS[:, [0, 3, 4, 1, 2]] + [1, 0, 0, 0, 0]])):
        with torch.no_grad():
            got = program(torch.from_numpy(x), torch.from_numpy(rois)).numpy()
        assert np.array_equal(got, caffe_roi_pooling(x, rois, 3, 4, 0.25))


# -- PSROIPooling --------------------------------------------------------------------------

PS_NET = '''input: "data" input_shape { dim: 2 dim: 18 dim: 12 dim: 15 }
input: "rois" input_shape { dim: 7 dim: 5 }
layer { name: "ps" type: "PSROIPooling" bottom: "data" bottom: "rois" top: "ps"
  psroi_pooling_param { spatial_scale: %s output_dim: 2 group_size: 3 } }
'''


def caffe_psroi_pooling(x, rois, scale, dim, group):
    """psroi_pooling_layer.cu's forward kernel, thread by thread (float32, C's round)."""
    f = np.float32
    out = np.zeros((len(rois), dim, group, group), np.float32)
    height, width = x.shape[2:]
    for r, (n, *box) in enumerate(rois):
        x1, y1, x2, y2 = (f(np.sign(v) * np.floor(abs(float(v)) + 0.5)) for v in box)
        sw, sh = x1 * f(scale), y1 * f(scale)
        ew, eh = (x2 + f(1)) * f(scale), (y2 + f(1)) * f(scale)
        bw, bh = max(ew - sw, f(0.1)) / f(group), max(eh - sh, f(0.1)) / f(group)
        for d in range(dim):
            for i in range(group):
                for j in range(group):
                    hs = min(max(int(np.floor(f(i) * bh + sh)), 0), height)
                    he = min(max(int(np.ceil(f(i + 1) * bh + sh)), 0), height)
                    ws = min(max(int(np.floor(f(j) * bw + sw)), 0), width)
                    we = min(max(int(np.ceil(f(j + 1) * bw + sw)), 0), width)
                    if he <= hs or we <= ws:
                        continue
                    c = (d * group + i) * group + j
                    total = f(0)
                    for h in range(hs, he):
                        for w in range(ws, we):
                            total += x[int(n), c, h, w]
                    out[r, d, i, j] = total / f((he - hs) * (we - ws))
    return out


@pytest.mark.parametrize("scale", ["0.25", "0.0625", "1"])
def test_psroi_pooling_follows_caffes_kernel_in_both_back_ends(tmp_path, scale):
    path = tmp_path / "ps.prototxt"
    path.write_text(PS_NET % scale)
    net = read_prototxt(path)
    assert infer(net)[-1].tops == [(7, 2, 3, 3)]
    x = np.random.default_rng(0).standard_normal((2, 18, 12, 15)).astype(np.float32)
    rois = ROIS * (4 if scale == "1" else 1)
    rois[:, 0] = ROIS[:, 0]
    want = caffe_psroi_pooling(x, rois, float(scale), 2, 3)
    with torch.no_grad():
        got = to_torch(net)(torch.from_numpy(x), torch.from_numpy(rois)).numpy()
    assert np.abs(got - want).max() <= 1e-5
    for opset in range(13, 21):
        session = ort.InferenceSession(to_onnx(net, opset=opset).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        (onnx_got,) = session.run(None, {"data": x, "rois": rois})
        assert np.abs(onnx_got - want).max() <= 1e-5, opset


@pytest.mark.parametrize("name,channels,bound", [("roi_pooling", 4, 1e-6),
                                                ("psroi_pooling", 18, 1e-5)])
def test_region_pooling_matches_opencv(name, channels, bound):
    path = DATA / f"{name}.prototxt"
    net = read_prototxt(path)
    x = np.random.default_rng(0).standard_normal((2, channels, 12, 15)).astype(np.float32)
    with torch.no_grad():
        ours = to_torch(net)(torch.from_numpy(x), torch.from_numpy(ROIS)).numpy()
    top = net.layers[-1].top[0]
    ref = opencv_blobs(net, path, "", [x, ROIS], [top])[top]
    assert np.abs(ours - ref).max() <= bound
