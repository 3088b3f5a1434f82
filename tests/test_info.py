"""`prototxt-gen info`: the analysis table and JSON, and one-line errors for bad input."""
import json

import pytest

from conftest import KAIMING, ZOO, assert_error, run_cli

R50 = KAIMING / "ResNet-50-deploy.prototxt"


def test_table_for_resnet50():
    result = run_cli("info", R50)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "ResNet-50: input data 1×3×224×224"
    rows = {line.split()[0]: line.split() for line in lines[4:] if line}
    # conv1: 64 x 3 x 7 x 7 weights + 64 bias; 112*112*64 outputs x 147 MACs each; 3.1 MiB.
    assert rows["conv1"] == ["conv1", "Convolution", "1×64×112×112", "9,472", "118,013,952",
                             "3.1", "MiB"]
    assert rows["bn_conv1"][:2] == ["bn_conv1", "*"]  # in place: no new memory
    assert rows["pool1"][2] == "1×64×56×56"
    assert rows["fc1000"][3:5] == ["2,049,000", "2,048,000"]
    total = [line for line in lines if line.startswith("total")][0].split()
    assert total[1:5] == ["228", "layers", f"{25_557_096 + 53_173:,}", "3,857,973,248"]
    assert ("learnable parameters 25,557,096 (97.5 MiB), BatchNorm statistics 53,173; "
            "3.86 G MACs;") in result.stdout


def test_json_agrees_with_the_generated_model():
    from_file = json.loads(run_cli("info", R50, "--format", "json").stdout)
    generated = json.loads(run_cli("info", "resnet50", "--format", "json").stdout)
    assert from_file == generated
    assert from_file["totals"] == {"layers": 228, "params": 25_557_096, "batchnorm": 53_173,
                                   "macs": 3_857_973_248,
                                   "memory": from_file["totals"]["memory"]}
    conv1 = from_file["layers"][0]
    assert conv1 == {"name": "conv1", "type": "Convolution", "bottoms": ["data"],
                     "tops": ["conv1"], "output_shapes": [[1, 64, 112, 112]], "params": 9472,
                     "batchnorm": 0, "macs": 118_013_952, "memory": 64 * 112 * 112 * 4,
                     "in_place": False}
    # Activation memory: the input plus every non-in-place top, 4 bytes per value.
    assert from_file["totals"]["memory"] == 4 * (3 * 224 * 224 + sum(
        _count(s) for layer in from_file["layers"] if not layer["in_place"]
        for s in layer["output_shapes"]))


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def test_warnings_notes_and_options(tmp_path):
    dense = run_cli("info", ZOO / "densenet_121.prototxt")
    assert dense.returncode == 0
    assert dense.stdout.rstrip().splitlines()[-1].startswith(
        f"warning: {ZOO / 'densenet_121.prototxt'}:54:5: pooling_param.ceil_mode")
    v1 = run_cli("info", ZOO / "bvlc_reference_caffenet_V1legacy_2014.prototxt")
    assert "note: upgraded 23 V1 'layers' entries to 'layer'" in v1.stdout
    big = json.loads(run_cli("info", "resnet18", "--input-shape", "2,3,448,448",
                             "--format", "json").stdout)
    assert big["inputs"] == [{"name": "data", "shape": [2, 3, 448, 448]}]
    assert big["layers"][0]["output_shapes"] == [[2, 64, 224, 224]]
    out = tmp_path / "info.json"
    assert run_cli("info", ZOO / "lenet.prototxt", "--format", "json", "-o", out).stdout == ""
    assert json.loads(out.read_text())["totals"]["params"] == 431_080
    train = tmp_path / "train.prototxt"
    train.write_text((ZOO / "lenet.prototxt").read_text().replace(
        'name: "prob"', 'name: "prob" include { phase: TEST }'))
    names = lambda r: [layer["name"] for layer in json.loads(r.stdout)["layers"]]  # noqa: E731
    assert names(run_cli("info", train, "--format", "json"))[-1] == "prob"
    assert names(run_cli("info", train, "--format", "json", "--phase", "TRAIN"))[-1] == "ip2"


BAD_PROTOTXT = {
    "malformed.prototxt": ('layer {\n  name: "a"\n  type: "ReLU"\n  bottom: "data"\n  top "a"\n}\n',
                           "{p}:5:7: expected ':' or '{{' after 'top', found '\"a\"'"),
    "orphan.prototxt": ('input: "data" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2\n'
                        'layer { name: "r" type: "ReLU" bottom: "x" top: "r" }\n',
                        "{p}: layer 'r' (ReLU): bottom 'x' is not produced by any layer or input"),
    "twice.prototxt": ('input: "data" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2\n'
                       'layer { name: "a" type: "ReLU" bottom: "data" top: "x" }\n'
                       'layer { name: "b" type: "Sigmoid" bottom: "data" top: "x" }\n',
                       "{p}: layer 'b' (Sigmoid): top 'x' is already produced by layer 'a' "
                       "(only an in-place layer may reuse a blob name)"),
    "cycle.prototxt": ('input: "data" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2\n'
                       'layer { name: "a" type: "Concat" bottom: "data" bottom: "z" top: "y" }\n'
                       'layer { name: "b" type: "ReLU" bottom: "y" top: "z" }\n',
                       "{p}: layer 'a' (Concat): the graph has a cycle: 'b' -> 'a' -> 'b'"),
    "empty.prototxt": ("", "{p}: the file is empty"),
    "blank.prototxt": ("# nothing but a comment\n\n",
                       "{p}: defines no layers (is it a network definition?)"),
    "shapes.prototxt": ('input: "data" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2\n'
                        'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
                        '        convolution_param { num_output: 4 kernel_size: 3 } }\n',
                        "{p}: layer 'c' (Convolution): kernel extent 3 does not fit input size 2 "
                        "with pad 0 (input 1×1×2×2)"),
    "binary.prototxt": (b"\x0a\x05LeNet\xa2\x06\x00",
                        "{p}: is a binary file, not prototxt text (a .caffemodel? give it as "
                        "the weights)"),
}


@pytest.mark.parametrize("name", sorted(BAD_PROTOTXT))
def test_bad_prototxt_is_one_line_and_exit_2(tmp_path, name):
    content, message = BAD_PROTOTXT[name]
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert_error(run_cli("info", path), message.format(p=path))


def test_missing_files_and_directories(tmp_path):
    cases = [
        (("info", tmp_path / "absent.prototxt"), f"{tmp_path / 'absent.prototxt'}: no such "
                                                 "prototxt file"),
        (("info", tmp_path), f"{tmp_path}: is a directory, not a prototxt file"),
        (("info", ZOO / "lenet.prototxt", "--weights", tmp_path / "w.caffemodel"),
         f"{tmp_path / 'w.caffemodel'}: no such weights file"),
        (("info", ZOO / "lenet.prototxt", "--weights", tmp_path),
         f"{tmp_path}: is a directory, not a weights file"),
        (("info", "resnet5O"), "resnet5O: no such prototxt file"),
    ]
    for args, message in cases:
        assert_error(run_cli(*args), message)


def test_corrupt_weights(tmp_path):
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"\xa2\x06\xff\xff\xff\x0f" + b"\x00" * 32)
    assert_error(run_cli("info", ZOO / "lenet.prototxt", "--weights", weights),
                 f"{weights}: truncated or corrupt at byte 0: field 100 needs 33554431 bytes, "
                 "32 are left")
