"""TF-slim's resnet_v2_50 and FaceNet's inception_resnet_v1 computed in TensorFlow
(tests/tf_reference.py, plain TF ops, slim's variable names, a real Saver checkpoint), imported
with `convert MODEL --checkpoint PREFIX` -- read without TensorFlow -- into the built-in models
of their layout: the caffemodel gives TensorFlow's output within 1e-4·max(1, |ref|) through our
PyTorch translation, ONNX, and (resnet_v2, whose layers OpenCV has) OpenCV 4. The checkpoint
reader's refusals are one line."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("TensorFlow computes the references (pip install tensorflow-cpu)",
                allow_module_level=True)

import cv2

from prototxt_gen import generate, load_weights
from prototxt_gen.backends.onnx import to_onnx
from prototxt_gen.backends.pytorch import to_torch
from prototxt_gen.importers import Checkpoint, CheckpointError

from conftest import ROOT, assert_last_error, run_cli
from reference import bound, opencv_text


def tf_reference(out, model, *extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "tf_reference.py"), model,
                           str(out), *extra], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return out / "model.ckpt", np.load(out / "x.npy"), np.load(out / "ref.npy")


@pytest.fixture(scope="module")
def resnet_v2_50(tmp_path_factory):
    return tf_reference(tmp_path_factory.mktemp("resnet_v2_50"), "resnet_v2_50")


@pytest.fixture(scope="module")
def facenet(tmp_path_factory):
    return tf_reference(tmp_path_factory.mktemp("facenet"), "inception_resnet_v1")


def imported(tmp_path, model, ckpt):
    out = tmp_path / "model.caffemodel"
    r = run_cli("convert", model, "--checkpoint", ckpt, "--to", "caffemodel", "-o", out)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    net = generate(model)
    load_weights(net, out, strict=True)
    return net, out


def ours(net, x, blob):
    with torch.no_grad():
        return to_torch(net).blobs(torch.from_numpy(x), names=[blob])[blob].numpy()


def onnx_out(net, x):
    session = ort.InferenceSession(to_onnx(net, outputs=[net.layers[-1].top[0]])
                                   .SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"data": x})[0]


def test_resnet_v2_50_gives_tensorflows_logits(tmp_path, resnet_v2_50):
    ckpt, x, ref = resnet_v2_50
    assert ref.shape == (1, 1000) and 1 < np.abs(ref).max() < 100
    net, weights = imported(tmp_path, "resnet50_v2", ckpt)
    assert np.abs(ours(net, x, "logits") - ref).max() <= bound(ref)
    net.layers = [layer for layer in net.layers if layer.name != "predictions"]
    assert np.abs(onnx_out(net, x) - ref).max() <= bound(ref)
    # the 1×1 shortcut subsampling rounds down: in OpenCV 4's spelling
    (tmp_path / "cv.prototxt").write_text(opencv_text(generate("resnet50_v2")))
    cv = cv2.dnn.readNetFromCaffe(str(tmp_path / "cv.prototxt"), str(weights))
    cv.setInput(x)
    assert np.abs(cv.forward("logits") - ref).max() <= bound(ref)


def test_facenet_gives_tensorflows_embedding(tmp_path, facenet):
    """The 128-d bottleneck before FaceNet's L2 normalization, at 160×160. OpenCV 4 has no Bias
    layer (FaceNet's batch_norm has no gamma: BatchNorm + Bias), so ONNX is the second check."""
    ckpt, x, ref = facenet
    assert ref.shape == (1, 128) and 1 < np.abs(ref).max() < 100
    net, _ = imported(tmp_path, "inception_resnet_v1", ckpt)
    assert np.abs(ours(net, x, "Bottleneck").reshape(ref.shape) - ref).max() <= bound(ref)
    assert np.abs(onnx_out(net, x).reshape(ref.shape) - ref).max() <= bound(ref)


def test_a_checkpoint_of_another_net_is_refused(tmp_path, resnet_v2_50, facenet):
    out = tmp_path / "m.caffemodel"
    r = run_cli("convert", "resnet101_v2", "--checkpoint", resnet_v2_50[0], "--to",
                "caffemodel", "-o", out)
    assert_last_error(r, f"resnet101_v2: {resnet_v2_50[0]}: not a checkpoint of "
                         "'ResNet-101-v2': lacks 'resnet_v2_50/block3/unit_7/bottleneck_v2/"
                         "preact/moving_mean', 'resnet_v2_50/block3/unit_7/bottleneck_v2/preact/"
                         "moving_variance', 'resnet_v2_50/block3/unit_7/bottleneck_v2/preact/"
                         "gamma' and 269 more")
    r = run_cli("convert", "inception_resnet_v1", "--checkpoint", resnet_v2_50[0], "--to",
                "caffemodel", "-o", out)
    assert_last_error(r, f"inception_resnet_v1: {resnet_v2_50[0]}: no variable named "
                         "'Conv2d_1a_3x3/weights' or '.../Conv2d_1a_3x3/weights': not a "
                         "checkpoint of 'Inception-ResNet-v1'")
    assert not out.exists()


def test_damaged_checkpoints_are_one_line_errors(tmp_path, resnet_v2_50):
    ckpt = resnet_v2_50[0]
    index = ckpt.parent / "model.ckpt.index"
    data = ckpt.parent / "model.ckpt.data-00000-of-00001"
    good = Checkpoint(ckpt)
    assert len(good.names) == 272 and good.shape("resnet_v2_50/conv1/weights") == (7, 7, 3, 64)
    cases = {}
    bad = tmp_path / "bad"
    (bad.parent / "bad.index").write_bytes(index.read_bytes()[:-1])
    cases["a cut index"] = (bad, f"{bad}.index: not a TensorFlow checkpoint index (no table "
                                 "footer)")
    raw = bytearray(index.read_bytes())
    raw[-48] = 0xFF  # the footer's first block handle: a varint that runs on
    raw[-47:-38] = b"\xff" * 9
    (tmp_path / "odd.index").write_bytes(bytes(raw))
    cases["a corrupt footer"] = (tmp_path / "odd", f"{tmp_path / 'odd'}.index: not a "
                                 "TensorFlow checkpoint index")
    cases["no index"] = (tmp_path / "none", f"{tmp_path / 'none'}.index: no such checkpoint "
                                            "(PREFIX.index)")
    for what, (prefix, message) in cases.items():
        with pytest.raises(CheckpointError) as err:
            Checkpoint(prefix)
        assert str(err.value).startswith(message) and "\n" not in str(err.value), what
    # a record whose shape says 127 values where its bytes hold 64: refused before reading
    raw = bytearray(index.read_bytes())
    # the keys are prefix-compressed: the root conv's entry is its suffix, then its record,
    # whose TensorShapeProto is { dim { size: 64 } } (the only 64-value biases in the net)
    dim = raw.index(b"conv1/biases\x08\x01\x12\x04\x12\x02\x08\x40") + 19
    assert raw[dim] == 0x40
    raw[dim] = 0x7F
    (tmp_path / "lying.index").write_bytes(bytes(raw))
    (tmp_path / "lying.data-00000-of-00001").write_bytes(data.read_bytes())
    lying = Checkpoint(tmp_path / "lying")
    assert lying.shape("resnet_v2_50/conv1/biases") == (127,)
    with pytest.raises(CheckpointError, match=r"variable 'resnet_v2_50/conv1/biases': its "
                                              r"record \(256 bytes in shard 0\) does not fit "
                                              r"its shape \[127\]"):
        lying.read("resnet_v2_50/conv1/biases")
    short = tmp_path / "short"
    (tmp_path / "short.index").write_bytes(index.read_bytes())
    (tmp_path / "short.data-00000-of-00001").write_bytes(data.read_bytes()[:1000])
    r = run_cli("convert", "resnet50_v2", "--checkpoint", short, "--to", "caffemodel", "-o",
                tmp_path / "m.caffemodel")
    assert r.returncode == 2 and not (tmp_path / "m.caffemodel").exists()
    assert "lies past the end of" in r.stderr.strip().splitlines()[-1]
    assert r.stderr.strip().splitlines()[-1].endswith("(truncated?)")


def test_mutated_indexes_load_or_fail_in_one_line(tmp_path, resnet_v2_50):
    """Hundreds of damaged copies of a real index (bytes flipped, cut, duplicated): each one
    opens and reads, or raises CheckpointError -- never another exception, never a hang."""
    import random
    from prototxt_gen.errors import NetError
    ckpt = resnet_v2_50[0]
    good = (ckpt.parent / "model.ckpt.index").read_bytes()
    data = (ckpt.parent / "model.ckpt.data-00000-of-00001").read_bytes()
    (tmp_path / "m.data-00000-of-00001").write_bytes(data)
    rng = random.Random(0)
    outcomes = {"read": 0, "refused": 0}
    for _ in range(300):
        raw = bytearray(good)
        how = rng.randrange(3)
        if how == 0:
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        elif how == 1:
            del raw[rng.randrange(len(raw)):rng.randrange(len(raw))]
            raw += good[-48:]  # keep a footer: the blocks are what is damaged
        else:
            at = rng.randrange(len(raw))
            raw[at:at] = raw[at:at + rng.randint(1, 64)]
        (tmp_path / "m.index").write_bytes(bytes(raw))
        try:
            c = Checkpoint(tmp_path / "m")
            for name in c.names[:20]:
                c.read(name)
            outcomes["read"] += 1
        except NetError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50 and sum(outcomes.values()) == 300
