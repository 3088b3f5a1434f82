"""The ONNX translator gives Caffe's numbers, in files runtimes accept.

References: OpenCV's Caffe importer (an independent implementation) on the same prototxt and the
caffemodel our writer made, compared blob by blob with onnxruntime (CPUExecutionProvider) running
our model; where OpenCV lacks a layer (Bias, Tile...) or departs from Caffe (Axpy, within-channel
LRN), the NumPy reading of Caffe's loops in numpy_ref.py. Every model built here passes
onnx.checker's full check (strict shape inference) before it is returned.
"""
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from prototxt_gen import generate
from prototxt_gen.errors import NetError
from prototxt_gen.graph.net import Net
from prototxt_gen.backends.onnx import (IR_VERSION, OPSETS, converter, save_onnx, to_onnx, translate,
                               Unsupported)
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.graph.shapes import infer

from conftest import DATA, ZOO, assert_error, run_cli
from numpy_ref import check_values
from reference import (GENERATED, GENERATED_IDS, assert_close_to, bound, inputs_for,
                       last_writers, opencv_blobs, rewrite_axpy, with_weights)
from weights import random_weights


def session(model):
    """An onnxruntime CPU session for a ModelProto, its bytes or a file path."""
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                providers=["CPUExecutionProvider"])


def run(model, xs, names=None):
    """{output name: array} for the model (or a session of it, to run it again without making
    one anew) run on inputs xs (in the graph's input order)."""
    s = model if isinstance(model, ort.InferenceSession) else session(model)
    feed = {i.name: x for i, x in zip(s.get_inputs(), xs)}
    outs = s.run(names, feed)
    return dict(zip(names or [o.name for o in s.get_outputs()], outs))


def blobs_vs_opencv(net, prototxt, weights, xs=None, skip=(), **kwargs):
    """Our model, with every blob's final value made an output, against OpenCV's output of
    the layer that wrote the blob last. Returns the number of blobs compared."""
    xs = inputs_for(net) if xs is None else xs
    last = last_writers(net)
    blobs = [b for b in sorted(last) if b not in skip]
    t = translate(net, outputs=blobs, **kwargs)
    ours = run(t.model, xs)
    refs = opencv_blobs(net, prototxt, weights, xs, blobs)
    return assert_close_to(refs, ours)


def outputs_vs_opencv(model, net, prototxt, weights, xs):
    """The model's outputs (Caffe's: the unconsumed blobs) against OpenCV's."""
    ours = run(model, xs)
    refs = opencv_blobs(net, prototxt, weights, xs, list(ours))
    assert list(refs) == list(ours)
    assert_close_to(refs, ours, "output")


def layer_values(net, xs, **kwargs):
    """Each layer's own tops (values before in-place layers overwrite them), from a model
    that outputs every value."""
    t = translate(net, outputs="all", **kwargs)
    outs = run(t.model, xs)
    inputs = dict(zip(t.inputs, xs))
    tops = {name: [outs.get(v, inputs.get(v)) for v in vs] for name, vs in t.values.items()}
    return inputs, tops


# -- against OpenCV: the zoo, generated nets ---------------------------------------------------------

ZOO_FOR_OPENCV = sorted(p.name for p in ZOO.glob("*.prototxt") if p.name != "SE-ResNet-50.prototxt")


@pytest.mark.parametrize("name", ZOO_FOR_OPENCV)
def test_zoo_matches_opencv_blob_by_blob(tmp_path, name):
    net, prototxt, weights = with_weights(tmp_path, ZOO / name)
    assert blobs_vs_opencv(net, prototxt, weights) >= 7
    xs = inputs_for(net)
    model = session(to_onnx(net))  # run four times below
    outputs_vs_opencv(model, net, prototxt, weights, xs)
    fused = run(to_onnx(net, fuse=True), xs)
    for name_, ref in run(model, xs).items():
        assert np.abs(fused[name_] - ref).max() <= bound(ref)
    # The batch is symbolic all through: batch 2, whatever the file declares, gives each item
    # what it gets alone.
    one = run(model, [x[:1] for x in xs])
    two = run(model, [np.concatenate([x[:1], -x[:1]]) for x in xs])
    for name_, ref in one.items():
        assert two[name_].shape == (2,) + ref.shape[1:]
        assert np.abs(two[name_][:1] - ref).max() <= bound(ref)



