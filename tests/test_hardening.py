"""Untrusted input: each class of failure issue 13 found (injection into generated files,
tracebacks, resource exhaustion, unsafe outputs, exit codes) has a regression test here; the
fuzzer (test_fuzz.py) looks for new ones."""
import html.parser
import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
import torch

from prototxt_gen.cli import INTERNAL_ERROR, main
from prototxt_gen.errors import escape_controls
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.view.render import picture

from conftest import ROOT, ZOO, run_cli

# Names that closed strings in generated code, started markup or format fields, or split lines.
HOSTILE = ['"""', "'''", "a\\", "\\", "x\n__import__('os').system('touch PWNED')\n#",
           "\u2028", "</script><script>alert(1)</script>", "<x>", "{}", "{0}", "é名前",
           "\"\"\"; import os; os.system('touch PWNED') #", "a\\\\nb", "\\N"]


def _quote(name: str) -> str:
    """A prototxt string literal for `name`."""
    return '"' + name.encode("utf-8").decode("latin-1").encode("unicode_escape").decode(
        "ascii").replace('"', '\\"') + '"'


def hostile_net(tmp_path):
    """A small net whose net, input, layer and blob names are all hostile; returns its path."""
    lines = [f"name: {_quote(HOSTILE[0] + HOSTILE[4])}", f"input: {_quote(HOSTILE[0])}",
             "input_dim: 1", "input_dim: 2", "input_dim: 6", "input_dim: 6"]
    bottom = HOSTILE[0]
    for k, name in enumerate(HOSTILE[1:]):
        kind = ("Convolution" if k == 0 else "ReLU")
        top = bottom if kind == "ReLU" and k % 2 else name + f"#{k}"
        param = "convolution_param { num_output: 3 kernel_size: 3 pad: 1 }" if k == 0 else ""
        lines.append(f"layer {{ name: {_quote(name)} type: \"{kind}\" bottom: {_quote(bottom)} "
                     f"top: {_quote(top)} {param} }}")
        bottom = top
    path = tmp_path / "hostile.prototxt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_hostile_names_read_back_exactly(tmp_path):
    net = read_prototxt(hostile_net(tmp_path))
    assert [layer.name for layer in net.layers] == HOSTILE[1:]
    assert net.inputs[0].name == '"""'


