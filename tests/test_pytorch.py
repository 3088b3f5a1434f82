"""The PyTorch translator gives Caffe's numbers.

References: OpenCV's Caffe importer (an independent implementation) reading the same prototxt and
the caffemodel our writer made, compared blob by blob; where OpenCV lacks a layer (Bias,
Tile...) or departs from Caffe (Axpy, within-channel LRN), the NumPy reading of Caffe's loops in
numpy_ref.py. Weights are random (tests/weights.py: BatchNorm scale factor 2, positive variances).
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from prototxt_gen import generate
from prototxt_gen.caffe.caffemodel import read_caffemodel
from prototxt_gen.caffe.weights import load_weights, write_caffemodel
from prototxt_gen.errors import NetError
from prototxt_gen.graph.net import Net
from prototxt_gen.backends.pytorch import (
    converter, sanitize, state_to_blobs, to_source, to_torch)
from prototxt_gen.caffe.reader import read_prototxt

from conftest import DATA, ZOO, assert_error, run_cli
from numpy_ref import check_layers
from reference import (GENERATED, GENERATED_IDS, assert_close_to, bound, inputs_for, opencv_blobs,
                       rewrite_axpy, with_weights)
from weights import random_weights


def compare_with_opencv(net, prototxt, weights, model, skip=()):
    """Every blob's final value in our module equals OpenCV's output of the layer that wrote it
    last (OpenCV's layer fusion off, so each layer's output exists). Returns the blob count."""
    xs = inputs_for(net)
    with torch.no_grad():
        ours = {k: v.numpy() for k, v in model.blobs(*map(torch.from_numpy, xs)).items()}
    refs = opencv_blobs(net, prototxt, weights, xs, [b for b in ours if b not in skip])
    return assert_close_to(refs, ours)


def run(model, net, xs=None):
    xs = inputs_for(net) if xs is None else xs
    with torch.no_grad():
        out = model(*map(torch.from_numpy, xs))
    return out.numpy() if isinstance(out, torch.Tensor) else [o.numpy() for o in out]


# -- against OpenCV: the zoo, generated nets ---------------------------------------------------------

ZOO_FOR_OPENCV = sorted(p.name for p in ZOO.glob("*.prototxt") if p.name != "SE-ResNet-50.prototxt")


@pytest.mark.parametrize("name", ZOO_FOR_OPENCV)
def test_zoo_matches_opencv_blob_by_blob(tmp_path, name):
    net, prototxt, weights = with_weights(tmp_path, ZOO / name)
    model = to_torch(net)
    assert compare_with_opencv(net, prototxt, weights, model) >= 7
    fused = to_torch(net, fuse=True)
    ref, got = run(model, net), run(fused, net)
    assert np.abs(got - ref).max() <= bound(ref)



@pytest.mark.parametrize("model_name,shape", GENERATED, ids=GENERATED_IDS)
def test_generated_resnets_match_opencv(tmp_path, model_name, shape):
    net, prototxt, weights = with_weights(tmp_path, generate(model_name, input_shape=shape))
    model = to_torch(net)
    assert compare_with_opencv(net, prototxt, weights, model) > 10
    ref, got = run(model, net), run(to_torch(net, fuse=True), net)
    assert np.abs(got - ref).max() <= bound(ref)


def test_se_resnet_matches_opencv_with_axpy_rewritten(tmp_path):
    """OpenCV's Axpy computes a·y + x, not SENet's a·x + y, so it runs the same net with each
    Axpy(a, x, y) spelled in other layers -- Flatten(a), Scale(x, a, axis 0), Eltwise SUM(., y)
    -- while our module runs SENet's own Axpy; every blob the two nets share agrees. The Axpy layers themselves are checked
    against NumPy (a * x + y)."""
    net, _, weights = with_weights(tmp_path, ZOO / "SE-ResNet-50.prototxt")
    prototxt = rewrite_axpy(net, tmp_path / "se_rewritten.prototxt")
    model = to_torch(net)
    assert compare_with_opencv(net, prototxt, weights, model) > 100
    xs = [torch.from_numpy(x) for x in inputs_for(net)]
    with torch.no_grad():
        assert len(check_layers(model, net, xs, types={"Axpy"})) == 16
    ref, got = run(model, net), run(to_torch(net, fuse=True), net)
    assert np.abs(got - ref).max() <= bound(ref)


def test_shapes_zoo_matches_opencv_and_caffe_arithmetic(tmp_path):
    """Slice, Crop, Permute, Reshape 0/-1, IP axis 2, grouped Deconvolution, kernel_h/w with
    dilation, global and clipped pooling... agree with OpenCV. OpenCV's within-channel LRN
    departs from Caffe's (a zero-padded AVE pool of x² counted as size², then Power with shift
    1), so that layer and the ones after it are checked against the NumPy reading of Caffe."""
    net, prototxt, weights = with_weights(tmp_path, DATA / "shapes_zoo.prototxt")
    model = to_torch(net)
    after_lrn = {t for layer in net.layers[[l.name for l in net.layers].index("lrn"):]
                 for t in layer.top}
    assert compare_with_opencv(net, prototxt, weights, model, skip=after_lrn) > 15
    xs = [torch.from_numpy(x) for x in inputs_for(net)]
    with torch.no_grad():
        checked = check_layers(model, net, xs)
    assert {"lrn", "mvn", "scale2", "power", "prod", "softmax"} <= set(checked)


def test_layer_arithmetic_matches_numpy_reference():
    """Pooling paths torch has no native form for (padding over half the kernel, stochastic),
    floor/ceil/clip, LRN both ways, MVN, Bias and Scale with a given factor, Eltwise
    coeff/MAX/PROD, Power/Exp/Log with base, shift and scale, Threshold, Clip, Swish, ELU,
    BNLL, shared PReLU, Reduction, Tile, Softmax on axis 2, Axpy, BatchNorm's scale factor."""
    net = random_weights(read_prototxt(DATA / "layers_zoo.prototxt"))
    model = to_torch(net)
    xs = [torch.from_numpy(x) for x in inputs_for(net, seed=3)]
    with torch.no_grad():
        checked = check_layers(model, net, xs)
    unchecked = {layer.name for layer in net.layers} - set(checked)
    assert unchecked == {"gmax_flat", "relu"}
    # The weird pooling layers really take the non-native path.
    assert type(model.pool_ave_bigpad).__name__ == "CaffePool2d"
    assert type(model.pool_sto).__name__ == "CaffePool2d"
    assert type(model.pool_ceil_pad).__name__ == "AvgPool2d"