@pytest.mark.parametrize("model_name,shape", GENERATED, ids=GENERATED_IDS)
def test_generated_resnets_match_opencv(tmp_path, model_name, shape):
    net, prototxt, weights = with_weights(tmp_path, generate(model_name, input_shape=shape))
    assert blobs_vs_opencv(net, prototxt, weights) > 10
    xs = inputs_for(net)
    outputs_vs_opencv(to_onnx(net, fuse=True), net, prototxt, weights, xs)


def test_se_resnet_matches_opencv_with_axpy_rewritten(tmp_path):
    """OpenCV's Axpy is a·Y + X, not SENet's a·X + Y: it runs the net with each Axpy spelled
    as Flatten + Scale(axis 0) + Eltwise, our model has SENet's own; every blob they share
    agrees, and the Axpy layers match NumPy's a * x + y given the bottoms our model computed."""
    net, _, weights = with_weights(tmp_path, ZOO / "SE-ResNet-50.prototxt")
    prototxt = rewrite_axpy(net, tmp_path / "se_rewritten.prototxt")
    assert blobs_vs_opencv(net, prototxt, weights) > 100
    xs = inputs_for(net)
    assert len(check_values(net, *layer_values(net, xs), types={"Axpy"})) == 16
    outputs_vs_opencv(to_onnx(net, fuse=True), net, prototxt, weights, xs)


def test_shapes_zoo_matches_opencv_and_caffe_arithmetic(tmp_path):
    """Slice, Crop, Permute, Reshape 0/-1, IP axis 2, grouped Deconvolution, kernel_h/w with
    dilation, global and clipped pooling agree with OpenCV. OpenCV's within-channel LRN departs
    from Caffe's, so that layer and those after it are checked against NumPy."""
    net, prototxt, weights = with_weights(tmp_path, DATA / "shapes_zoo.prototxt")
    names = [layer.name for layer in net.layers]
    after_lrn = {t for layer in net.layers[names.index("lrn"):] for t in layer.top}
    assert blobs_vs_opencv(net, prototxt, weights, skip=after_lrn) > 15
    checked = check_values(net, *layer_values(net, inputs_for(net)))
    assert {"lrn", "mvn", "scale2", "power", "prod", "softmax"} <= set(checked)


@pytest.mark.parametrize("opset", [13, 17, 18, 20])
def test_layer_arithmetic_matches_numpy_reference(opset):
    """Pooling with padding over half the kernel and stochastic pooling, floor/ceil/clip, LRN
    both ways, MVN, Bias and Scale with a given factor, Eltwise coeff/MAX/PROD, Power/Exp/Log,
    Threshold, Clip, Swish, ELU, BNLL, shared PReLU, Reduction, Tile, Softmax on axis 2, Axpy,
    BatchNorm's scale factor -- in opsets where Reduce*/Split take axes as attributes (13) and
    as inputs (18+)."""
    net = random_weights(read_prototxt(DATA / "layers_zoo.prototxt"))
    xs = inputs_for(net, seed=3)
    checked = check_values(net, *layer_values(net, xs, opset=opset))
    assert {layer.name for layer in net.layers} - set(checked) == {"gmax_flat", "relu"}


def test_fork_and_rare_layers_match_numpy_reference():
    """SSD's Normalize, ShuffleChannel, ReLU6, ArgMax (on an axis, over each item, values),
    Parameter, Split, Silence, Sigmoid, TanH."""
    net = random_weights(read_prototxt(DATA / "fork_layers.prototxt"))
    checked = check_values(net, *layer_values(net, inputs_for(net, seed=4)))
    assert set(checked) == {layer.name for layer in net.layers}


def pooling_net(**pooling_param):
    net = Net("pool")
    net.add_input("data", (2, 3, 11, 10))
    net.add_layer("Pooling", "pool", "data", pooling_param=pooling_param)
    return net