def test_hostile_names_survive_the_python_export_and_nothing_planted_runs(tmp_path):
    path = hostile_net(tmp_path)
    out = tmp_path / "m.py"
    r = run_cli("convert", path, "--to", "python", "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spec = importlib.util.spec_from_file_location("hostile_module", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # importing runs nothing planted
    cls = next(v for v in vars(module).values()
               if isinstance(v, type) and issubclass(v, torch.nn.Module) and
               v.__module__ == "hostile_module")
    model = cls()
    model.load_state_dict(torch.load(tmp_path / "m.pth", weights_only=True))
    assert model(torch.randn(1, 2, 6, 6)).shape == (1, 3, 6, 6)
    assert not list(tmp_path.glob("PWNED")) and not (ROOT / "PWNED").exists()
    # The docstring names what the net calls them, escaped but readable.
    assert module.__doc__.count('\\"\\"\\"') == 0 and '"""' in module.__doc__


def test_hostile_names_survive_onnx(tmp_path):
    r = run_cli("convert", hostile_net(tmp_path), "--to", "onnx", "-o", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    model = onnx.load(tmp_path / "m.onnx")
    assert model.graph.input[0].name == '"""'
    names = {n.name for n in model.graph.node}
    assert set(HOSTILE[1:]) <= names


def test_hostile_names_survive_dot_svg_and_html(tmp_path):
    path = hostile_net(tmp_path)
    for fmt in ("dot", "svg", "html"):
        r = run_cli("render", path, "-o", tmp_path / f"g.{fmt}")
        assert r.returncode == 0, (fmt, r.stderr)
        assert "warning" not in r.stderr
    svg = ET.parse(tmp_path / "g.svg").getroot()  # well-formed XML
    ids = {e.get("id") for e in svg.iter()}
    # Each node's id is its layer's name, intact (control characters shown as escapes).
    nodes = [n.id for n in picture(read_prototxt(path)).nodes]
    assert len(nodes) >= 6 and {escape_controls(n) for n in nodes} <= ids
    page = (tmp_path / "g.html").read_text()
    assert page.count("<script>") == 1 and "<script>alert" not in page

    class Text(html.parser.HTMLParser):
        cells: list = []

        def handle_data(self, data):
            self.cells.append(data)
    parser = Text()
    parser.feed(page)
    # Shown as text, in the table (" *": in place).
    assert "</script><script>alert(1)</script> *" in parser.cells


def test_hostile_names_survive_info_json_and_caffemodel(tmp_path):
    path = hostile_net(tmp_path)
    r = run_cli("info", path, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert [row["name"] for row in json.loads(r.stdout)["layers"]][1:] == HOSTILE[2:]
    r = run_cli("info", path)
    assert r.returncode == 0 and "\u2028" not in r.stdout  # the table shows it escaped
    from prototxt_gen.caffe.weights import read_caffemodel_net, write_caffemodel
    net = read_prototxt(path)
    net.layers[0].blobs = [np.ones((3, 2, 3, 3), np.float32), np.zeros(3, np.float32)]
    write_caffemodel(net, tmp_path / "w.caffemodel")
    assert [layer.name for layer in read_caffemodel_net(tmp_path / "w.caffemodel").layers] \
        == HOSTILE[1:]


def test_hostile_spec_names_are_refused_or_quoted(tmp_path):
    spec = (ROOT / "templates" / "resnet18.toml").read_text()
    spec = spec.replace('name = "ResNet-18"', 'name = "a\\"b\\nc"')
    (tmp_path / "s.toml").write_text(spec)
    r = run_cli("--spec", tmp_path / "s.toml")
    assert r.returncode == 0, r.stderr
    assert read_prototxt("s", text=r.stdout).name == 'a"b\nc'


# -- tracebacks become one line -------------------------------------------------------------------

def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert err.count("\n") <= 1 and "Traceback" not in err, err
    return code, err


@pytest.mark.parametrize("text,message", [
    ('name: "a\\x"', "bad escape in a string"),
    ("layer { " + "a { " * 1000 + "} " * 1001, "messages nested more than 100 deep"),
    ('name: "\n', "unexpected character"),
])
def test_bad_prototxt_text_is_one_line(tmp_path, capsys, text, message):
    (tmp_path / "n.prototxt").write_text(text)
    code, err = _run(capsys, "info", tmp_path / "n.prototxt")
    assert code == 2 and message in err


def test_a_cycle_through_thousands_of_layers_is_named_not_recursed(tmp_path, capsys):
    n = 5000
    lines = ['input: "data" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1']
    lines += [f'layer {{ name: "l{k}" type: "ReLU" bottom: "b{(k + 1) % n}" top: "b{k}" }}'
              for k in range(n)]
    (tmp_path / "n.prototxt").write_text("\n".join(lines))
    code, err = _run(capsys, "info", tmp_path / "n.prototxt")
    assert code == 2 and "the graph has a cycle: 'l4999' -> " in err and "more)" in err


@pytest.mark.parametrize("param,message", [
    ("convolution_param { num_output: 0 kernel_size: 1 }", "num_output must be positive"),
    ("inner_product_param { num_output: 0 }", "num_output must be positive"),
])
@pytest.mark.parametrize("command", [["info"], ["convert", "--to", "python", "-o", "m.py"],
                                     ["convert", "--to", "onnx", "-o", "m.onnx"]])
def test_zero_outputs_are_refused_by_every_command(tmp_path, capsys, param, message, command):
    kind = "Convolution" if "convolution" in param else "InnerProduct"
    (tmp_path / "n.prototxt").write_text(
        'input: "data" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4\n'
        f'layer {{ name: "l" type: "{kind}" bottom: "data" top: "l" {param} }}')
    os.chdir(tmp_path)
    code, err = _run(capsys, command[0], tmp_path / "n.prototxt", *command[1:])
    assert code == 2 and message in err and "layer 'l'" in err
    assert not list(tmp_path.glob("m.*"))


@pytest.mark.parametrize("group,message", [
    ("0", "must be a positive integer, not 0"), ("1e300", "not 1e+300"),
    ('"two"', "not 'two'"), ("5", "group 5 does not divide the 6 channels")])
def test_shuffle_channel_group_is_checked_before_translation(tmp_path, capsys, group, message):
    (tmp_path / "n.prototxt").write_text(
        'input: "data" input_dim: 1 input_dim: 6 input_dim: 4 input_dim: 4\n'
        'layer { name: "s" type: "ShuffleChannel" bottom: "data" top: "s" '
        f'shuffle_channel_param {{ group: {group} }} }}')
    for command in (["info"], ["convert", "--to", "onnx", "-o", str(tmp_path / "m.onnx")],
                    ["convert", "--to", "python", "-o", str(tmp_path / "m.py")]):
        code, err = _run(capsys, command[0], tmp_path / "n.prototxt", *command[1:])
        assert code == 2 and message in err, err
        assert not list(tmp_path.glob("m.*"))


def test_caffemodel_blob_shapes_beyond_any_machine_are_refused(tmp_path, capsys):
    from prototxt_gen.proto import caffe_pb2
    net = caffe_pb2.NetParameter(name="n")
    for k, dims in enumerate([[-1, 3], [2**40, 2**40], [2**62]]):
        layer = net.layer.add(name=f"l{k}", type="InnerProduct")
        layer.blobs.add().shape.dim.extend(dims)
    (tmp_path / "w.caffemodel").write_bytes(net.SerializeToString())
    (tmp_path / "n.prototxt").write_text(
        'input: "data" input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1\n'
        'layer { name: "l0" type: "InnerProduct" bottom: "data" top: "f" '
        'inner_product_param { num_output: 2 } }')
    code, err = _run(capsys, "info", tmp_path / "n.prototxt", "--weights",
                     tmp_path / "w.caffemodel")
    assert code == 2 and "w.caffemodel" in err
    code, err = _run(capsys, "info", tmp_path / "w.caffemodel")
    assert code == 2 and "w.caffemodel" in err


@pytest.mark.parametrize("snippet,message", [
    ("units = 2\n", None),
    ("units = 4294967296\n", "stage[0].units: expected a positive integer (at most 2147483647"),
    ("units = 100000\nsuffix = \"numbered\"\n", "more than 50000 layers generated (set "
                                               "PROTOTXT_GEN_MAX_LAYERS"),
    ("units = 2\nblock_channels = 99999999999\n", "unknown key"),
    ("units = [2]\n", "stage[0].units: expected a positive integer, got [2]"),
])
def test_spec_integers_are_bounded(tmp_path, capsys, snippet, message):
    spec = (ROOT / "templates" / "resnet18.toml").read_text().replace("units = 2\n", snippet, 1)
    (tmp_path / "s.toml").write_text(spec)
    code, err = _run(capsys, "--spec", tmp_path / "s.toml", "-o", tmp_path / "o.prototxt")
    if message is None:
        assert code == 0, err
    else:
        assert code == 2 and message in err, err


MINIMAL = """name = "n"
[input]
shape = [1, 3, 32, 32]
[naming]
conv = "res{unit}_branch{branch}"
[stem]
kind = "resnet"
[[stage]]
block = "basic"
units = 1
channels = 8
[head]
kind = "classifier"
"""


@pytest.mark.parametrize("text,message", [
    ("x = " + "[" * 1000 + "]" * 1000, "nested too deep"),
    (MINIMAL.replace('kind = "resnet"', 'kind = ["resnet"]'),
     'stem.kind: unknown stem kind ["resnet"]'),
    (MINIMAL.replace('kind = "resnet"', "kind = { a = 1 }"), "unknown stem kind a table"),
    (MINIMAL.replace('block = "basic"', 'block = ["basic"]'), "unknown block kind"),
    (MINIMAL.replace("units = 1", "units = 1\nchannels = 4294967296").replace(
        "channels = 8\n", ""), "stage[0].channels: expected a positive integer (at most "),
    (MINIMAL.replace("branch{branch}", "branch{branch:d}"),
     "placeholder {branch:d} takes no format"),
    (MINIMAL.replace("branch{branch}", "branch{branch!z}"),
     "placeholder {branch!z} takes no format"),
    (MINIMAL.replace("branch{branch}", "{unit.__class__}"), "unknown placeholder"),
])
def test_bad_specs_are_one_line(tmp_path, capsys, text, message):
    (tmp_path / "s.toml").write_text(text)
    code, err = _run(capsys, "--spec", tmp_path / "s.toml")
    assert code == 2 and message in err, err


def test_long_output_name_is_one_line(tmp_path, capsys):
    code, err = _run(capsys, "resnet18", "-o", tmp_path / ("x" * 300 + ".prototxt"))
    assert code == 1 and "file name too long" in err


# -- resource limits ------------------------------------------------------------------------------

class Measured:
    def __init__(self, rc, err, rss_mb, seconds):
        self.rc, self.detail, self.rss_mb, self.seconds = rc, err, rss_mb, seconds
        self.verdict = "ok" if rc in (0, 1, 2) and all(
            line.startswith("prototxt-gen: ") for line in err.splitlines()) else "bad"

    def __repr__(self):
        return f"exit {self.rc}, {self.rss_mb:.0f} MB, {self.seconds:.1f} s: {self.detail}"


# The CLI's main in a fresh interpreter that reports its own peak RSS (VmHWM: the kernel's
# ru_maxrss of a child would include this large test process, copied at fork).
_PEAK = """import sys
from prototxt_gen.cli import main
try:
    code = main(sys.argv[2:])
finally:
    with open("/proc/self/status") as f, open(sys.argv[1], "w") as out:
        out.write(next(l for l in f if l.startswith("VmHWM")).split()[1])
sys.exit(code)
"""


def _measure(tmp_path, argv, files, outputs=()):
    """Run the CLI in a fresh process as a user would; its exit, stderr, peak RSS and time."""
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path / ".peak"), *argv],
                       cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    for name in outputs:
        assert not (tmp_path / name).exists() or r.returncode == 0
    peak_kb = int((tmp_path / ".peak").read_text())
    return Measured(r.returncode, r.stderr, peak_kb / 1024, time.monotonic() - t0)


def test_tokenizer_memory_is_linear_in_a_huge_name(tmp_path):
    text = b'name: "' + b"a" * 10_000_000 + b'"\ninput: "d" input_dim: 1 input_dim: 1 ' \
        b'input_dim: 1 input_dim: 1\nlayer { name: "r" type: "ReLU" bottom: "d" top: "r" }\n'
    res = _measure(tmp_path, ["info", "n.prototxt"], {"n.prototxt": text})
    assert res.verdict == "ok" and res.rc == 0, res
    baseline = _measure(tmp_path, ["info", "n.prototxt"], {"n.prototxt": text[-100:]})
    assert res.rss_mb - baseline.rss_mb < 200, (res.rss_mb, baseline.rss_mb)


@pytest.mark.parametrize("command,dims,message", [
    (["convert", "n.prototxt", "--to", "pytorch", "-o", "m.pt2"], (1, 16, 10**6, 28),
     "exporting (initial weights and example inputs) would need"),
    (["convert", "n.prototxt", "--to", "onnx", "-o", "m.onnx"], (1, 30000, 1, 1),
     "placeholder weights for the layers without weights would need"),
    (["convert", "n.prototxt", "--to", "python", "-o", "m.py"], (1, 30000, 1, 1),
     "PyTorch's initial weights for the layers without weights would need"),
])
def test_tiny_files_asking_for_gigabytes_are_refused_before_allocating(tmp_path, command, dims,
                                                                        message):
    text = ('input: "d" ' + " ".join(f"input_dim: {d}" for d in dims) + "\n"
            'layer { name: "fc" type: "InnerProduct" bottom: "d" top: "fc" '
            "inner_product_param { num_output: 100000 } }\n").encode()
    assert len(text) < 250
    res = _measure(tmp_path, command, {"n.prototxt": text}, [command[-1]])
    assert res.verdict == "ok" and res.rc == 2, res
    assert message in res.detail and "PROTOTXT_GEN_MAX_MEMORY" in res.detail
    assert res.rss_mb < 1024 and res.seconds < 10


def test_the_memory_limit_can_be_raised(tmp_path, monkeypatch, capsys):
    (tmp_path / "n.prototxt").write_text(
        'input: "d" input_dim: 1 input_dim: 3000 input_dim: 1 input_dim: 1\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "d" top: "fc" '
        "inner_product_param { num_output: 30000 } }\n")  # 360 MB of weights
    monkeypatch.setenv("PROTOTXT_GEN_MAX_MEMORY", "256M")
    code, err = _run(capsys, "convert", tmp_path / "n.prototxt", "--to", "onnx",
                     "-o", tmp_path / "m.onnx")
    assert code == 2 and "over the 256.0 MiB limit" in err and "=1G" in err
    monkeypatch.setenv("PROTOTXT_GEN_MAX_MEMORY", "1G")
    code, err = _run(capsys, "convert", tmp_path / "n.prototxt", "--to", "onnx",
                     "-o", tmp_path / "m.onnx")
    assert code == 0 and (tmp_path / "m.onnx").stat().st_size > 360e6
    monkeypatch.setenv("PROTOTXT_GEN_MAX_MEMORY", "lots")
    code, err = _run(capsys, "convert", tmp_path / "n.prototxt", "--to", "onnx",
                     "-o", tmp_path / "m.onnx")
    assert code == 2 and "PROTOTXT_GEN_MAX_MEMORY='lots': expected a size" in err


def test_a_billion_units_stop_at_the_layer_limit(tmp_path):
    spec = (ROOT / "templates" / "resnet18.toml").read_text().replace(
        "units = 2", 'units = 1000000000\nsuffix = "numbered"', 1)
    res = _measure(tmp_path, ["--spec", "s.toml"], {"s.toml": spec.encode()})
    assert res.verdict == "ok" and res.rc == 2, res
    assert "more than 50000 layers generated" in res.detail
    assert res.seconds < 15 and res.rss_mb < 1024


# -- outputs --------------------------------------------------------------------------------------

def test_non_regular_outputs_are_refused_not_replaced(tmp_path, capsys):
    (tmp_path / "target").write_text("keep")
    os.symlink(tmp_path / "target", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    targets = {"link": "is a symbolic link", "fifo": "is not a regular file"}
    if os.geteuid() == 0:  # a device node of our own, never the system's /dev/null
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets["null"] = "is not a regular file"
    for name, message in targets.items():
        for argv in (["resnet18", "-o"], ["convert", "resnet18", "--to", "onnx", "-o"],
                     ["solver", "-o"], ["render", str(ZOO / "lenet.prototxt"), "--format",
                                        "dot", "-o"]):
            code, err = _run(capsys, *argv, tmp_path / name)
            assert code == 1 and message in err, (argv, err)
    assert os.path.islink(tmp_path / "link") and (tmp_path / "target").read_text() == "keep"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
    assert not list(tmp_path.glob(".*.part"))


@pytest.mark.parametrize("blocked", ["m.py", "m.pth"])
def test_module_and_weights_are_written_together_or_not_at_all(tmp_path, capsys, blocked):
    (tmp_path / blocked).mkdir()
    code, err = _run(capsys, "convert", ZOO / "lenet.prototxt", "--to", "python",
                     "-o", tmp_path / "m.py")
    assert code == 1 and "is a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [blocked]


@pytest.mark.parametrize("argv", [["convert", str(ZOO / "lenet.prototxt"), "--to", "onnx"],
                                  ["convert", str(ZOO / "lenet.prototxt"), "--to", "python"],
                                  ["render", str(ZOO / "lenet.prototxt")]])
def test_dash_means_standard_output_only_for_text_commands(tmp_path, capsys, argv):
    os.chdir(tmp_path)
    code, err = _run(capsys, *argv, "-o", "-")
    assert code == 2 and "writes files, not standard output" in err
    assert not list(tmp_path.iterdir())
    code = main(["resnet18", "-o", "-"])
    assert code == 0 and capsys.readouterr().out.startswith('name: "ResNet-18"')


def test_sigterm_while_writing_leaves_nothing(tmp_path):
    """SIGTERM arrives while the model is being written and checked (its .part file exists):
    the run ends with 143 and removes what it wrote, as Ctrl-C does."""
    proc = subprocess.Popen([sys.executable, "-m", "prototxt_gen", "convert", "resnet152",
                             "--to", "onnx", "-o", str(tmp_path / "m.onnx")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".m.onnx.*.part")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not list(tmp_path.iterdir())


# -- exit codes -----------------------------------------------------------------------------------

@pytest.fixture
def buggy_layer():
    """A layer type whose shape rule has a bug, as a user's registered rule might."""
    from prototxt_gen.graph.shapes import RULES, rule

    @rule("Buggy")
    def _buggy(layer, bottoms):
        return [bottoms[0]], [] if 1 / len(layer.top[1:]) else []
    yield
    del RULES["Buggy"]


def test_an_unexpected_exception_is_one_line_exit_70(tmp_path, capsys, monkeypatch, buggy_layer):
    (tmp_path / "n.prototxt").write_text(
        'input: "d" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1\n'
        'layer { name: "b" type: "Buggy" bottom: "d" top: "b" }\n')
    code = main(["info", str(tmp_path / "n.prototxt")])
    err = capsys.readouterr().err
    assert code == INTERNAL_ERROR == 70
    assert err.startswith("prototxt-gen: internal error: ZeroDivisionError: division by zero "
                          "at test_hardening.py:") and err.count("\n") == 1
    assert "(_buggy), from shapes.py:" in err
    assert "please report it (set PROTOTXT_GEN_DEBUG=1 for the traceback)" in err
    monkeypatch.setenv("PROTOTXT_GEN_DEBUG", "1")
    assert main(["info", str(tmp_path / "n.prototxt")]) == 70
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_library_warnings_are_one_line(tmp_path):
    # A string escape Python deprecates: the warning, if any, is ours and on one line.
    (tmp_path / "n.prototxt").write_text(
        'name: "a\\qb" input: "d" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1\n'
        'layer { name: "r" type: "ReLU" bottom: "d" top: "r" }\n')
    r = run_cli("info", tmp_path / "n.prototxt")
    assert r.returncode == 0
    assert all(line.startswith("prototxt-gen: ") for line in r.stderr.splitlines())


def test_help_documents_the_internal_error_exit():
    r = run_cli("--help")
    assert "70 internal" in r.stdout.replace("\n", " ")


def test_a_state_dict_with_pickled_code_is_refused_and_never_run(tmp_path, capsys):
    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))
    torch.save({"conv1.weight": torch.zeros(20, 1, 5, 5), "x": Planted()}, tmp_path / "sd.pth")
    code, err = _run(capsys, "convert", ZOO / "lenet.prototxt", "--state-dict",
                     tmp_path / "sd.pth", "--to", "caffemodel", "-o", tmp_path / "w.caffemodel")
    assert code == 2 and "only a plain state_dict loads safely" in err
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "w.caffemodel").exists()


