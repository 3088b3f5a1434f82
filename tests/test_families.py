"""Model families beyond the 2016 release: ResNeXt and Wide ResNet in torchvision's layout,
pre-activation ResNet v2 in TF-slim's. Each generates, reads back, shape-infers, and runs
forward on the CPU through the PyTorch and ONNX translators (which agree); parameter counts are
torchvision's, or for v2 what slim's definition adds up to."""
import collections

import numpy as np
import pytest

from prototxt_gen import generate
from prototxt_gen.proto.caffe_pb2 import PoolingParameter
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.graph.shapes import count_params, infer
from prototxt_gen.layers.convolution import conv_geometry
from prototxt_gen.layers.common import spatial

from conftest import ZOO
from weights import random_weights

# torchvision.models' parameter counts (weights + biases + BatchNorm's affine parameters).
FAMILIES = {
    "resnet18_tv": 11_689_512,
    "resnet34_tv": 21_797_672,
    "resnet50_tv": 25_557_032,
    "resnet101_tv": 44_549_160,
    "resnet152_tv": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}


V2_UNITS = {"resnet50_v2": [3, 4, 6, 3], "resnet101_v2": [3, 4, 23, 3],
            "resnet152_v2": [3, 8, 36, 3], "resnet200_v2": [3, 24, 36, 3]}


@pytest.mark.parametrize("name", FAMILIES)
def test_parameter_counts_are_torchvisions(name):
    assert count_params(infer(generate(name))).learnable == FAMILIES[name]


def slim_v2_params(units):
    """Learnable values of TF-slim's resnet_v2 (1000 classes), added up from its definition:
    root conv with bias; per unit a pre-activation BatchNorm, a 1x1 conv shortcut with bias
    where the depth changes, conv1 and conv2 with BatchNorm, conv3 with bias; postnorm; logits."""
    total, c_in = 3 * 64 * 7 * 7 + 64, 64
    for base, n in zip((64, 128, 256, 512), units):
        depth = 4 * base
        for _ in range(n):
            total += 2 * c_in
            if c_in != depth:
                total += c_in * depth + depth
            total += c_in * base + 2 * base + base * base * 9 + 2 * base + base * depth + depth
            c_in = depth
    return total + 2 * 2048 + 2048 * 1000 + 1000


