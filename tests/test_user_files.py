"""Real users' files: the kinds of file trained models and public zoos hold that the
classification zoo does not -- deploy files declaring batch 1, BatchNorm/Scale pairs out of
place, bare net-level inputs, train_val files and caffemodels embedding their training net,
weights of another net, fork layers with their own modules -- each checked end to end through
the CLI as a user runs it, against OpenCV's Caffe importer or a NumPy reading where numbers
are involved."""
import importlib.util
import subprocess
import sys

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from prototxt_gen.graph import shapes
from prototxt_gen.caffe.weights import write_caffemodel
from prototxt_gen.build.catalog import template_names
from prototxt_gen.cli import main
from prototxt_gen.backends.onnx import to_onnx
from prototxt_gen.backends.pytorch import CONVERTERS, converter, to_torch
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.backends.verify import (VerificationError, calibrated, random_inputs, tolerance,
                                 verify_onnx)

from conftest import DATA, KAIMING, ROOT, ZOO
from reference import bound, with_weights
from weights import random_weights


def cli(capsys, *argv):
    """(exit status, stdout, stderr) of the CLI run in this process."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def run_onnx(path_or_bytes, xs):
    s = ort.InferenceSession(path_or_bytes if isinstance(path_or_bytes, bytes)
                             else str(path_or_bytes), providers=["CPUExecutionProvider"])
    return s.run(None, dict(zip([i.name for i in s.get_inputs()], xs)))


def load_exported_py(path, class_name):
    spec = importlib.util.spec_from_file_location(f"exported_{abs(hash(str(path)))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, class_name)


def outputs(module, xs):
    with torch.no_grad():
        out = module(*map(torch.from_numpy, xs))
    return [out] if isinstance(out, torch.Tensor) else list(out)


# -- every file users have: info, render, convert; the .pt2 at any batch --------------------------

def _train_val(tmp_path):
    path = tmp_path / "train_val.prototxt"
    assert main(["resnet50", "--phase", "train", "-o", str(path)]) == 0
    return path


# Left out as duplicates: the Kaiming release files (the resnet50/101 templates are those files,
# byte for byte: test_golden.py), and the middle depths of each template family, built by the
# same code as its smallest member; the largest -- wide_resnet101_2 (most weights) and
# resnet200_v2 (most layers) -- hold the export's memory estimate to account.
MIDDLE_DEPTHS = {"resnet101", "resnet152", "resnet101_v2", "resnet152_v2", "resnext101_32x8d"}
FILES = ([("zoo", p.name) for p in sorted(ZOO.glob("*.prototxt"))]
         + [("template", name) for name in template_names() if name not in MIDDLE_DEPTHS]
         + [("example", "my_resnet.toml"), ("train_val", "resnet50 --phase train"),
            ("train_val", "lenet_train_val.prototxt")])


@pytest.mark.slow
@pytest.mark.parametrize("kind,name", FILES, ids=[n for _, n in FILES])
def test_every_file_reads_renders_and_converts(tmp_path, capsys, kind, name):
    """info, render -o .dot and convert --to onnx|pytorch|python succeed; the .pt2 runs at
    batches 1, 2 and 5 (whatever batch the file declares) and equals the .py export."""
    extra = []
    if kind == "zoo":
        net = ZOO / name
    elif kind == "template":
        net = name
    elif kind == "example":
        net = ROOT / "examples" / name
    elif name.startswith("resnet50"):
        net = _train_val(tmp_path)
    else:  # MNIST's Data layer says the batch, not the image size
        net, extra = DATA / name, ["--input-shape", "data=64,1,28,28"]
    code, out, err = cli(capsys, "info", net, *extra)
    assert code == 0 and "total" in out, err
    if kind == "train_val":
        assert "note: data: layer" in out  # what the data layer gives, and what was assumed
    code, _, err = cli(capsys, "render", net, *extra, "-o", tmp_path / "n.dot")
    assert code == 0, err
    if kind == "train_val":
        assert err.startswith("prototxt-gen: note: data: layer")
    try:
        code, _, err = cli(capsys, "convert", net, *extra, "--to", "onnx",
                           "-o", tmp_path / "n.onnx")
        assert code == 0, err
        if kind == "train_val":
            assert "translated for inference: the data layer(s)" in err
        (tmp_path / "n.onnx").unlink()
        code, _, err = cli(capsys, "convert", net, *extra, "--to", "pytorch",
                           "-o", tmp_path / "n.pt2")
        assert code == 0 and "exported for the file's input shapes only" not in err, err
        code, _, err = cli(capsys, "convert", net, *extra, "--to", "python",
                           "-o", tmp_path / "n.py", "--class-name", "Exported")
        assert code == 0, err
        program = torch.export.load(tmp_path / "n.pt2")
        py = load_exported_py(tmp_path / "n.py", "Exported")()
        py.load_state_dict(program.state_dict)  # the same weights in both
        py.eval()
        module = program.module()
        shapes_in = [tuple(n.meta["val"].shape) for n in module.graph.nodes
                     if n.op == "placeholder"]
        rng = np.random.default_rng(0)
        for batch in (1, 2, 5):
            xs = [rng.standard_normal((batch, *map(int, s[1:]))).astype(np.float32)
                  for s in shapes_in]
            got, ref = outputs(module, xs), outputs(py, xs)
            assert [g.shape[0] for g in got] == [batch] * len(got)
            for g, r in zip(got, ref):
                r = r.numpy()
                assert np.abs(g.numpy() - r).max() <= bound(r), (batch, name)
    finally:
        for f in tmp_path.glob("n.*"):
            f.unlink()


def test_a_program_whose_batch_a_layer_ties_says_so(tmp_path, capsys):
    """A Reshape that names the batch cannot run at another: the .pt2 is exported for the
    file's shapes, and the one-line warning says that and why (never silently)."""
    (tmp_path / "n.prototxt").write_text(
        'input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
        'layer { name: "r" type: "Reshape" bottom: "data" top: "r" '
        'reshape_param { shape { dim: 1 dim: 18 } } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "r" top: "fc" '
        'inner_product_param { num_output: 4 } }\n')
    code, _, err = cli(capsys, "convert", tmp_path / "n.prototxt", "--to", "pytorch",
                       "-o", tmp_path / "n.pt2")
    assert code == 0
    assert f"warning: {tmp_path / 'n.pt2'}: exported for the file's input shapes only " \
           "(1x2x3x3): the batch cannot vary (" in err
    module = torch.export.load(tmp_path / "n.pt2").module()
    assert module(torch.ones(1, 2, 3, 3)).shape == (1, 4)