def test_hostile_names_survive_the_exported_program(tmp_path):
    r = run_cli("convert", hostile_net(tmp_path), "--to", "pytorch", "-o", tmp_path / "m.pt2")
    assert r.returncode == 0, r.stderr
    module = torch.export.load(tmp_path / "m.pt2").module()
    assert module(torch.randn(1, 2, 6, 6)).shape == (1, 3, 6, 6)


def test_onnxruntime_failing_inside_verify_is_one_error(tmp_path):
    from prototxt_gen.backends.verify import VerificationError, verify_onnx
    net = read_prototxt(ZOO / "lenet.prototxt")
    with pytest.raises(VerificationError, match="^--verify: onnxruntime cannot run the model: "):
        verify_onnx(net, b"not an onnx model")


@pytest.mark.parametrize("field,message", [
    ('eps: "small"', "norm_param.eps must be a finite number, not 'small'"),
    ("eps: nan", "norm_param.eps must be a finite number, not 'nan'"),
    ("across_spatial: 2", "norm_param.across_spatial must be true or false, not 2")])
def test_fork_fields_are_checked_like_schema_fields(tmp_path, capsys, field, message):
    (tmp_path / "n.prototxt").write_text(
        'input: "data" input_dim: 1 input_dim: 6 input_dim: 4 input_dim: 4\n'
        f'layer {{ name: "n" type: "Normalize" bottom: "data" top: "n" norm_param {{ {field} }} }}')
    code, err = _run(capsys, "info", tmp_path / "n.prototxt")
    assert code == 2 and message in err and "layer 'n' (Normalize)" in err, err


