"""Training definitions: train_val prototxts that parse under both phases, as Caffe reads them
(protobuf's own text parser included), and solver.prototxt files."""
import pytest
from google.protobuf import text_format

from prototxt_gen import generate
from prototxt_gen.proto import caffe_pb2
from prototxt_gen.errors import SpecError
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.graph.shapes import infer
from prototxt_gen.build.training import train_val

from conftest import ROOT, assert_error, run_cli


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d", "resnet50_v2"])
def test_train_val_parses_under_both_phases(tmp_path, name):
    path = tmp_path / "train_val.prototxt"
    r = run_cli(name, "--phase", "train", "--train-source", "/data/ilsvrc12_train_lmdb",
                "--batch-size", "64", "-o", path)
    assert r.returncode == 0, r.stderr
    text = path.read_text()
    text_format.Parse(text, caffe_pb2.NetParameter())  # what Caffe's ReadProtoFromTextFile does
    deploy = generate(name)
    train, test = read_prototxt(path, "TRAIN"), read_prototxt(path, "TEST")
    assert [l.type for l in train.layers[-1:]] == ["SoftmaxWithLoss"]
    assert [l.type for l in test.layers[-3:]] == ["SoftmaxWithLoss", "Accuracy", "Accuracy"]
    assert [l.param.accuracy_param.top_k for l in test.layers[-2:]] == [1, 5]
    data_train, data_test = train.layers[0], test.layers[0]
    assert data_train.param.data_param.source == "/data/ilsvrc12_train_lmdb"
    assert (data_train.param.data_param.batch_size, data_test.param.data_param.batch_size) == \
        (64, 25)
    assert data_train.param.transform_param.mirror and not data_test.param.transform_param.mirror
    assert data_test.param.transform_param.crop_size == 224
    body = train.layers[1:-1]
    assert [(l.name, l.type) for l in body] == [(l.name, l.type) for l in deploy.layers[:-1]]
    for layer in body:
        specs = [(p.lr_mult, p.decay_mult) for p in layer.param.param]
        if layer.type == "BatchNorm":  # statistics by phase, frozen against SGD
            assert not layer.param.batch_norm_param.HasField("use_global_stats")
            assert specs == [(0, 0)] * 3
        elif layer.type == "Convolution":
            cp = layer.param.convolution_param
            assert cp.weight_filler.type == "msra"
            assert specs == [(1, 1)] + ([(2, 0)] if cp.bias_term else [])
        elif layer.type == "Scale":
            assert specs == [(1, 0), (1, 0)]
    # With the Data layer given back as an input, the body has the deploy net's shapes.
    shaped = read_prototxt(path, "TEST")
    shaped.layers = shaped.layers[1:-3]
    shaped.add_input("data", deploy.inputs[0].shape)
    assert [s.tops for s in infer(shaped)] == [s.tops for s in infer(deploy)][:-1]


def test_train_val_needs_a_classifier():
    with pytest.raises(SpecError, match="needs a classifier ending in Softmax"):
        train_val(generate("resnet50", features_only=True))
    assert_error(run_cli("resnet50", "--batch-size", "4"),
                 "--batch-size only applies to --phase train")


def test_solver(tmp_path):
    r = run_cli("solver", "--net", "train_val.prototxt", "-o", tmp_path / "solver.prototxt")
    assert r.returncode == 0, r.stderr
    s = text_format.Parse((tmp_path / "solver.prototxt").read_text(), caffe_pb2.SolverParameter())
    assert (s.net, s.type, s.lr_policy, list(s.stepvalue)) == (
        "train_val.prototxt", "SGD", "multistep", [150000, 300000, 450000])
    assert (s.base_lr, s.momentum, s.gamma, s.max_iter) == (pytest.approx(0.1), pytest.approx(0.9),
                                                            pytest.approx(0.1), 600000)
    assert s.weight_decay == pytest.approx(1e-4)
    r = run_cli("solver", "--lr-policy", "poly", "--power", "0.9", "--max-iter", "1000",
                "--solver-mode", "cpu")
    s = text_format.Parse(r.stdout, caffe_pb2.SolverParameter())
    assert (s.lr_policy, s.power, s.max_iter, s.solver_mode) == (
        "poly", pytest.approx(0.9), 1000, caffe_pb2.SolverParameter.CPU)
    assert not s.stepvalue
    assert_error(run_cli("solver", "--max-iter", "1000"),
                 "stepvalue: increasing iterations below max_iter")


def test_spec_tables_set_the_training_options_and_the_cli_overrides_them(tmp_path):
    spec = tmp_path / "net.toml"
    spec.write_text((ROOT / "templates" / "resnet18.toml").read_text() + '''
[train]
train_source = "/data/train_lmdb"
batch_size = 48
mean_value = [123.68, 116.78, 103.94]

[solver]
base_lr = 0.05
lr_policy = "poly"
max_iter = 90000
''')
    r = run_cli("--spec", spec, "--phase", "train", "--test-batch-size", "10")
    assert r.returncode == 0, r.stderr
    net = caffe_pb2.NetParameter()
    text_format.Parse(r.stdout, net)
    train, test = net.layer[0], net.layer[1]
    assert (train.data_param.source, train.data_param.batch_size) == ("/data/train_lmdb", 48)
    assert test.data_param.batch_size == 10
    assert list(train.transform_param.mean_value) == pytest.approx([123.68, 116.78, 103.94])
    r = run_cli("solver", "--spec", spec, "--max-iter", "1000")
    s = text_format.Parse(r.stdout, caffe_pb2.SolverParameter())
    assert (s.base_lr, s.lr_policy, s.max_iter) == (pytest.approx(0.05), "poly", 1000)
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "templates" / "resnet18.toml").read_text() + '[solver]\nlr = 0.1\n')
    r = run_cli("solver", "--spec", bad)
    assert r.returncode == 2 and "solver.lr: unknown key" in r.stderr