@pytest.mark.parametrize("name", V2_UNITS)
def test_resnet_v2_is_slims_layout(name):
    """Parameter count; stride on the last unit of blocks 1-3; every output shape what TF's
    SAME arithmetic gives (ceil(size / stride) at each stride) at 224 and 299."""
    net = generate(name)
    assert count_params(infer(net)).learnable == slim_v2_params(V2_UNITS[name])
    units = V2_UNITS[name]
    for size in (224, 299):
        shapes = {top: shape for s in infer(generate(name, (1, 3, size, size)))
                  for top, shape in zip(s.layer.top, s.tops)}  # by blob
        expect = -(-(-(-size // 2)) // 2)  # conv1 (conv2d_same /2), pool1 (SAME /2)
        assert shapes["pool1"][2:] == (expect, expect)
        for block, n in enumerate(units, start=1):
            first = shapes[f"block{block}/unit_1/bottleneck_v2/add"]
            assert first[2:] == (expect, expect)  # stride 1 on all but the last unit
            if block < 4:
                expect = -(-expect // 2)
            last = shapes[f"block{block}/unit_{n}/bottleneck_v2/add"]
            assert last[1:] == (256 * 2 ** (block - 1), expect, expect)
        assert shapes["postnorm"] == (1, 2048, expect, expect)
    layer = {l.name: l for l in net.layers}
    # Same depth: the shortcut is the input, subsampled by a 1x1 max pool where strided.
    pool = layer["block1/unit_3/bottleneck_v2/shortcut"]
    assert pool.type == "Pooling" and list(pool.bottom) == ["block1/unit_2/bottleneck_v2/add"]
    # Depth changes: a 1x1 conv on the pre-activated input.
    conv = layer["block2/unit_1/bottleneck_v2/shortcut"]
    assert conv.type == "Convolution" and list(conv.bottom) == ["block2/unit_1/bottleneck_v2/preact"]
    assert layer["conv1"].param.convolution_param.bias_term  # the root: no BatchNorm
    assert [l.type for l in net.layers[-6:]] == ["BatchNorm", "Scale", "ReLU", "Pooling",
                                                 "InnerProduct", "Softmax"]


@pytest.mark.parametrize("name", list(FAMILIES) + list(V2_UNITS))
def test_family_reads_back_and_runs_in_both_translators(tmp_path, name):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from prototxt_gen.backends.onnx import to_onnx
    from prototxt_gen.backends.pytorch import to_torch
    net = generate(name, input_shape=(2, 3, 64, 64))  # small: the weights are what is large
    path = tmp_path / "net.prototxt"
    path.write_text(net.to_prototxt())
    back = read_prototxt(path)
    assert [(l.name, l.type) for l in back.layers] == [(l.name, l.type) for l in net.layers]
    assert [s.tops for s in infer(back)] == [s.tops for s in infer(net)]
    random_weights(back)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = to_torch(back)(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(to_onnx(back).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"data": x})
    assert ref.shape == got.shape == (2, 1000)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert np.allclose(ref.sum(1), 1, atol=1e-5)  # softmax


def structure(net, sum_order=True):
    """The net's dataflow as a multiset of values, names aside: each value is identified by
    the layer type and geometry that computed it, its shape, its weight shapes and (by their
    identities) its inputs -- so two nets agree exactly when their graphs and shapes do,
    whatever the names and the order the layers are written in. With sum_order=False the
    inputs of a plain Eltwise SUM count as a set."""
    current = {b.name: ("input", tuple(b.shape)) for b in net.inputs}
    values = collections.Counter()
    for s in infer(net):
        layer = s.layer
        sig = (layer.type, tuple(map(tuple, s.tops)), tuple(map(tuple, s.blobs)),
               geometry(layer, s))
        inputs = tuple(current[b] for b in layer.bottom)
        ep = layer.param.eltwise_param
        if not sum_order and layer.type == "Eltwise" and ep.operation == ep.SUM and \
                not ep.coeff:
            inputs = tuple(sorted(inputs, key=repr))
        for k, top in enumerate(layer.top):
            current[top] = hash((sig, inputs, k))
            values[current[top]] += 1
    return values


def geometry(layer, s):
    p = layer.param
    if layer.type == "Convolution":
        return tuple(tuple(v) if isinstance(v, list) else v
                     for v in conv_geometry(p.convolution_param, s.bottoms[0]))
    if layer.type == "Pooling":
        pp = p.pooling_param
        if pp.global_pooling:
            return (pp.pool, "global")
        return (pp.pool, pp.round_mode,
                tuple(spatial(pp, 2, "kernel_size", "kernel_h", "kernel_w", None)),
                tuple(spatial(pp, 2, "stride", "stride_h", "stride_w", 1)),
                tuple(spatial(pp, 2, "pad", "pad_h", "pad_w", 0)))
    if layer.type == "BatchNorm":
        return (p.batch_norm_param.use_global_stats, p.batch_norm_param.eps)
    if layer.type == "Scale":
        return (p.scale_param.axis, p.scale_param.num_axes, p.scale_param.bias_term)
    if layer.type == "Eltwise":
        return (p.eltwise_param.operation, tuple(p.eltwise_param.coeff))
    return ()


def test_resnext50_matches_the_zoos_resnext50_layer_for_layer():
    """soeaver's ResNeXt-50 (a Caffe release of the same network) and ours: the same graph,
    shapes, weight shapes, convolution and pooling geometry (torchvision's floor-rounded max
    pool with pad 1 included), whatever the names and the order the branches are written in;
    one Eltwise lists its two inputs the other way round (documented below)."""
    ours = generate("resnext50_32x4d")
    theirs = read_prototxt(ZOO / "soeaver_resnext50-32x4d.prototxt")
    assert len(ours.layers) == len(theirs.layers) == 228
    assert structure(ours, sum_order=False) == structure(theirs, sum_order=False)
    # The one difference: soeaver's resx8 (our res4a) adds [residual, shortcut] where every
    # other unit, theirs and ours, adds [shortcut, residual]. A sum of two values does not
    # depend on their order (IEEE addition is commutative), so the nets compute the same.
    swapped = [l.name for l in theirs.layers if l.type == "Eltwise"
               and l.bottom[0].endswith("_conv3")]
    assert swapped == ["resx8_elewise"]
    assert structure(ours) != structure(theirs)
    pool1 = ours.layer("pool1").param.pooling_param
    assert (pool1.pad, pool1.round_mode) == (1, PoolingParameter.FLOOR)


# -- options across families ----------------------------------------------------------------------

def tops(net):
    return {top: shape for s in infer(net) for top, shape in zip(s.layer.top, s.tops)}


def dilation(net, name):
    return list(net.layer(name).param.convolution_param.dilation) or [1]


def test_output_stride_turns_strides_into_dilation():
    """As TF-slim's resnets: once the stride is reached, the unit that would stride keeps the
    current rate and the rate multiplies after it; parameters are unchanged."""
    plain = generate("resnet50")
    os16 = generate("resnet50", output_stride=16)
    assert tops(os16)["res5c"] == (1, 2048, 14, 14)
    assert dilation(os16, "res5a_branch2b") == [1] and dilation(os16, "res5b_branch2b") == [2]
    assert os16.layer("res5a_branch1").param.convolution_param.stride == [1]
    assert count_params(infer(os16)) == count_params(infer(plain))
    os8 = generate("resnet50", output_stride=8)
    assert tops(os8)["res5c"] == (1, 2048, 28, 28)
    assert dilation(os8, "res4b_branch2b") == [2] and dilation(os8, "res5b_branch2b") == [4]
    assert tops(generate("resnet50", output_stride=32)) == tops(plain)
    v2 = generate("resnet50_v2", output_stride=8)
    assert tops(v2)["postnorm"] == (1, 2048, 28, 28)
    # Unstrided, the identity shortcuts need no subsampling pool.
    assert not any(l.type == "Pooling" and "shortcut" in l.name for l in v2.layers
                   if l.name.startswith(("block2", "block3")))
    assert dilation(v2, "block4/unit_1/bottleneck_v2/conv2") == [4]


def test_dense_predictions_and_features_only():
    dense = generate("resnet50", global_pool=False)
    last = dense.layers[-2:]
    assert [l.type for l in last] == ["Convolution", "Softmax"]
    assert tops(dense)["prob"] == (1, 1000, 7, 7)
    features = generate("resnet101_v2", output_stride=16, features_only=True)
    assert features.layers[-1].name == "block4/unit_3/bottleneck_v2/add"
    assert tops(features)["block4/unit_3/bottleneck_v2/add"] == (1, 2048, 14, 14)
    assert not any(l.type in ("InnerProduct", "Softmax") for l in features.layers)


def test_a_dilated_net_runs_in_both_translators():
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from prototxt_gen.backends.onnx import to_onnx
    from prototxt_gen.backends.pytorch import to_torch
    net = random_weights(generate("resnet50_v2", (1, 3, 64, 64), output_stride=8,
                                  global_pool=False))
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = to_torch(net)(torch.from_numpy(x)).numpy()
    (got,) = ort.InferenceSession(to_onnx(net).SerializeToString(),
                                  providers=["CPUExecutionProvider"]).run(None, {"data": x})
    assert ref.shape == got.shape == (1, 1000, 8, 8)
    assert np.abs(got - ref).max() <= 1e-4


def test_option_errors():
    from conftest import assert_error, run_cli
    assert_error(run_cli("resnet50", "--output-stride", "12"),
                 "output stride 12 cannot be reached (the network's is 32)")
    assert_error(run_cli("resnet50", "--output-stride", "2"),
                 "output stride 2: the stem alone has stride 4")
    assert_error(run_cli("resnet50", "--features-only", "--num-classes", "10"),
                 "--features-only has no classifier: leave out --num-classes")
    r = run_cli("inception_resnet_v1", "--output-stride", "8")
    assert r.returncode == 2 and r.stderr.endswith(
        "inception_resnet_v1.toml: output stride: the stem or blocks of this network fix "
        "their strides (it works for the ResNet families)\n")
    r = run_cli("resnet152_v2", "--output-stride", "16", "--features-only")
    assert r.returncode == 0 and "logits" not in r.stdout and "dilation: 2" in r.stdout


# -- Inception-ResNet-v1 (FaceNet) -------------------------------------------------------------------

def tf_valid(n, k, s):
    return (n - k) // s + 1


@pytest.mark.parametrize("size", [160, 299])
def test_inception_resnet_v1_shapes_are_tensorflows(size):
    """Every grid size is TF's VALID arithmetic (SAME at stride 1 keeps the size), computed
    here from FaceNet's layer list."""
    net = generate("inception_resnet_v1", (1, 3, size, size))
    got = tops(net)
    n = tf_valid(size, 3, 2)                       # Conv2d_1a_3x3, VALID /2
    assert got["Conv2d_1a_3x3"] == (1, 32, n, n)
    n = tf_valid(n, 3, 1)                          # Conv2d_2a_3x3, VALID
    assert got["Conv2d_2a_3x3"] == got["Conv2d_2b_3x3"][:1] + (32, n, n)
    assert got["Conv2d_2b_3x3"] == (1, 64, n, n)   # SAME
    n = tf_valid(n, 3, 2)                          # MaxPool_3a_3x3, VALID /2
    assert got["MaxPool_3a_3x3"] == (1, 64, n, n) and got["Conv2d_3b_1x1"] == (1, 80, n, n)
    n = tf_valid(n, 3, 1)
    assert got["Conv2d_4a_3x3"] == (1, 192, n, n)
    n = tf_valid(n, 3, 2)
    assert got["Conv2d_4b_3x3"] == (1, 256, n, n)
    assert all(got[f"Repeat/block35_{k}"] == (1, 256, n, n) for k in range(1, 6))
    n = tf_valid(n, 3, 2)
    assert got["Mixed_6a"] == (1, 384 + 256 + 256, n, n)
    assert all(got[f"Repeat_1/block17_{k}"] == (1, 896, n, n) for k in range(1, 11))
    n = tf_valid(n, 3, 2)
    assert got["Mixed_7a"] == (1, 384 + 256 + 256 + 896, n, n)
    assert got["Block8"] == (1, 1792, n, n)
    assert got["Bottleneck"] == (1, 128)
    assert {160: 3, 299: 8}[size] == n


def test_inception_resnet_v1_layers():
    net = generate("inception_resnet_v1")
    layer = {l.name: l for l in net.layers}
    # Scaled residuals: input + scale * branch, as Eltwise SUM with coefficients.
    for name, scale in (("Repeat/block35_3", 0.17), ("Repeat_1/block17_10", 0.10),
                        ("Repeat_2/block8_5", 0.20), ("Block8", 1.0)):
        assert list(layer[name].param.eltwise_param.coeff) == pytest.approx([1.0, scale])
    assert "Repeat_2/block8_5/Relu" in layer and "Block8/Relu" not in layer
    cp = layer["Repeat_1/block17_1/Branch_1/Conv2d_0b_1x7"].param.convolution_param
    assert (cp.kernel_h, cp.kernel_w, cp.pad_h, cp.pad_w) == (1, 7, 0, 3)
    # Nothing is left to Caffe's ceil default: every pooling rounds down explicitly.
    pools = [l for l in net.layers if l.type == "Pooling"]
    assert pools and all(l.param.pooling_param.HasField("round_mode") and
                         l.param.pooling_param.round_mode == PoolingParameter.FLOOR for l in pools)
    # slim's batch norm without gamma: BatchNorm (eps 0.001) + Bias.
    bn = layer["Conv2d_1a_3x3/BatchNorm"].param.batch_norm_param
    assert bn.eps == pytest.approx(0.001)
    assert layer["Conv2d_1a_3x3/BatchNorm/beta"].type == "Bias"
    assert count_params(infer(net)).learnable == 22_779_312


def test_inception_resnet_v1_runs_in_both_translators(tmp_path):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from prototxt_gen.backends.onnx import to_onnx
    from prototxt_gen.backends.pytorch import to_torch
    net = generate("inception_resnet_v1", (2, 3, 160, 160))
    path = tmp_path / "irv1.prototxt"
    path.write_text(net.to_prototxt())
    back = random_weights(read_prototxt(path))
    x = np.random.default_rng(0).standard_normal((2, 3, 160, 160)).astype(np.float32)
    with torch.no_grad():
        ref = to_torch(back)(torch.from_numpy(x)).numpy()
    (got,) = ort.InferenceSession(to_onnx(back).SerializeToString(),
                                  providers=["CPUExecutionProvider"]).run(None, {"data": x})
    assert ref.shape == got.shape == (2, 128)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