def test_verify_compares_an_output_that_is_a_learned_parameter(tmp_path):
    # Found by the fuzzer: a Parameter layer's top is a tensor that requires grad.
    r = run_cli("convert", ROOT / "tests" / "data" / "fork_layers.prototxt", "--to", "onnx",
                "--verify", "-o", tmp_path / "m.onnx")
    assert r.returncode == 0 and "'param' max|Δ| 0" in r.stderr, r.stderr


@pytest.mark.parametrize("layer,message", [
    ('type: "Dropout" dropout_param { dropout_ratio: -2147483600 }',
     "dropout_ratio must be in [0, 1), not -2.14748e+09"),
    ('type: "Dropout" dropout_param { dropout_ratio: 1 }', "dropout_ratio must be in [0, 1)"),
    ('type: "LRN" lrn_param { local_size: 4 }', "local_size must be odd, not 4")])
def test_parameters_caffe_checks_are_checked_before_translation(tmp_path, capsys, layer,
                                                                 message):
    # Found by the fuzzer: torch refused the dropout ratio at export, as an internal error.
    (tmp_path / "n.prototxt").write_text(
        'input: "data" input_dim: 1 input_dim: 6 input_dim: 4 input_dim: 4\n'
        f'layer {{ name: "l" {layer} bottom: "data" top: "l" }}')
    for command in (["info"], ["convert", "--to", "pytorch", "-o", str(tmp_path / "m.pt2")]):
        code, err = _run(capsys, command[0], tmp_path / "n.prototxt", *command[1:])
        assert code == 2 and message in err and "layer 'l'" in err, err


