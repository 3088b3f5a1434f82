"""A bad spec gets one line naming the file, the key path and what was expected; exit 2,
nothing on stdout."""
import pytest

from prototxt_gen import generate
from prototxt_gen.errors import SpecError
from prototxt_gen.build.spec import parse_spec

from conftest import ROOT, assert_error, run_cli

BASE = (ROOT / "templates" / "resnet50.toml").read_text()


def edit(old, new, count=1):
    assert old in BASE, old
    return BASE.replace(old, new, count)


CASES = [
    ("unknown top-level key",
     edit('name = "ResNet-50"', 'name = "ResNet-50"\nnmae = "x"'),
     "{f}: nmae: unknown key (did you mean 'name'?)"),
    ("unknown stage key",
     edit("width = 128", "widht = 128"),
     "{f}: stage[1].widht: unknown key (did you mean 'width'?)"),
    ("wrong type",
     edit("units = 4", 'units = "four"'),
     '{f}: stage[1].units: expected a positive integer, got "four"'),
    ("wrong type bool",
     edit("bias = true", 'bias = "yes"'),
     '{f}: stem.bias: expected true or false, got "yes"'),
    ("negative number",
     edit("stride = 2\n\n[[stage]]                    # res4",
          "stride = -2\n\n[[stage]]                    # res4"),
     "{f}: stage[1].stride: expected a positive integer, got -2"),
    ("missing field",
     edit("width = 256\n", ""),
     "{f}: stage[2]: missing required key 'width' (a positive integer)"),
    ("unknown block kind",
     edit('block = "bottleneck"', 'block = "bottle"'),
     '{f}: stage[0].block: unknown block kind "bottle" (known: basic, bottleneck, '
     'preact_bottleneck, block35, block17, block8, reduction_a, reduction_b)'),
    ("unknown stem kind",
     edit('kind = "resnet"', 'kind = "vgg"'),
     '{f}: stem.kind: unknown stem kind "vgg" (known: resnet, inception_resnet_v1)'),
    ("bad choice",
     edit('pool = "max"', 'pool = "maximum"'),
     '{f}: stem.pool: expected one of "max", "ave", "none", got "maximum"'),
    ("bad layout",
     edit('layout = "original"', 'layout = "fancy"'),
     '{f}: output.layout: expected one of "original", "modern", got "fancy"'),
    ("missing table",
     BASE.split("[head]")[0],
     "{f}: missing required table [head]"),
    ("stage not an array of tables",
     edit("[input]", "stage = 3\n\n[input]").split("[[stage]]")[0]
     + "[head]" + BASE.split("[head]")[1],
     "{f}: stage: expected one or more [[stage]] tables, got 3"),
    ("input shape",
     edit("shape = [1, 3, 224, 224]", "shape = [3, 224, 224]"),
     "{f}: input.shape: expected 4 dimensions (N, C, H, W), got [3, 224, 224]"),
    ("input shape type",
     edit("shape = [1, 3, 224, 224]", 'shape = "1,3,224,224"'),
     '{f}: input.shape: expected a list of positive integers, e.g. [1, 3, 224, 224], '
     'got "1,3,224,224"'),
    ("too many letters",
     edit("units = 6", "units = 27"),
     '{f}: stage[2].units: 27 units cannot be named a-z; use suffix = "numbered"'),
    ("naming placeholder",
     edit('first_stage = 2', 'first_stage = 2\nconv = "res{unit}_{branchh}"'),
     "{f}: naming.conv: unknown placeholder {{branchh}} (allowed: {{unit}}, {{branch}})"),
    ("naming template",
     edit('first_stage = 2', 'first_stage = 2\nconvolution = "x"'),
     "{f}: naming.convolution: unknown key (known keys: add, add_relu, bn, conv, fc, "
     "first_stage, head_pool, prob, relu, scale, scheme, stem_bn, stem_conv, stem_pool, "
     "stem_scale)"),
    ("invalid TOML",
     edit("units = 3", "units 3"),
     "{f}:31:7: invalid TOML: Expected '=' after a key in a key/value pair"),
    ("duplicate key",
     edit("units = 3", "units = 3\nunits = 4"),
     "{f}:32:10: invalid TOML: Cannot overwrite a value"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_spec(tmp_path, text, expected):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    assert_error(run_cli("--spec", spec), expected.format(f=spec))


def test_the_unedited_base_is_valid(tmp_path):
    spec = tmp_path / "good.toml"
    spec.write_text(BASE)
    assert run_cli("--spec", spec).stdout == run_cli("resnet50").stdout


@pytest.mark.parametrize("make,expected", [
    (lambda p: p / "nope.toml", "{p}/nope.toml: no such file"),
    (lambda p: p, "{p}: is a directory, not a spec file"),
    (lambda p: (p / "bin.toml").write_bytes(b"name = \"\xff\"") and p / "bin.toml",
     "{p}/bin.toml: not UTF-8 text (byte 8)"),
])
def test_unreadable_spec(tmp_path, make, expected):
    assert_error(run_cli("--spec", make(tmp_path)), expected.format(p=tmp_path))


def test_user_spec_example_builds():
    net = generate(ROOT / "examples" / "my_resnet.toml")
    assert net.layer("classifier").param.inner_product_param.num_output == 10
    assert net.layer("res3a_branch2b").param.convolution_param.group == 4
    assert list(net.layer("res3a_branch2b").param.convolution_param.stride) == [2]
    assert list(net.layer("res4a_branch2b").param.convolution_param.dilation) == [2]
    assert net.layer("pool4").param.pooling_param.global_pooling


def test_parse_spec_api_reports_source():
    with pytest.raises(SpecError, match=r"^mine: missing required table \[input\]$"):
        parse_spec('name = "x"', "mine")