def test_fork_and_rare_layers_match_numpy_reference():
    """SSD's Normalize, ShuffleChannel, ReLU6, ArgMax (on an axis, over each item, values),
    Parameter, Split, Silence, Sigmoid, TanH."""
    net = random_weights(read_prototxt(DATA / "fork_layers.prototxt"))
    model = to_torch(net)
    xs = [torch.from_numpy(x) for x in inputs_for(net, seed=4)]
    with torch.no_grad():
        checked = check_layers(model, net, xs)
    assert set(checked) == {layer.name for layer in net.layers}


# -- Caffe's execution order and in-place layers ------------------------------------------------------

def in_place_net():
    net = Net("in_place")
    net.add_input("data", (1, 2, 5, 5))
    net.add_layer("Convolution", "c", "data", convolution_param=dict(num_output=3, kernel_size=3))
    net.add_layer("Power", "c_neg", "c", power_param=dict(scale=-1))   # reads c before ReLU
    net.add_layer("ReLU", "relu", "c", "c")                             # rewrites c
    net.add_layer("Eltwise", "sum", ["c", "c_neg"])                     # relu(c) - c
    return random_weights(net)


def test_in_place_layers_follow_caffes_order(tmp_path):
    net = in_place_net()
    model = to_torch(net)
    x = torch.from_numpy(inputs_for(net)[0])
    with torch.no_grad():
        by_layer = model.layer_outputs(x)
        conv = by_layer["c"][0]
        assert torch.equal(model(x), torch.relu(conv) - conv)
        assert torch.equal(model.blobs(x, names=["c"])["c"], torch.relu(conv))
    assert model.output_names == ("sum",)
    _, prototxt, weights = with_weights(tmp_path, in_place_net())
    assert compare_with_opencv(net, prototxt, weights, model) == 3