# -- BatchNorm + Scale anywhere ---------------------------------------------------------------------

BN_PLACEMENTS = {
    "in place after a conv": """
        layer { name: "conv" type: "Convolution" bottom: "x" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 } }
        layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
        layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
        layer { name: "relu" type: "ReLU" bottom: "conv" top: "out" }""",
    "out of place on the input": """
        layer { name: "x/bn" type: "BatchNorm" bottom: "x" top: "x/bn" }
        layer { name: "x/scale" type: "Scale" bottom: "x/bn" top: "x/scale"
                scale_param { bias_term: true } }
        layer { name: "conv" type: "Convolution" bottom: "x/scale" top: "out"
                convolution_param { num_output: 4 kernel_size: 3 } }""",
    "out of place as the net's output": """
        layer { name: "conv" type: "Convolution" bottom: "x" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 } }
        layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bn" }
        layer { name: "sc" type: "Scale" bottom: "bn" top: "out" scale_param { bias_term: true } }""",
    "BatchNorm read by two layers": """
        layer { name: "bn" type: "BatchNorm" bottom: "x" top: "bn" }
        layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" scale_param { bias_term: true } }
        layer { name: "relu" type: "ReLU" bottom: "bn" top: "r" }
        layer { name: "sum" type: "Eltwise" bottom: "sc" bottom: "r" top: "out" }""",
    "Scale read by two layers": """
        layer { name: "bn" type: "BatchNorm" bottom: "x" top: "bn" }
        layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" scale_param { bias_term: true } }
        layer { name: "relu" type: "ReLU" bottom: "sc" top: "r" }
        layer { name: "sum" type: "Eltwise" bottom: "sc" bottom: "r" top: "out" }""",
    "in-place BatchNorm, out-of-place Scale": """
        layer { name: "conv" type: "Convolution" bottom: "x" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 } }
        layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
        layer { name: "sc" type: "Scale" bottom: "conv" top: "out" scale_param { bias_term: false } }""",
}


