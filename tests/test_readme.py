"""README.md stays true: its commands are the ones CI runs, its Python example runs."""
import contextlib
import io
import re

from conftest import ROOT

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)


def test_opens_with_the_two_commands_and_ci_runs_the_second():
    (lang1, first), (lang2, second) = BLOCKS[:2]
    assert "prototxt-gen resnet50 > deploy.prototxt" in first and "python3 -m venv" in first
    assert "pytest" in second and "python3 -m venv" in second
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == second.strip()


def test_python_example_runs_and_prints_what_it_says():
    (code,) = [body for lang, body in BLOCKS if lang == "python"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    printed = out.getvalue()
    assert printed.startswith('name: "ResNet-50"\ninput: "data"\n')
    assert "\n64\nParamCount(learnable=25557096, batchnorm=53173)\n" in printed
    assert 'name: "tiny"\nlayer {\n  name: "data"\n  type: "Input"' in printed
    assert "pool1 [(1, 16, 16, 16)] []" in printed
