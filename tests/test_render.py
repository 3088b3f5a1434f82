"""Netscope-style pictures: every zoo network renders to an SVG (through Graphviz's dot) with one
node per layer that is not merged in place, edges labelled with the shapes shape inference gives,
and node colours that follow the legend."""
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

graphviz = pytest.importorskip("graphviz")

from prototxt_gen import generate
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.view.drawing import render
from prototxt_gen.view.render import block_of, family, picture, to_dot
from prototxt_gen.graph.shapes import infer

from conftest import DATA, ZOO, assert_error, run_cli

SVG = "{http://www.w3.org/2000/svg}"
# .ci/run installs Graphviz; elsewhere, without it, the tests that run dot are skipped.
needs_dot = pytest.mark.skipif(shutil.which("dot") is None and not os.environ.get("CI"),
                               reason="Graphviz's dot is not installed (apt-get install graphviz)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                    reason="Chromium is not installed (apt-get install chromium)")
ZOO_FILES = sorted(p.name for p in ZOO.glob("*.prototxt"))
# The fill each zoo layer type must get, written out here rather than read from the package
# (a test that derives its expectation from the table it checks cannot fail): Netscope's
# palette -- convolutions blue, pooling orange, inner products purple, normalization green,
# activations red, element-wise and concat yellow, softmax pink.
COLOUR = {
    "Convolution": "#8ec7ee", "Pooling": "#f6b26b", "InnerProduct": "#b4a7d6",
    "BatchNorm": "#b6d7a8", "Scale": "#b6d7a8", "LRN": "#b6d7a8",
    "ReLU": "#ea9999", "Sigmoid": "#ea9999", "Dropout": "#ea9999",
    "Eltwise": "#ffe599", "Concat": "#ffe599", "Axpy": "#ffe599",
    "Softmax": "#d5a6bd",
}


def svg_of(net, tmp_path, **kwargs):
    path = tmp_path / "net.svg"
    render(net, path, **kwargs)
    return ET.parse(path).getroot()


def nodes_and_edges(root):
    groups = list(root.iter(f"{SVG}g"))
    nodes = {g.get("id"): g for g in groups if "node" in (g.get("class") or "").split()}
    edges = [g for g in groups if g.get("class") == "edge"]
    return nodes, edges


def expected(net):
    """Computed here from the net: the layers that get their own node (not in place on a blob
    some node holds), and the shape on each edge into them (batch left out)."""
    held = {b.name for b in net.inputs}
    own, labels = [], []
    for s in infer(net):
        layer = s.layer
        if layer.in_place and layer.bottom[0] in held:
            continue
        own.append(layer)
        labels += ["×".join(map(str, shape[1:] if len(shape) >= 2 else shape))
                   for b, shape in zip(layer.bottom, s.bottoms) if b in held]
        held.update(layer.top)
    return own, labels


@needs_dot
@pytest.mark.parametrize("name", ZOO_FILES)
def test_zoo_renders_one_node_per_layer_with_shapes_and_colours(tmp_path, name):
    net = read_prototxt(ZOO / name)
    root = svg_of(net, tmp_path)
    nodes, edges = nodes_and_edges(root)
    own, labels = expected(net)
    declared = [b.name for b in net.inputs]
    assert sorted(nodes) == sorted([f"layer:{layer.name}" for layer in own]
                                   + [f"input:{b}" for b in declared]
                                   + [f"legend:{f}" for f in _families(own, declared)])
    got = sorted(e.find(f"{SVG}text").text for e in edges if e.find(f"{SVG}text") is not None)
    assert got == sorted(labels)
    legend = {node_id.split(":", 1)[1]: _fill(g) for node_id, g in nodes.items()
              if node_id.startswith("legend:")}
    shapes = {s.layer.name: s.tops for s in infer(net)}
    for layer in own:
        g = nodes[f"layer:{layer.name}"]
        tooltip = g.find(f".//{SVG}a").get("{http://www.w3.org/1999/xlink}title")
        assert tooltip.startswith(f"{layer.name} ({layer.type})")
        for top, shape in zip(layer.top, shapes[layer.name]):
            assert f"→ {top} {'×'.join(map(str, shape[1:] if len(shape) >= 2 else shape))}" \
                in tooltip, layer.name
        fam = family(layer.type)[0]
        assert _fill(g) == legend[fam] == COLOUR[layer.type], layer.name
        assert fam.replace(" / ", "-").replace(" ", "-") in g.get("class")


def _families(own, declared):
    fams = {family(layer.type)[0]
            for layer in own}
    return fams | ({"data"} if declared else set())


def _fill(g):
    shape = g.find(f".//{SVG}path")
    shape = shape if shape is not None else g.find(f".//{SVG}polygon")
    return shape.get("fill")


def test_in_place_layers_are_listed_in_their_producer():
    net = generate("resnet50")
    pic = picture(net)
    conv1 = next(n for n in pic.nodes if n.id == "layer:conv1")
    assert conv1.merged == [("bn_conv1", "BatchNorm"), ("scale_conv1", "Scale"),
                            ("conv1_relu", "ReLU")]
    assert conv1.params == ["7×7, /2, pad 3", "64 outputs"]
    # 1 input + 53 convolutions + 16 Eltwise + 2 pools + fc + softmax; BN/Scale/ReLU merged.
    assert len(pic.nodes) == 74
    dot = to_dot(net)
    assert '"bn_conv1 (BatchNorm)' not in dot and "bn_conv1 (BatchNorm)" in dot


@needs_dot
def test_collapse_draws_one_node_per_block(tmp_path):
    net = generate("resnet152")
    pic = picture(net, collapse=True)
    blocks = [n for n in pic.nodes if n.block]
    assert len(blocks) == 3 + 8 + 36 + 3
    res2a = next(n for n in blocks if n.name == "res2a")
    assert res2a.params == ["block of 16 layers", "4 Convolution, 1 Eltwise + 11 in place"]
    # Block to block, the edges carry the shapes between units.
    edge = next(e for e in pic.edges if e.src == "block:res2a" and e.dst == "block:res2b")
    assert edge.shape == (1, 256, 56, 56)
    assert block_of("inception_3a/1x1") == "inception_3a"
    assert block_of("bn4b22_branch2a") == "res4b22" and block_of("conv1") is None
    custom = picture(net, collapse=r"^(?:res|bn|scale)(\d)")  # one node per stage
    assert sorted(n.name for n in custom.nodes if n.block) == ["2", "3", "4", "5"]
    root = svg_of(net, tmp_path, collapse=True, rankdir="LR")
    nodes, _ = nodes_and_edges(root)
    assert "block:res4b22" in nodes


@needs_dot
def test_formats_and_the_dot_program(tmp_path):
    net = read_prototxt(ZOO / "lenet.prototxt")
    for fmt, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")):
        render(net, tmp_path / f"lenet.{fmt}")
        assert (tmp_path / f"lenet.{fmt}").read_bytes().startswith(magic)
    render(net, tmp_path / "lenet.picture", fmt="svg")
    assert (tmp_path / "lenet.picture").read_bytes().startswith(b"<?xml")
    # Without dot on the PATH: .dot still works, other formats fail with a hint.
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))
    r = run_cli("render", ZOO / "lenet.prototxt", "-o", tmp_path / "l.dot", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "l.dot").read_text().startswith("digraph")
    assert_error(run_cli("render", ZOO / "lenet.prototxt", "-o", tmp_path / "l2.svg", env=env),
                 f"{tmp_path / 'l2.svg'}: rendering svg needs Graphviz's dot program "
                 "(Debian/Ubuntu: apt-get install graphviz); .dot output works without it",
                 code=1)
    assert not (tmp_path / "l2.svg").exists()