def test_a_model_onnxruntime_refuses_fails_verify_in_one_line(tmp_path):
    # Found by the fuzzer: onnxruntime logged its refusal (alpha must be > 0) in colour.
    (tmp_path / "n.prototxt").write_text(
        'input: "data" input_dim: 1 input_dim: 6 input_dim: 4 input_dim: 4\n'
        'layer { name: "l" type: "LRN" lrn_param { alpha: 0 } bottom: "data" top: "l" }')
    r = run_cli("convert", tmp_path / "n.prototxt", "--to", "onnx", "--verify",
                "-o", tmp_path / "m.onnx")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "--verify: onnxruntime cannot run the model: " in r.stderr and "alpha" in r.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_a_huge_value_is_echoed_short_and_the_reason_kept(tmp_path, capsys):
    name = "n" * 1_000_000
    (tmp_path / "n.prototxt").write_text(
        'input: "data" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1\n'
        f'layer {{ name: "{name}" type: "ReLU" bottom: "nope" top: "r" }}')
    code, err = _run(capsys, "info", tmp_path / "n.prototxt")
    assert code == 2 and len(err) < 500, len(err)
    assert err.rstrip().endswith("bottom 'nope' is not produced by any layer or input")
    assert "...(999802 more)..." in err  # the quotes count: 1,000,002 characters