@pytest.mark.parametrize("param", [
    dict(pool="MAX", kernel_size=3, stride=2),                 # ResNet's pool1: overhang 1
    dict(pool="AVE", kernel_size=3, stride=2, pad=1),          # padding and overhang
    dict(pool="AVE", kernel_size=2, stride=3),                 # overhang only: not counted
    dict(pool="AVE", kernel_size=3, stride=1, pad=1),          # padding counted, no overhang
    dict(pool="MAX", kernel_size=1, stride=4),                 # stride over kernel
    dict(pool="AVE", kernel_size=4, stride=3, pad=2, round_mode="FLOOR"),
    dict(pool="MAX", kernel_h=3, kernel_w=2, stride_h=3, stride_w=2, pad_h=2, pad_w=1),
])
def test_pooling_is_caffes_in_floor_mode(param):
    """Caffe's output size and divisor, reached with explicit padding and floor-mode pooling:
    no pooling node of the model uses ceil_mode."""
    net = pooling_net(**param)
    x = inputs_for(net)[0]
    inputs, tops = layer_values(net, [x])
    assert check_values(net, inputs, tops) == ["pool"]
    model = to_onnx(net)
    pools = [n for n in model.graph.node if n.op_type.endswith("Pool")]
    assert pools and all(a.name != "ceil_mode" or a.i == 0 for n in pools for a in n.attribute)
    assert run(model, [x])["pool"].shape == tuple(infer(net)[0].tops[0])


# -- the file: opsets, names, dynamic batch, external data ---------------------------------------------

@pytest.mark.parametrize("opset", list(OPSETS))
def test_model_declares_opset_ir_producer_and_names(opset):
    net = random_weights(read_prototxt(ZOO / "bvlc_googlenet.prototxt"))
    model = to_onnx(net, opset=opset)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", opset)]
    assert model.ir_version == IR_VERSION[opset] == onnx.helper.find_min_ir_version_for(
        model.opset_import)
    assert model.producer_name == "prototxt-gen"
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    (inp,), (out,) = model.graph.input, inferred.graph.output
    assert inp.name == "data" and out.name == "prob"
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert dims == ["batch", 1000]
    # Every layer that has weights has them as initializers named after it.
    names = {t.name for t in model.graph.initializer}
    assert {"conv1/7x7_s2/weight", "conv1/7x7_s2/bias", "loss3/classifier/weight"} <= names


def test_in_place_blobs_get_one_value_per_write():
    """ONNX values are written once: a blob rewritten in place is named after the layer at
    each later write, the first write keeping the blob's name."""
    net = random_weights(generate("resnet50"))
    model = to_onnx(net)
    produced = [o for n in model.graph.node for o in n.output]
    assert len(produced) == len(set(produced))
    assert {"conv1", "conv1@conv1_relu", "res2a", "res2a@res2a_relu", "fc1000"} <= set(produced)
    # BatchNorm + Scale: one BatchNormalization writing the Scale layer's value.
    bn = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert len(bn) == 53 and bn[0].output[0] == "conv1@scale_conv1"


def test_dynamic_batch_runs_batch_3_like_opencv(tmp_path):
    net, prototxt, weights = with_weights(tmp_path, ZOO / "bvlc_googlenet.prototxt")
    assert net.inputs[0].shape[0] == 10  # the file's batch; the model takes any
    xs = [x[:3] for x in inputs_for(net)]
    model = to_onnx(net)
    outputs_vs_opencv(model, net, prototxt, weights, xs)
    assert run(model, xs)["prob"].shape == (3, 1000)
    static = to_onnx(net, dynamic_batch=False)
    assert static.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 10
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                       match="dimension|Got invalid"):
        run(static, xs)


def test_saved_file_is_the_model_to_onnx_builds(tmp_path):
    """save_onnx writes the weights from their arrays around hand-encoded protobuf headers;
    the file parses as the very model to_onnx builds in memory."""
    net = random_weights(read_prototxt(ZOO / "densenet_121.prototxt"))
    save_onnx(net, tmp_path / "d.onnx", opset=15)
    loaded = onnx.load(tmp_path / "d.onnx")
    built = to_onnx(net, opset=15)
    assert len(loaded.graph.initializer) == len(built.graph.initializer) > 600
    assert loaded == built