def test_outputs_follow_caffes_order_and_blobs_can_be_asked_for():
    """Unconsumed blobs are the outputs, sorted by name as Caffe's std::set gives them."""
    net = Net("two_heads")
    net.add_input("data", (1, 4))
    net.add_layer("InnerProduct", "z_head", "data", inner_product_param=dict(num_output=2))
    net.add_layer("InnerProduct", "a_head", "data", inner_product_param=dict(num_output=3))
    model = to_torch(random_weights(net))
    assert model.output_names == ("a_head", "z_head")
    a, z = model(torch.ones(1, 4))
    assert (a.shape, z.shape) == ((1, 3), (1, 2))
    with pytest.raises(KeyError, match="'nope'"):
        model.blobs(torch.ones(1, 4), names=["nope"])


# -- module properties -----------------------------------------------------------------------------

def test_module_structure_names_and_zero_copy_weights(tmp_path):
    net, _, _ = with_weights(tmp_path, ZOO / "mobilenet_v1.prototxt")
    model = to_torch(net)
    assert model.caffe_names["conv2_1_dw"] == "conv2_1/dw"
    assert sanitize("conv2_1/dw") == "conv2_1_dw" and sanitize("3x3") == "l_3x3"
    conv = net.layer("conv2_1/dw")
    # The module's weight is the numpy buffer load_weights filled: no copy.
    assert model.conv2_1_dw.weight.data_ptr() == conv.blobs[0].ctypes.data
    assert not model.training
    # Learnable parameters as pinned in test_reader (BatchNorm statistics are buffers).
    assert sum(p.numel() for p in model.parameters()) == 4_231_976


def test_fused_module_folds_batchnorm(tmp_path):
    net, _, _ = with_weights(tmp_path, ZOO / "cvjena_resnet10_preact.prototxt")
    fused = to_torch(net, fuse=True)
    kinds = [type(m).__name__ for m in fused.children()]
    assert "Scale" not in kinds
    # Pre-activation BatchNorm + Scale pairs have no convolution before them: one BatchNorm2d.
    assert kinds.count("BatchNorm2d") == 5
    plain = to_torch(net)
    assert [type(m).__name__ for m in plain.children()].count("BatchNorm2d") == 10
    ref, got = run(plain, net), run(fused, net)
    assert np.abs(got - ref).max() <= bound(ref)


def test_channels_last_half_and_compile():
    net = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    model = to_torch(net)
    x = torch.from_numpy(inputs_for(net)[0])
    with torch.no_grad():
        ref = model(x)
        last = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        assert (last - ref).abs().max() <= 1e-5
        bf16 = to_torch(net).to(torch.bfloat16)(x.to(torch.bfloat16)).float()
        assert (bf16 - ref).abs().max() <= 2e-2
        compiled = torch.compile(to_torch(net))(x)
        assert (compiled - ref).abs().max() <= 1e-5


# -- exports --------------------------------------------------------------------------------------

