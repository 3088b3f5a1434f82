"""The package's shape: registries refuse a second registration unless it asks to replace,
and no module imports one that imports it back (tools/architecture.py measures)."""
import subprocess
import sys

import pytest

from prototxt_gen import kinds, shapes
from prototxt_gen.blocks import register

from conftest import ROOT


def test_no_import_cycles():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "architecture.py")],
                       capture_output=True, text=True)
    assert ", 0 import cycle(s)" in r.stdout.splitlines()[0], r.stdout
    assert "cycle:" not in r.stdout


def _registries():
    torch_conv = pytest.importorskip("prototxt_gen.pytorch").converter
    onnx_conv = pytest.importorskip("prototxt_gen.onnx").converter
    return [("a shape rule", shapes.rule, "Convolution"),
            ("a PyTorch converter", torch_conv, "Convolution"),
            ("an ONNX converter", onnx_conv, "Convolution")]


def test_registries_refuse_a_second_registration():
    for what, decorator, name in _registries():
        with pytest.raises(ValueError, match=f"^{what} for '{name}' is already registered "
                           r"\(pass replace=True to replace it\)$"):
            decorator(name)(lambda *a: None)
    with pytest.raises(ValueError, match="^a kind for 'resnet' is already registered"):
        register(kinds.STEMS, "resnet", "again")(lambda b: None)


def test_replace_is_explicit():
    original = shapes.RULES["ReLU"]
    try:
        shapes.rule("ReLU", replace=True)(lambda layer, bottoms: ([bottoms[0]], []))
        assert shapes.RULES["ReLU"] is not original
    finally:
        shapes.RULES["ReLU"] = original
