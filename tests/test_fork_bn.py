"""The forks' BN layer -- yjxiong's (TSN), PSPNet's released files and SegNet's -- in both back
ends against a NumPy reading of each fork's bn_layer.cpp (numpy_ref.fork_bn), in every ONNX
opset 13-20, and its weights back to a .caffemodel."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from prototxt_gen import load_weights, write_caffemodel
from prototxt_gen.backends.onnx import to_onnx
from prototxt_gen.backends.pytorch import state_to_blobs, to_torch
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.graph.shapes import infer
from prototxt_gen.layers.normalization import bn_form

import numpy_ref
from conftest import assert_last_error, run_cli

NET = '''name: "bn"
input: "data" input_shape { dim: 2 dim: 5 dim: 6 dim: 7 }
layer { name: "bn" type: "BN" bottom: "data" top: "bn" bn_param { %s } }
'''
F = np.float32

# bn_param -> (form, eps, blobs): each fork's own fields, as its files write them
FORMS = {
    "yjxiong": ('slope_filler { type: "constant" value: 1 } frozen: true momentum: 0.95',
                ("moving statistics", 1e-5, 4)),
    "yjxiong_eps": ("eps: 0.001", ("moving statistics", 1e-3, 4)),
    "pspnet": ('scale_filler { type: "constant" value: 1 } moving_average: true decay: 0.05',
               ("moving statistics", 1e-10, 4)),
    "pspnet_batch": ("var_eps: 0.0001 decay: 0.05", ("batch statistics", 1e-4, 4)),
    "segnet_inference": ("bn_mode: INFERENCE", ("scale and shift", 0.0, 2)),
    "segnet_learn": ('scale_filler { type: "constant" value: 1 } shift_filler { value: 0 }',
                     ("batch statistics", 1e-9, 2)),
}


def bn_net(tmp_path, fields):
    path = tmp_path / "bn.prototxt"
    path.write_text(NET % fields)
    return path, read_prototxt(path)


def with_blobs(net, seed=0):
    rng = np.random.default_rng(seed)
    s = infer(net)[-1]
    blobs = [(rng.standard_normal(shape) * 0.3 + [1, 0, 0.2, 1.5][k]).astype(F)
             for k, shape in enumerate(s.blobs)]
    if len(blobs) == 4:
        blobs[3] = np.abs(blobs[3]) + F(0.1)  # a variance
    net.layer("bn").blobs = blobs
    return blobs


@pytest.mark.parametrize("name", FORMS)
def test_each_fork_in_both_back_ends_and_every_opset(tmp_path, name):
    fields, (form, eps, count) = FORMS[name]
    path, net = bn_net(tmp_path, fields)
    got_form, got_eps, got_count = bn_form(net.layer("bn"))
    assert (got_form, got_count) == (form, count) and got_eps == pytest.approx(eps)
    assert infer(net)[-1].blobs == [(1, 5, 1, 1)] * count
    with_blobs(net)
    x = np.random.default_rng(1).standard_normal((2, 5, 6, 7)).astype(F) * F(2) + F(0.5)
    (want,) = numpy_ref.REF["BN"](net.layer("bn"), x)
    with torch.no_grad():
        got = to_torch(net)(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 2e-5 * max(1.0, float(np.abs(want).max()))
    for opset in range(13, 21):
        session = ort.InferenceSession(to_onnx(net, opset=opset).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        (onnx_got,) = session.run(None, {"data": x})
        assert np.abs(onnx_got - want).max() <= 2e-5 * max(1.0, float(np.abs(want).max())), \
            opset


@pytest.mark.parametrize("name", ["yjxiong", "segnet_inference"])
def test_weights_go_back_to_a_caffemodel_in_caffes_layout(tmp_path, name):
    path, net = bn_net(tmp_path, FORMS[name][0])
    blobs = with_blobs(net, seed=3)
    state = to_torch(net).state_dict()
    _, fresh = bn_net(tmp_path, FORMS[name][0])
    write_caffemodel(state_to_blobs(fresh, state), tmp_path / "bn.caffemodel")
    _, again = bn_net(tmp_path, FORMS[name][0])
    load_weights(again, tmp_path / "bn.caffemodel", strict=True)
    got = again.layer("bn").blobs
    assert [b.shape for b in got] == [(1, 5, 1, 1)] * len(blobs)
    assert all(np.array_equal(a, b) for a, b in zip(got, blobs))


def test_info_render_and_a_clear_error(tmp_path):
    path, _ = bn_net(tmp_path, FORMS["pspnet"][0])
    r = run_cli("info", path)
    assert r.returncode == 0 and "BN " in r.stdout, r.stderr
    r = run_cli("render", path, "-o", tmp_path / "bn.dot")
    assert r.returncode == 0, r.stderr
    bad, _ = bn_net(tmp_path, "bn_mode: TRAIN")
    r = run_cli("info", bad)
    assert r.returncode == 2
    assert_last_error(r, f"{bad}: layer 'bn' (BN): bn_param.bn_mode must be LEARN or "
                         "INFERENCE, not 'TRAIN' (input 2×5×6×7)")