@needs_dot
def test_cli_render(tmp_path):
    r = run_cli("render", "resnet50", "-o", tmp_path / "r50.svg", "--collapse")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert b"block:res5c" in (tmp_path / "r50.svg").read_bytes()
    r = run_cli("render", DATA / "shapes_zoo.prototxt", "-o", tmp_path / "z.dot",
                "--rankdir", "LR")
    assert r.returncode == 0 and "rankdir=LR" in (tmp_path / "z.dot").read_text()
    assert_error(run_cli("render", "resnet50", "-o", tmp_path / "r50.txt"),
                 f"{tmp_path / 'r50.txt'}: cannot tell the format from the name; give "
                 "--format (svg, png, pdf, dot, html)")
    assert_error(run_cli("render", "resnet50", "-o", tmp_path / "r.svg", "--collapse", "res"),
                 "--collapse 'res': the expression needs a group, (...), naming the block")
    assert not list(tmp_path.glob("r*.txt")) and not (tmp_path / "r.svg").exists()


@needs_dot
def test_train_val_renders_each_phase(tmp_path):
    """A train_val file: Data layers have no known shapes (their edges go unlabelled), and
    the phase picks the layers."""
    path = DATA / "lenet_train_val.prototxt"
    for phase, has_accuracy in (("TRAIN", False), ("TEST", True)):
        out = tmp_path / f"{phase}.svg"
        r = run_cli("render", path, "--phase", phase, "-o", out)
        assert r.returncode == 0, r.stderr
        nodes, edges = nodes_and_edges(ET.parse(out).getroot())
        assert ("layer:accuracy" in nodes) == has_accuracy
        assert {"layer:mnist", "layer:conv1", "layer:ip2", "layer:loss"} <= set(nodes)
        labels = [e.find(f"{SVG}text") for e in edges]
        assert all(label is None for label in labels)  # every shape follows the Data layer