def test_external_data_for_large_models(tmp_path):
    """Over 2 GiB of weights the model keeps its weights in model.onnx.data (tested here by
    asking for it on a small net): page-aligned, loaded by onnxruntime from the path."""
    net = random_weights(read_prototxt(ZOO / "squeezenet_v1.1.prototxt"))
    path = tmp_path / "sq.onnx"
    save_onnx(net, path, external_data=True)
    data = tmp_path / "sq.onnx.data"
    assert data.stat().st_size > 4_000_000 > path.stat().st_size
    model = onnx.load(path, load_external_data=False)
    offsets = [int(e.value) for t in model.graph.initializer for e in t.external_data
               if e.key == "offset"]
    assert offsets and all(o % 4096 == 0 for o in offsets)
    onnx.checker.check_model(path, full_check=True)
    x = inputs_for(net)
    ref = run(to_onnx(net), x)["prob"]
    assert np.array_equal(run(path, x)["prob"], ref)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sq.onnx", "sq.onnx.data"]


def test_a_failed_check_writes_nothing(tmp_path):
    net = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    path = tmp_path / "lenet.onnx"

    def refuse(model):
        raise NetError("refused")
    for external in (False, True):
        with pytest.raises(NetError, match="refused"):
            save_onnx(net, path, external_data=external, check_with=refuse)
        assert list(tmp_path.iterdir()) == []


def test_verification_catches_a_model_that_departs(tmp_path):
    """verify_onnx runs onnxruntime and the PyTorch translation on the same input; a model
    built from other weights fails it, exit status 1, and save_onnx then writes nothing."""
    pytest.importorskip("torch")
    from prototxt_gen.backends.verify import VerificationError, verify_onnx
    net = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    (ok,) = verify_onnx(net, to_onnx(net).SerializeToString(), batch=3).agreements
    assert ok.output == "prob" and ok.max_error <= ok.bound <= 1e-4
    other = random_weights(read_prototxt(ZOO / "lenet.prototxt"), seed=5)
    with pytest.raises(VerificationError, match="onnxruntime departs from the PyTorch "
                       "translation \\(in float64\\): 'prob' max|Δ| .* \\(bound ") as err:
        save_onnx(net, tmp_path / "lenet.onnx", check_with=lambda p: verify_onnx(other, p))
    assert err.value.exit_code == 1
    assert list(tmp_path.iterdir()) == []


def test_placeholder_weights_without_a_caffemodel():
    """A prototxt alone converts: zeros, with BatchNorm and Scale as the identity."""
    net = read_prototxt(ZOO / "cvjena_resnet10_preact.prototxt")
    model = to_onnx(net)
    out = run(model, inputs_for(net))["prob"]
    assert np.allclose(out, 1 / out.shape[1])  # all-zero logits