@pytest.mark.parametrize("fuse", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("placement", list(BN_PLACEMENTS))
def test_batchnorm_scale_pairs_translate_in_any_placement(tmp_path, placement, fuse):
    """ONNX (onnxruntime) and PyTorch give OpenCV's output for every placement of a pair."""
    text = ('name: "pair"\ninput: "x" input_shape { dim: 2 dim: 3 dim: 6 dim: 6 }\n'
            + BN_PLACEMENTS[placement])
    (tmp_path / "n.prototxt").write_text(text)
    net, prototxt, weights = with_weights(tmp_path, tmp_path / "n.prototxt")
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    cv = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    cv.setInput(x, "x")
    ref = cv.forward()
    (got,) = run_onnx(to_onnx(net, fuse=fuse).SerializeToString(), [x])
    assert np.abs(got - ref).max() <= bound(ref)
    (mine,) = outputs(to_torch(net, fuse=fuse), [x])
    assert np.abs(mine.numpy() - ref).max() <= bound(ref)


# -- net-level inputs as UpgradeNetInput reads them -------------------------------------------------

def test_a_bare_net_input_beside_an_input_layer_is_dropped_as_caffe_drops_it(capsys, tmp_path):
    """Old caffemodels and the files made from them carry `input: "data"` with no dims: Caffe's
    UpgradeNetInput drops it, and the Input layer declares the blob."""
    (tmp_path / "n.prototxt").write_text(
        'name: "bare"\ninput: "data"\n'
        'layer { name: "data" type: "Input" top: "data" '
        'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
        'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    net = read_prototxt(tmp_path / "n.prototxt")
    assert [(i.name, i.shape) for i in net.inputs] == [("data", (1, 3, 8, 8))]
    code, out, err = cli(capsys, "info", tmp_path / "n.prototxt")
    assert code == 0, err
    assert "note: dropped the net-level input 'data': it declares no input_shape or " \
           "input_dim (Caffe drops it too)" in out


@pytest.mark.parametrize("header,inputs,note", [
    # input_shape wins over input_dim (UpgradeNetInput reads has_shape first).
    ('input: "d" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 } '
     'input_dim: 1 input_dim: 2 input_dim: 9 input_dim: 9',
     [("d", (1, 2, 4, 4))], "ignored input_dim: the net also declares input_shape"),
    # input_dim values past 4 per input are never read.
    ('input: "d" input_dim: 1 input_dim: 2 input_dim: 4 input_dim: 4 input_dim: 7',
     [("d", (1, 2, 4, 4))], "ignored 1 input_dim entry past the last input"),
    ('input: "d" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 } input_shape { dim: 3 }',
     [("d", (1, 2, 4, 4))], "ignored 1 input_shape entry past the last input"),
])
def test_net_inputs_follow_upgrade_net_input(header, inputs, note):
    net = read_prototxt("<t>", text=header + '\nlayer { name: "r" type: "ReLU" bottom: "d" '
                        'top: "r" }')
    assert [(i.name, i.shape) for i in net.inputs] == inputs
    assert any(n.startswith(note) for n in net.notes), net.notes


# -- training files ---------------------------------------------------------------------------------

def test_readme_training_examples_work(tmp_path, capsys):
    """README's `info train_val.prototxt --phase TRAIN` and its load_weights example run on
    the train_val file `--phase train` writes."""
    from prototxt_gen import load_weights
    path = _train_val(tmp_path)
    code, out, err = cli(capsys, "info", path, "--phase", "TRAIN", "--format", "json")
    assert code == 0, err
    assert '"name": "data",\n      "shape": [\n        32,\n        3,\n        224,' in out
    deploy = read_prototxt("-", text=subprocess.run(
        [sys.executable, "-m", "prototxt_gen", "resnet50"], capture_output=True,
        text=True).stdout)
    write_caffemodel(random_weights(deploy), tmp_path / "w.caffemodel")
    net = read_prototxt(path, phase="TRAIN")
    report = load_weights(net, tmp_path / "w.caffemodel", mmap=True)
    assert len(report.loaded) == 3 * 53 + 1 and not report.missing  # conv, bn, scale; fc


def test_data_shapes_can_be_given_and_are_said(capsys):
    lenet = DATA / "lenet_train_val.prototxt"
    code, _, err = cli(capsys, "info", lenet)
    assert code == 2 and err == (
        f"prototxt-gen: error: {lenet}: layer 'mnist' (Data): the file does not say the shape "
        "of top 'data' (a batch_size, and crop_size or new_height and new_width); give it with "
        "--input-shape data=N,C,H,W\n")
    code, out, err = cli(capsys, "info", lenet, "--input-shape", "data=100,1,28,28")
    assert code == 0, err
    assert out.splitlines()[0] == "LeNet: input data 100×1×28×28, label 100"
    assert "note: data: layer 'mnist' (Data) gives 'data' 100×1×28×28 (--input-shape), " \
           "'label' 100\n" in out
    code, _, err = cli(capsys, "info", lenet, "--input-shape", "conv1=1,20,24,24")
    assert code == 2 and "'conv1' is computed by layer 'conv1' (Convolution)" in err


def test_a_train_val_translates_for_inference(tmp_path, capsys):
    """The ONNX model of a train_val file is its inference net: the Data layer's top is the
    input, the loss and accuracy layers and the labels are left out, and it computes what the
    deploy file computes."""
    path = _train_val(tmp_path)
    code, _, err = cli(capsys, "convert", path, "--to", "onnx", "-o", tmp_path / "tv.onnx")
    assert code == 0, err
    assert err.splitlines()[0] == (
        "prototxt-gen: warning: translated for inference: the data layer(s) 'data' (Data) "
        "became the input(s) 'data' 25×3×224×224 (assuming 3 channels); left out the "
        "training layer(s) 'loss' "
        "(SoftmaxWithLoss), 'accuracy/top-1' (Accuracy), 'accuracy/top-5' (Accuracy) and the "
        "data only they read ('label')")
    s = ort.InferenceSession(str(tmp_path / "tv.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in s.get_inputs()] == [("data", ["batch", 3, 224, 224])]
    assert [o.name for o in s.get_outputs()] == ["fc1000"]


# -- caffemodels that embed their training net --------------------------------------------------------

TRAIN_NET = """name: "small"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { crop_size: 16 mirror: true } data_param { source: "t" batch_size: 8 } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 16 } data_param { source: "v" batch_size: 4 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc"
  inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc"
  include { phase: TEST } }
"""


def _training_snapshot(tmp_path, stamp=True):
    """A caffemodel as Caffe's solver snapshots it: the TRAIN net, every layer stamped with
    phase TRAIN (Net::Init does), include rules kept."""
    net = random_weights(read_prototxt("<t>", text=TRAIN_NET, phase="TRAIN"))
    if stamp:
        for layer in net.layers:
            layer.param.phase = 0  # caffe.TRAIN
    write_caffemodel(net, tmp_path / "snap.caffemodel")
    return tmp_path / "snap.caffemodel"


@pytest.mark.parametrize("stamp", [True, False], ids=["stamped", "unstamped"])
def test_a_caffemodel_embedding_its_training_net_reads(tmp_path, capsys, stamp):
    snap = _training_snapshot(tmp_path, stamp)
    code, out, err = cli(capsys, "info", snap)
    assert code == 0, err
    assert "note: read the embedded net in phase TRAIN, the phase it was saved in" in out
    assert "note: data: layer 'data' (Data) gives 'data' 8×3×16×16, 'label' 8, assuming " \
           "3 channels" in out
    code, _, err = cli(capsys, "convert", snap, "--to", "onnx", "-o", tmp_path / "s.onnx",
                       "--verify")
    assert code == 0 and "with the model's weights" in err, err
    code, _, err = cli(capsys, "info", snap, "--phase", "TEST")
    assert code == 2 and err.endswith(
        f"-- it embeds its training net; for the deploy view give the deploy prototxt with "
        f"--weights {snap}\n")


def test_a_snapshot_whose_data_the_file_does_not_size_takes_input_shape(tmp_path, capsys):
    """Without a crop, only --input-shape says the image size; it reaches the embedded net
    before its weights are matched."""
    net = read_prototxt("<t>", text=TRAIN_NET.replace("crop_size: 16 ", ""), phase="TRAIN")
    net.set_shape("data", (8, 3, 16, 16))
    random_weights(net)
    net.top_shapes.clear()
    write_caffemodel(net, tmp_path / "snap.caffemodel")
    code, _, err = cli(capsys, "info", tmp_path / "snap.caffemodel")
    assert code == 2 and "give it with --input-shape data=N,C,H,W -- it embeds its training " \
        "net; for the deploy view give the deploy prototxt with --weights" in err
    code, out, err = cli(capsys, "info", tmp_path / "snap.caffemodel",
                         "--input-shape", "data=8,3,16,16")
    assert code == 0, err
    assert "'data' 8×3×16×16 (--input-shape), 'label' 8" in out


def test_weights_of_another_net_are_bad_input(tmp_path, capsys):
    snap = _training_snapshot(tmp_path)  # conv1, bn1, fc
    code, out, err = cli(capsys, "info", ZOO / "bvlc_googlenet.prototxt", "--weights", snap)
    assert code == 2 and "weights " + str(snap) + ": 0 layer(s) match, 58 missing, 3 extra" in out
    assert err == (f"prototxt-gen: error: {snap}: no layer of the net has weights in the file "
                   "(58 need them; the file's 3 other layer(s) match none by name): the "
                   "weights of another net?\n")


# -- --verify without weights -------------------------------------------------------------------------

def test_verify_without_weights_uses_weights_of_realistic_scale(tmp_path, capsys):
    """Placeholder weights make every output the same constant; --verify checks the
    translation on random weights instead, with BatchNorm calibrated on the input, and says
    so. Its bound is relative: a 1e-3 relative error in probabilities of ~1e-3 fails it."""
    net = read_prototxt(KAIMING / "ResNet-50-deploy.prototxt")
    xs = random_inputs(net, 0, 2)
    trial = calibrated(net, xs)
    # Calibrated: every BatchNorm output has zero mean and unit variance on the input.
    with torch.no_grad():
        tops = to_torch(trial).layer_outputs(*map(torch.from_numpy, xs))
    for name in ("bn_conv1", "bn3a_branch2a", "bn5c_branch2c"):
        y = tops[name][0].numpy()
        assert abs(y.mean()) < 1e-4 and 0.9 < y.var() < 1.01, name
    (prob,) = outputs(to_torch(trial), xs)
    assert prob.std(1).min() > 1e-4  # not a constant
    code, _, err = cli(capsys, "convert", KAIMING / "ResNet-50-deploy.prototxt", "--to", "onnx",
                       "-o", tmp_path / "r.onnx", "--verify")
    assert code == 0, err
    assert "agrees with the PyTorch translation run in float64 on random input at batch 2 " \
           "with random weights of realistic scale (He-scaled, BatchNorm statistics " \
           "calibrated on the input; the file keeps its placeholders): 'prob' max|Δ|" in err

    assert tolerance(np.full(10, 1e-3, np.float32)) == pytest.approx(1e-7)
    lenet = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    other = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    other.layer("ip2").blobs[1][0] += np.float32(0.05)  # one class's logit
    (ok,) = verify_onnx(lenet, to_onnx(lenet).SerializeToString()).agreements
    assert ok.max_error <= ok.bound <= 1e-4
    with pytest.raises(VerificationError, match="departs"):
        verify_onnx(lenet, to_onnx(other).SerializeToString())


# -- install hints -----------------------------------------------------------------------------------

def test_install_hints_work_where_the_user_is(tmp_path):
    """Without torch, the hint is a pip command for this Python and the extra's declared
    requirement -- not an index entry for prototxt-gen, which is installed from a clone."""
    code = ("import sys; sys.modules['torch'] = None; from prototxt_gen.cli import main; "
            f"sys.exit(main(['convert', {str(ZOO / 'lenet.prototxt')!r}, '--to', 'python', "
            f"'-o', {str(tmp_path / 'l.py')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr == ("prototxt-gen: error: --to python needs PyTorch: "
                        f"{sys.executable} -m pip install 'torch>=2.1'\n")
    readme = (ROOT / "README.md").read_text()
    assert "pip install 'prototxt-gen[" not in readme


# -- fork layers with their own modules ---------------------------------------------------------------

class HalfShift(torch.nn.Module):
    """A fork layer's module, as a user registers one: self-contained (torch only)."""

    def __init__(self, channels):
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return 0.5 * x + self.shift.view(1, -1, 1, 1)


class NumpyShift(torch.nn.Module):
    """One that needs a name the exported file would not have."""

    def forward(self, x):
        return x + float(np.pi)


@pytest.fixture
def fork_layers():
    @shapes.rule("HalfShift", "NumpyShift")
    def _rule(layer, bottoms):
        return [bottoms[0]], []

    @converter("HalfShift")
    def _half(b):
        b.emit("{m}({0})", b.ctor(HalfShift, (b.s.bottoms[0][1],)))

    @converter("NumpyShift")
    def _numpy(b):
        b.emit("{m}({0})", b.ctor(NumpyShift))

    yield
    for t in ("HalfShift", "NumpyShift"):
        del CONVERTERS[t], shapes.RULES[t]


def test_a_fork_module_class_is_copied_into_the_python_export(tmp_path, capsys, fork_layers):
    (tmp_path / "n.prototxt").write_text(
        'input: "x" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }\n'
        'layer { name: "h" type: "HalfShift" bottom: "x" top: "h" }\n')
    code, _, err = cli(capsys, "convert", tmp_path / "n.prototxt", "--to", "python",
                       "-o", tmp_path / "m.py", "--class-name", "Forked")
    assert code == 0, err
    model = load_exported_py(tmp_path / "m.py", "Forked")()
    model.load_state_dict(torch.load(tmp_path / "m.pth"))
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(model(x), 0.5 * x)
    (tmp_path / "n.prototxt").write_text(
        'input: "x" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }\n'
        'layer { name: "s" type: "NumpyShift" bottom: "x" top: "s" }\n')
    code, _, err = cli(capsys, "convert", tmp_path / "n.prototxt", "--to", "python",
                       "-o", tmp_path / "m2.py")
    assert code == 2 and not (tmp_path / "m2.py").exists()
    assert err == (f"prototxt-gen: error: {tmp_path / 'n.prototxt'}: layer 's' (NumpyShift): "
                   "class NumpyShift (from test_user_files) uses 'np', which the .py would "
                   "lack; use --to pytorch, whose program needs no source, or make the class "
                   "self-contained (torch, nn, F and builtins only)\n")
    code, _, err = cli(capsys, "convert", tmp_path / "n.prototxt", "--to", "pytorch",
                       "-o", tmp_path / "m2.pt2")
    assert code == 0, err


# -- Axpy ------------------------------------------------------------------------------------------

def test_axpy_is_senets_a_times_x_plus_y_not_opencvs(tmp_path):
    """SENet's Axpy (hujie-frank/SENet, axpy_layer.cu) computes a·X + Y with bottoms (a, X, Y);
    OpenCV 4's Axpy computes a·Y + X. We keep SENet's, the definition the trained SE models
    were trained with; OpenCV departs from it here, and the test says so."""
    (tmp_path / "ax.prototxt").write_text(
        'input: "a" input_shape { dim: 1 dim: 2 dim: 1 dim: 1 }\n'
        'input: "x" input_shape { dim: 1 dim: 2 dim: 2 dim: 2 }\n'
        'input: "y" input_shape { dim: 1 dim: 2 dim: 2 dim: 2 }\n'
        'layer { name: "ax" type: "Axpy" bottom: "a" bottom: "x" bottom: "y" top: "out" }\n')
    a = np.float32([2, 3]).reshape(1, 2, 1, 1)
    x = np.random.default_rng(0).standard_normal((1, 2, 2, 2)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal((1, 2, 2, 2)).astype(np.float32)
    net = read_prototxt(tmp_path / "ax.prototxt")
    (ours,) = outputs(to_torch(net), [a, x, y])
    np.testing.assert_allclose(ours.numpy(), a * x + y, rtol=1e-6)
    (onnx_out,) = run_onnx(to_onnx(net).SerializeToString(), [a, x, y])
    np.testing.assert_allclose(onnx_out, a * x + y, rtol=1e-6)
    cv = cv2.dnn.readNetFromCaffe(str(tmp_path / "ax.prototxt"))
    for name, v in (("a", a), ("x", x), ("y", y)):
        cv.setInput(v, name)
    np.testing.assert_allclose(cv.forward(), a * y + x, rtol=1e-6)  # OpenCV's, not Caffe's