def run_standalone(directory, module_file, class_name, weights_file, x_file):
    """Import the exported .py in a fresh interpreter where prototxt_gen cannot be imported."""
    code = f"""
import sys
sys.modules["prototxt_gen"] = None
import importlib.util, numpy as np, torch
spec = importlib.util.spec_from_file_location("exported", {str(module_file)!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
model = mod.{class_name}()
model.load_state_dict(torch.load({str(weights_file)!r}))
model.eval()
with torch.no_grad():
    out = model(torch.from_numpy(np.load({str(x_file)!r})))
np.save({str(directory / 'out.npy')!r}, (out if isinstance(out, torch.Tensor) else out[0]).numpy())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=directory, timeout=300)
    assert result.returncode == 0, result.stderr
    return np.load(directory / "out.npy")


@pytest.mark.parametrize("source,fuse", [
    (ZOO / "densenet_121.prototxt", False),
    (ZOO / "soeaver_inception-v3.prototxt", True),
    (DATA / "layers_zoo.prototxt", False),   # every helper class gets embedded
])
def test_source_export_matches_runtime_module(tmp_path, source, fuse):
    from prototxt_gen.backends.pytorch import save_python
    net, _, _ = with_weights(tmp_path, source)
    py, pth = save_python(net, tmp_path / "exported.py", fuse=fuse)
    x = inputs_for(net)[0]
    np.save(tmp_path / "x.npy", x)
    model = to_torch(net, fuse=fuse)
    got = run_standalone(tmp_path, py, type(model).__name__, pth, tmp_path / "x.npy")
    ref = run(model, net, [x])
    ref = ref if isinstance(ref, np.ndarray) else ref[0]
    assert np.abs(got - ref).max() <= bound(ref)
    text = (tmp_path / "exported.py").read_text()
    assert "prototxt_gen" not in text.split('"""', 2)[2]  # imports torch only
    compile(text, "exported.py", "exec")


