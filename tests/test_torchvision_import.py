"""torchvision state_dicts into the built-in models of their layout (`convert MODEL --state-dict
W.pth --to caffemodel`): the caffemodel, run through our PyTorch translation and through OpenCV
4, gives real torchvision's output; tests/tv_models.py's transcription of torchvision (which
the other tests and the benchmarks use) has torchvision's keys, shapes and outputs; a
state_dict of another net, or a net of another layout, is refused in one line."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from prototxt_gen import generate, load_weights
from prototxt_gen.backends.pytorch import to_torch

from conftest import assert_last_error, run_cli
from reference import bound, opencv_text
from tv_models import MODELS, import_torchvision, torchvision_model

import cv2


needs_torchvision = pytest.mark.skipif(import_torchvision() is None,
                                       reason="torchvision is not installed")


@needs_torchvision
@pytest.mark.parametrize("name", ["resnet18_tv", "resnet50_tv", "resnext50_32x4d",
                                  "wide_resnet50_2"])
def test_imported_weights_give_torchvisions_output(tmp_path, name):
    model = torchvision_model(name, real=True)
    torch.save(model.state_dict(), tmp_path / "tv.pth")
    out = tmp_path / "model.caffemodel"
    r = run_cli("convert", name, "--state-dict", tmp_path / "tv.pth", "--to", "caffemodel",
                "-o", out)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    net = generate(name)
    load_weights(net, out, strict=True)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
        ours = to_torch(net).blobs(torch.from_numpy(x), names=["fc1000"])["fc1000"].numpy()
    assert np.abs(ours - ref).max() <= bound(ref)
    (tmp_path / "cv.prototxt").write_text(opencv_text(net))
    cv = cv2.dnn.readNetFromCaffe(str(tmp_path / "cv.prototxt"), str(out))
    cv.setInput(x)
    assert np.abs(cv.forward("fc1000") - ref).max() <= bound(ref)


@needs_torchvision
@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_transcription_is_torchvisions_model(name):
    """Same keys and shapes in the same order for all nine models, and (where a forward pass
    is cheap) torchvision's output from the transcription's weights."""
    ours = torchvision_model(name).state_dict()
    real = torchvision_model(name, real=True)
    assert [(k, tuple(v.shape)) for k, v in real.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in ours.items()]
    if name in ("resnet18_tv", "resnet50_tv", "resnext50_32x4d"):
        real.load_state_dict(ours, strict=True)
        x = torch.from_numpy(np.random.default_rng(3).standard_normal(
            (2, 3, 160, 160)).astype(np.float32))
        with torch.no_grad():
            ref = real(x).numpy()
            assert np.abs(torchvision_model(name)(x).numpy() - ref).max() <= 1e-5 * max(
                1, np.abs(ref).max())


@pytest.fixture(scope="module")
def resnet18_state(tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    state = torchvision_model("resnet18_tv").state_dict()
    torch.save(state, path)
    return path, state


def save(tmp_path, state, name):
    torch.save(state, tmp_path / name)
    return tmp_path / name


def test_other_nets_and_layouts_are_refused_in_one_line(tmp_path, resnet18_state):
    path, state = resnet18_state
    out = tmp_path / "m.caffemodel"
    cases = [
        ("resnet34_tv", path, "not a torchvision state_dict of 'ResNet-34-torchvision': lacks "
                              "'layer1.2.conv1.weight', 'layer1.2.bn1.running_mean', "
                              "'layer1.2.bn1.running_var' and "),
        ("resnet18_tv", save(tmp_path, {k: v for k, v in state.items() if k != "fc.bias"}, "a.pth"),
         "not a torchvision state_dict of 'ResNet-18-torchvision': lacks 'fc.bias'"),
        ("resnet18_tv", save(tmp_path, {**state, "fc.weight": torch.zeros(10, 512)}, "b.pth"),
         "not a torchvision state_dict of 'ResNet-18-torchvision': 'fc.weight' is 10×512, the "
         "net needs 1000×512"),
        ("resnet18_tv", save(tmp_path, {**state, "layer5.0.conv1.weight": torch.zeros(1)}, "c.pth"),
         "not a torchvision state_dict of 'ResNet-18-torchvision': has 1 tensor(s) the net "
         "does not use ('layer5.0.conv1.weight')"),
        ("resnet18", path, "layer 'pool1' is not torchvision's max pool (3×3, stride 2, pad 1, "
                           "rounding down); torchvision's weights belong in the built-in model"),
    ]
    for model, weights, message in cases:
        r = run_cli("convert", model, "--state-dict", weights, "--to", "caffemodel", "-o", out)
        assert r.returncode == 2 and not out.exists(), (model, r.stderr)
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"prototxt-gen: error: {model}: {weights}: {message}") or \
            last.startswith(f"prototxt-gen: error: {model}: {message}"), last
    # MSRA's ResNet-50 has the stride on the 1x1: same names and shapes, other arithmetic
    msra = generate("resnet50")
    msra.layer("pool1").param.pooling_param.pad = 1
    msra.layer("pool1").param.pooling_param.round_mode = 1
    (tmp_path / "msra.prototxt").write_text(msra.to_prototxt("modern"))
    r = run_cli("convert", tmp_path / "msra.prototxt", "--state-dict", path, "--to",
                "caffemodel", "-o", out)
    assert_last_error(r, f"{tmp_path / 'msra.prototxt'}: layer 'res3a_branch2a' strides its "
                         "1×1 convolution, as MSRA's release does; torchvision strides the "
                         "3×3; torchvision's weights belong in the built-in model of its layout "
                         "(resnet18_tv ... resnet152_tv, resnext*, wide_resnet*)")


def test_torchvision_weights_straight_to_onnx(tmp_path, resnet18_state):
    """--state-dict works with every --to: torchvision's weights to ONNX in one command."""
    ort = pytest.importorskip("onnxruntime")
    path, _ = resnet18_state
    r = run_cli("convert", "resnet18_tv", "--state-dict", path, "--to", "onnx", "-o",
                tmp_path / "r18.onnx")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    x = np.random.default_rng(2).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        ref = torchvision_model("resnet18_tv")(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(tmp_path / "r18.onnx"),
                                   providers=["CPUExecutionProvider"])
    prob = session.run(None, {"data": x})[0]
    e = np.exp(ref - ref.max(axis=1, keepdims=True))  # the model ends in Softmax (prob)
    assert np.abs(prob - e / e.sum(axis=1, keepdims=True)).max() <= 1e-5