def dump_dom(page, fragment=""):
    """The page's DOM after its scripts ran, from headless Chromium."""
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--dump-dom", page.as_uri() + fragment],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def table_rows(dom, table_id):
    table = re.search(rf'<table id="{table_id}".*?</table>', dom, re.S).group(0)
    body = re.search(r"<tbody>(.*?)</tbody>", table, re.S).group(1)
    return [re.findall(r'<td(?: data-v="(-?\d+)")?>(.*?)</td>', row)
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


@needs_dot
@needs_chromium
def test_html_report_in_headless_chromium(tmp_path):
    """The report is one file that needs nothing else; in a browser its scripts run, the graph
    and both tables are there, and sorting by a column orders the rows."""
    from prototxt_gen.view.info import analyze
    net = generate("resnet50")
    page = tmp_path / "r50.html"
    render(net, page, collapse=True)
    text = page.read_text()
    assert not re.findall(r"""(?:src|href)\s*=\s*["'](?!#)""", text)  # nothing to fetch
    dom = dump_dom(page, "#sort=layers:macs:desc")
    assert 'data-ready="1"' in dom
    assert len(re.findall(r'<g id="(?:input|layer|block):[^"]*" class="node ', dom)) == 22
    rows = table_rows(dom, "layers")
    layers = analyze(net).layers
    assert len(rows) == len(layers) == 228
    macs = [int(r[5][0]) for r in rows]
    assert macs == sorted((r.macs for r in layers), reverse=True)
    assert rows[0][0][1] == "conv1"  # 118,013,952 MACs: the largest
    assert '<th data-key="macs" data-kind="num" class="desc">' in dom
    # Hovering a block shows each of its layers: parameters, in-place layers, output shapes.
    tip = re.search(r'<g id="a_block:res2a"><a xlink:title="([^"]*)"', dom).group(1)
    assert ("res2a_branch2b (Convolution); 3×3, /1, pad 1; 64 outputs; bn2a_branch2b "
            "(BatchNorm); scale2a_branch2b (Scale); res2a_branch2b_relu (ReLU); → "
            "res2a_branch2b 64×56×56") in tip
    dom = dump_dom(page, "#sort=blocks:params:asc")
    blocks = table_rows(dom, "blocks")
    assert len(blocks) == 16
    params = [int(r[3][0]) for r in blocks]
    assert params == sorted(params) and params[0] < params[-1]
    assert blocks[-1][0][1].startswith("res5")  # the widest units hold the most weights
    assert {r[0][1]: r[2][1] for r in blocks}["res4f"] == "1×1024×14×14"  # a block's output
    # Unsorted, the layers come in execution order.
    assert table_rows(dump_dom(page), "layers")[0][0][1] == "conv1"