def test_caffemodel_export_and_reimport(tmp_path):
    """Module -> state_dict -> caffemodel -> a fresh module: the same outputs."""
    net, prototxt, _ = with_weights(tmp_path, ZOO / "soeaver_resnext50-32x4d.prototxt")
    model = to_torch(net)
    state = {k: v.clone() * 1.5 if k.endswith("weight") else v.clone()
             for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    fresh = read_prototxt(prototxt)
    state_to_blobs(fresh, state)
    write_caffemodel(fresh, tmp_path / "back.caffemodel")
    again = read_prototxt(prototxt)
    load_weights(again, tmp_path / "back.caffemodel", strict=True)
    ref, got = run(model, net), run(to_torch(again), again)
    assert np.abs(got - ref).max() <= bound(ref)
    # BatchNorm's statistics come back divided by the scale factor, the factor being 1.
    bn = again.layer("conv1_bn")
    assert bn.blobs[2].tolist() == [1.0]


def test_unsupported_layers_are_listed_up_front():
    net = read_prototxt(ZOO / "lenet.prototxt")
    net.add_layer("SoftmaxWithLoss", "loss", ["ip2", "data"])  # data stands in for labels
    net.add_layer("Accuracy", "acc", ["ip2", "data"])
    net.add_layer("Eltwise", "both", ["loss", "acc"])  # read on: not left out for inference
    with pytest.raises(NetError) as err:
        to_torch(net)
    message = str(err.value)
    assert "\n" not in message
    assert "2 layer(s) have no PyTorch implementation: 'loss' (SoftmaxWithLoss), 'acc' " \
           "(Accuracy)" in message
    assert "@prototxt_gen.backends.pytorch.converter('Accuracy', 'SoftmaxWithLoss')" in message


def test_a_registered_converter_translates_a_fork_layer():
    from prototxt_gen.graph import shapes
    from prototxt_gen.backends.pytorch import CONVERTERS

    @shapes.rule("DoubleIt")
    def _rule(layer, bottoms):
        return [bottoms[0]], []

    @converter("DoubleIt")
    def _double(b):
        b.emit("2 * {0}")

    try:
        net = Net("fork")
        net.add_input("data", (1, 3))
        net.add_layer("DoubleIt", "twice", "data")
        assert torch.equal(to_torch(net)(torch.ones(1, 3)), torch.full((1, 3), 2.0))
        assert "twice = 2 * data" in to_source(net)
    finally:
        del CONVERTERS["DoubleIt"], shapes.RULES["DoubleIt"]


# -- CLI ------------------------------------------------------------------------------------------

def test_cli_convert_round_trip(tmp_path):
    net, prototxt, weights = with_weights(tmp_path, ZOO / "squeezenet_v1.1.prototxt")
    r = run_cli("convert", prototxt, "--weights", weights, "--to", "python",
                "-o", tmp_path / "sq.py", "--class-name", "SqueezeNet")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = run_cli("convert", prototxt, "--state-dict", tmp_path / "sq.pth", "--to", "caffemodel",
                "-o", tmp_path / "back.caffemodel")
    assert r.returncode == 0, r.stderr
    back = read_caffemodel(tmp_path / "back.caffemodel").weights()
    orig = read_caffemodel(weights).weights()
    assert set(back) == set(orig)
    assert all(np.array_equal(a, b) for a, b in zip(back["conv1"], orig["conv1"]))
    r = run_cli("convert", prototxt, "--weights", weights, "--to", "pytorch", "--fuse",
                "-o", tmp_path / "sq.pt2")
    assert r.returncode == 0, r.stderr
    program = torch.export.load(tmp_path / "sq.pt2").module()
    x = torch.from_numpy(np.concatenate(inputs_for(net) * 3))  # batch 3: the batch is dynamic
    with torch.no_grad():
        ref = to_torch(net)(x)
        assert (program(x) - ref).abs().max() <= 1e-4


def test_cli_convert_errors(tmp_path):
    net, prototxt, weights = with_weights(tmp_path, ZOO / "lenet.prototxt")
    out = tmp_path / "out.py"
    assert_error(run_cli("convert", prototxt, "--weights", tmp_path / "nope.caffemodel",
                         "--to", "python", "-o", out),
                 f"{tmp_path / 'nope.caffemodel'}: no such weights file")
    other = tmp_path / "other.caffemodel"
    write_caffemodel(in_place_net(), other)  # none of its layers is in LeNet
    assert_error(run_cli("convert", prototxt, "--weights", other, "--to", "python", "-o", out),
                 f"{other}: no weights for layer(s) 'conv1', 'conv2', 'ip1', 'ip2'")
    assert_error(run_cli("convert", prototxt, "--weights", weights, "--to", "caffemodel",
                         "--fuse", "-o", tmp_path / "x.caffemodel"),
                 "--fuse changes the layers, so it cannot write weights for the prototxt; "
                 "leave it out with --to caffemodel")
    assert_error(run_cli("convert", prototxt, "--state-dict", weights, "--to", "caffemodel",
                         "-o", tmp_path / "x.caffemodel"),
                 f"{weights}: not a file saved by torch.save")
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    assert_error(run_cli("convert", prototxt, "--state-dict", tmp_path / "bad.pth",
                         "--to", "caffemodel", "-o", tmp_path / "x.caffemodel"),
                 f"{prototxt}: state_dict entry 'conv1.weight' has 3 values, layer 'conv1' "
                 "blob 0 needs shape 20×1×5×5")
    pth = tmp_path / "model.pth"
    torch.save(to_torch(net).state_dict(), pth)
    assert_error(run_cli("convert", prototxt, "--weights", pth, "--to", "python", "-o", out),
                 f"{pth}: a zip archive (a PyTorch .pth/.pt file?), not a Caffe model")
    assert not out.exists() and not (tmp_path / "x.caffemodel").exists()
    r = run_cli("convert", prototxt, "--to", "python", "-o", out)
    assert r.returncode == 0
    assert r.stderr == ("prototxt-gen: warning: no --weights given: the module keeps PyTorch's "
                        "initial weights\n")