def test_translation_needs_no_torch(tmp_path):
    code = f"""
import sys
sys.modules["torch"] = None
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.backends.onnx import save_onnx
save_onnx(read_prototxt({str(ZOO / 'mobilenet_v1.prototxt')!r}), {str(tmp_path / 'm.onnx')!r})
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.onnx").stat().st_size > 16_000_000


# -- registry and errors --------------------------------------------------------------------------

def test_every_layer_the_pytorch_translator_takes_translates_here():
    pytest.importorskip("torch")
    from prototxt_gen.backends import pytorch
    from prototxt_gen.backends.onnx import CONVERTERS
    assert set(CONVERTERS) == set(pytorch.CONVERTERS)


def test_unsupported_layers_are_listed_up_front():
    net = read_prototxt(ZOO / "lenet.prototxt")
    net.add_layer("SoftmaxWithLoss", "loss", ["ip2", "data"])
    net.add_layer("Accuracy", "acc", ["ip2", "data"])
    net.add_layer("Eltwise", "both", ["loss", "acc"])  # read on: not left out for inference
    with pytest.raises(NetError) as err:
        to_onnx(net)
    assert str(err.value) == (
        "cannot convert to ONNX: 2 layer(s) have no ONNX implementation: 'loss' "
        "(SoftmaxWithLoss), 'acc' (Accuracy) (register one with "
        "@prototxt_gen.backends.onnx.converter('Accuracy', 'SoftmaxWithLoss'))")


def test_a_registered_converter_translates_a_fork_layer():
    from prototxt_gen.graph import shapes
    from prototxt_gen.backends.onnx import CONVERTERS

    @shapes.rule("DoubleIt")
    def _rule(layer, bottoms):
        return [bottoms[0]], []

    @converter("DoubleIt")
    def _double(b):
        if b.layer.param.loss_weight:
            raise Unsupported("no loss weights")
        b.out("Mul", [b.x[0], b.scalar(2.0, "two")])

    try:
        net = Net("fork")
        net.add_input("data", (1, 3))
        net.add_layer("DoubleIt", "twice", "data")
        assert np.array_equal(run(to_onnx(net), [np.ones((1, 3), np.float32)])["twice"],
                              np.full((1, 3), 2.0, np.float32))
    finally:
        del CONVERTERS["DoubleIt"], shapes.RULES["DoubleIt"]


def test_configurations_a_converter_refuses_are_all_listed():
    net = Net("refused")
    net.add_input("data", (1, 3, 8, 8))
    for k in (1, 2):
        net.add_layer("Pooling", f"pool{k}", "data", f"pool{k}",
                      pooling_param=dict(pool="AVE", kernel_size=2, stride=5))
    with pytest.raises(NetError) as err:
        to_onnx(net)
    reason = ("a pooling window lies wholly outside the input (Caffe divides by a size of "
              "zero or less there)")
    assert str(err.value) == (f"cannot convert to ONNX: 2 layer(s) cannot be translated: "
                              f"'pool1' (Pooling: {reason}); 'pool2' (Pooling: {reason})")


def test_opset_outside_the_range_is_refused():
    net = read_prototxt(ZOO / "lenet.prototxt")
    with pytest.raises(NetError, match="opset 12 is not supported"):
        to_onnx(net, opset=12)


# -- CLI ------------------------------------------------------------------------------------------

def test_cli_convert_to_onnx_with_verify(tmp_path):
    net, prototxt, weights = with_weights(tmp_path, ZOO / "squeezenet_v1.1.prototxt")
    out = tmp_path / "sq.onnx"
    r = run_cli("convert", prototxt, "--weights", weights, "--to", "onnx", "-o", out,
                "--verify", "--opset", "13", "--fuse")
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    assert r.stderr.startswith(f"prototxt-gen: verified: onnxruntime {ort.__version__} agrees "
                               "with the PyTorch translation run in float64 on random input at "
                               "batch 2 with the model's weights: 'prob' max|Δ| ")
    model = onnx.load(out)
    assert model.opset_import[0].version == 13
    xs = inputs_for(net)
    outputs_vs_opencv(model, net, prototxt, weights, xs)
    r = run_cli("convert", prototxt, "--weights", weights, "--to", "onnx", "-o", out,
                "--static-batch")
    assert r.returncode == 0, r.stderr
    assert onnx.load(out).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 10


def test_cli_convert_to_onnx_errors(tmp_path):
    prototxt = ZOO / "lenet.prototxt"
    out = tmp_path / "out.onnx"
    assert_error(run_cli("convert", prototxt, "--to", "python", "-o", out, "--static-batch"),
                 "--static-batch only applies to --to onnx")
    r = run_cli("convert", prototxt, "--to", "onnx", "-o", out, "--opset", "12")
    assert r.returncode == 2
    assert r.stderr == ("prototxt-gen: error: argument --opset: must be 13-20, not '12' "
                        "(see 'prototxt-gen --help')\n")
    bad = tmp_path / "loss.prototxt"
    bad.write_text(prototxt.read_text() + 'layer { name: "loss" type: "SoftmaxWithLoss" '
                   'bottom: "ip2" bottom: "data" top: "loss" }\n'
                   'layer { name: "twice" type: "Power" bottom: "loss" top: "twice" }\n')
    assert_error(run_cli("convert", bad, "--to", "onnx", "-o", out),
                 f"{bad}: cannot convert to ONNX: 1 layer(s) have no ONNX implementation: "
                 "'loss' (SoftmaxWithLoss) (register one with "
                 "@prototxt_gen.backends.onnx.converter('SoftmaxWithLoss'))")
    assert not out.exists()
    r = run_cli("convert", prototxt, "--to", "onnx", "-o", out)
    assert r.returncode == 0
    assert r.stderr == ("prototxt-gen: warning: no --weights given: the model has placeholder "
                        "weights (zeros; BatchNorm and Scale as identity)\n")
