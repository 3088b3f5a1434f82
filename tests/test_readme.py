"""README.md stays true: its commands are the ones CI runs, its Python example runs."""
import contextlib
import io
import re

from conftest import KAIMING, ROOT, run_cli

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)


def python_block(marker):
    """The README's one Python example containing `marker`."""
    (code,) = [body for lang, body in BLOCKS if lang == "python" and marker in body]
    return code


def test_opens_with_the_two_commands_and_ci_runs_the_second():
    (lang1, first), (lang2, second) = BLOCKS[:2]
    assert "prototxt-gen resnet50 > deploy.prototxt" in first and "python3 -m venv" in first
    assert "pytest" in second and "python3 -m venv" in second
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == second.strip()


def test_python_example_runs_and_prints_what_it_says():
    code = python_block("ParamCount")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    printed = out.getvalue()
    assert printed.startswith('name: "ResNet-50"\ninput: "data"\n')
    assert "\n64\nParamCount(learnable=25557096, batchnorm=53173)\n" in printed
    assert 'name: "tiny"\nlayer {\n  name: "data"\n  type: "Input"' in printed
    assert "pool1 [(1, 16, 16, 16)] []" in printed


def test_reading_example_runs(tmp_path, monkeypatch):
    from prototxt_gen import read_prototxt, write_caffemodel
    from weights import random_weights
    code = python_block("huge.caffemodel")
    release = (KAIMING / "ResNet-50-deploy.prototxt").read_text()
    monkeypatch.chdir(tmp_path)
    for name in ("deploy.prototxt", "train_val.prototxt"):
        (tmp_path / name).write_text(release)
    net = random_weights(read_prototxt("deploy.prototxt"))
    for name in ("model.caffemodel", "huge.caffemodel"):
        write_caffemodel(net, name)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue() == "[]\n"
    assert (tmp_path / "copy.caffemodel").read_bytes() == (tmp_path / "model.caffemodel").read_bytes()


def test_info_excerpt_is_real_output():
    (block,) = [body for lang, body in BLOCKS if body.startswith("$ prototxt-gen info ResNet-50")]
    shown = [line for line in block.splitlines()[1:] if line and line != "..."]
    real = run_cli("info", KAIMING / "ResNet-50-deploy.prototxt").stdout.splitlines()
    for line in shown:
        if line.endswith("..."):
            assert any(r.startswith(line[:-3]) for r in real), line
        else:
            assert line in real, line


def run_translation_example(marker, tmp_path, monkeypatch):
    """Run the README's example containing `marker` where deploy.prototxt is ResNet-50's and
    model.caffemodel holds random weights for it; returns what it printed."""
    from prototxt_gen import read_prototxt, write_caffemodel
    from weights import random_weights
    code = python_block(marker)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deploy.prototxt").write_text((KAIMING / "ResNet-50-deploy.prototxt").read_text())
    write_caffemodel(random_weights(read_prototxt("deploy.prototxt")), "model.caffemodel")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    return out.getvalue()


def test_pytorch_example_runs(tmp_path, monkeypatch):
    assert run_translation_example("to_torch", tmp_path, monkeypatch) == \
        "('prob',) (1, 1000) (1, 256, 56, 56)\n"


def test_onnx_example_runs(tmp_path, monkeypatch):
    assert run_translation_example("to_onnx", tmp_path, monkeypatch) == \
        "['data'] ['res2a', 'prob'] (2, 1000) ['conv1@scale_conv1']\n"


def test_pictures_it_shows_exist():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images and all((ROOT / image).is_file() for image in images)


def test_fork_layer_example_translates_in_both_back_ends():
    """The README's fork layer, declared as shown, runs in PyTorch and ONNX (in a child, so
    that the registration does not outlive the test)."""
    import subprocess
    import sys
    code = python_block('@rule("Twice")') + """
import numpy as np, onnxruntime as ort, torch
from prototxt_gen.backends.onnx import to_onnx
from prototxt_gen.backends.pytorch import to_torch
from prototxt_gen.view.render import family
x = np.arange(3, dtype=np.float32).reshape(1, 3)
print(to_torch(net)(torch.from_numpy(x)).tolist())
session = ort.InferenceSession(to_onnx(net).SerializeToString())
print(session.run(None, {"data": x})[0].tolist(), family("Twice")[0])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "[[0.0, 2.0, 4.0]]\n[[0.0, 2.0, 4.0]] activation\n"
