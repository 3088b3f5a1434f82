"""The package's shape: registries refuse a second registration unless it asks to replace,
no module imports one that imports it back or one of a layer above (tools/architecture.py
measures), and each Caffe layer type is declared whole in one module of prototxt_gen.layers."""
import subprocess
import sys

import pytest

from prototxt_gen.build import kinds
from prototxt_gen.graph import shapes
from prototxt_gen.build.blocks import register

from conftest import ROOT


def test_no_import_cycles_and_none_up_the_layers():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "architecture.py")],
                       capture_output=True, text=True)
    assert ", 0 import cycle(s), 0 import(s) up the layers" in r.stdout.splitlines()[0], r.stdout
    assert "cycle:" not in r.stdout


def test_the_layer_check_finds_an_upward_import():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import architecture
    finally:
        sys.path.pop(0)
    graph = {"prototxt_gen.graph.net": {"prototxt_gen.layers.pooling", "prototxt_gen.errors"},
             "prototxt_gen.view.render": {"prototxt_gen.caffe.reader", "prototxt_gen.graph.net"},
             "prototxt_gen.backends.verify": {"prototxt_gen.view.render", "prototxt_gen"}}
    assert architecture.upward(graph) == [
        ("prototxt_gen.graph.net", "prototxt_gen.layers.pooling"),
        ("prototxt_gen.view.render", "prototxt_gen.caffe.reader")]


def _registries():
    torch_conv = pytest.importorskip("prototxt_gen.backends.pytorch").converter
    onnx_conv = pytest.importorskip("prototxt_gen.backends.onnx").converter
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


def test_the_code_cites_sections_docs_has():
    """Caffe's semantics are written in docs/caffe.md; every `docs/caffe.md §N` the package
    cites names a section that exists."""
    import re
    sections = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "caffe.md").read_text(), re.M))
    cited = set()
    for path in (ROOT / "prototxt_gen").rglob("*.py"):
        for group in re.findall(r"docs/caffe\.md \(?((?:§[\d-]+[, ]*(?:[a-z ]+)?)+)",
                                path.read_text()):
            for a, b in re.findall(r"§(\d+)(?:-(\d+))?", group):
                cited.update(map(str, range(int(a), int(b or a) + 1)))
    assert cited and cited <= sections, cited - sections
    assert "caffe_facts" not in "".join(p.read_text() for p in (ROOT / "prototxt_gen").rglob("*.py"))


def test_every_translatable_layer_type_has_every_piece():
    """A layer type the translators handle must have all of: a shape rule, a PyTorch and an
    ONNX converter, a drawing family, and a numeric check -- a NumPy reading of Caffe's loop
    (numpy_ref.REF) or a place in a file compared blob by blob with OpenCV (the zoo, but
    SE-ResNet whose Axpy is rewritten, tests/data/shapes_zoo.prototxt, ssd_head.prototxt,
    interp.prototxt, roi_pooling.prototxt and psroi_pooling.prototxt). Registering a
    converter without the rest fails here."""
    pytorch = pytest.importorskip("prototxt_gen.backends.pytorch")
    onnx = pytest.importorskip("prototxt_gen.backends.onnx")
    import numpy_ref
    from prototxt_gen.caffe.reader import read_prototxt
    from prototxt_gen.registry import FAMILIES
    from conftest import DATA, ZOO
    against_opencv = set()
    for path in [p for p in ZOO.glob("*.prototxt") if p.name != "SE-ResNet-50.prototxt"] \
            + [DATA / "shapes_zoo.prototxt", DATA / "ssd_head.prototxt",
               DATA / "interp.prototxt", DATA / "roi_pooling.prototxt",
               DATA / "psroi_pooling.prototxt"]:
        against_opencv |= {layer.type for layer in read_prototxt(path).layers}
    drawn = set(FAMILIES)
    missing = {}
    for t in sorted(set(pytorch.CONVERTERS) | set(onnx.CONVERTERS)):
        lacks = [piece for piece, ok in (
            ("shape rule", t in shapes.RULES), ("PyTorch converter", t in pytorch.CONVERTERS),
            ("ONNX converter", t in onnx.CONVERTERS), ("drawing family", t in drawn),
            ("numeric check", t in numpy_ref.REF or t in against_opencv)) if not ok]
        if lacks:
            missing[t] = lacks
    assert not missing, missing


def test_each_layer_type_is_declared_in_one_module():
    """Every piece a built-in layer type has -- shape rule, lowerings, placeholder, MAC count,
    node label -- is declared in the same module of prototxt_gen.layers, so that adding or
    changing a type touches one file of the package (HardSwish and Mish: layers/activation.py)."""
    pytest.importorskip("prototxt_gen.backends.pytorch")
    from prototxt_gen import registry
    import prototxt_gen.layers as layers
    where: dict[str, set[str]] = {}
    for table in (registry.RULES, registry.TORCH, registry.ONNX, registry.PLACEHOLDERS,
                  registry.MACS, registry.LABELS):
        for t, fn in table.items():
            module = getattr(fn, "__module__", "")
            if module.startswith(layers.__name__):
                where.setdefault(t, set()).add(module)
    spread = {t: sorted(m) for t, m in where.items() if len(m) > 1}
    assert not spread, spread
    assert where["HardSwish"] == where["Mish"] == {"prototxt_gen.layers.activation"}
    # drawing families are declared beside the rules: no table elsewhere lists layer types,
    # and no function elsewhere asks for one by name
    import inspect
    import prototxt_gen.graph.shapes as shapes_module
    import prototxt_gen.view.render as render
    assert not any(isinstance(v, (tuple, list, set)) and "Convolution" in v
                   for v in vars(render).values())
    for module in (render, shapes_module):
        assert '"Convolution"' not in inspect.getsource(module), module.__name__
