"""Reading prototxt as users have it: every zoo file, every historical syntax, forks' fields."""
import pytest

from prototxt_gen.proto import caffe_pb2
from prototxt_gen.errors import NetError
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.graph.shapes import count_params, infer, macs
from prototxt_gen.proto.textproto import parse_net_text

from conftest import KAIMING, ZOO

# Learnable parameters (Convolution, InnerProduct, Scale, Bias, PReLU blobs) and BatchNorm's
# stored statistics (mean, variance, scale factor), counted apart. The learnable counts agree
# with the published figures: torchvision's AlexNet/GoogLeNet/SqueezeNet 1.1/DenseNet-121/
# Inception-v3 (without the auxiliary head)/ResNeXt-50 32x4d, MobileNet v1's 4.2 M, SENet's
# 28.1 M; the ResNets' are in kaiming/NOTES.md.
PARAMS = {
    "ResNet-50-deploy.prototxt": (25_557_096, 53_173),
    "ResNet-101-deploy.prototxt": (44_549_160, 105_448),
    "bvlc_alexnet.prototxt": (60_965_224, 0),
    "bvlc_reference_caffenet_V1legacy_2014.prototxt": (60_965_224, 0),
    "bvlc_reference_caffenet_input_dim_2015-02.prototxt": (60_965_224, 0),
    "bvlc_googlenet.prototxt": (6_998_552, 0),
    "squeezenet_v1.1.prototxt": (1_235_496, 0),
    "lenet.prototxt": (431_080, 0),
    "densenet_121.prototxt": (7_978_856, 83_769),
    "mobilenet_v1.prototxt": (4_231_976, 21_915),
    "SE-ResNet-50.prototxt": (28_088_024, 53_173),
    "soeaver_resnext50-32x4d.prototxt": (25_028_904, 68_277),
    "soeaver_resnet101-v2_preact.prototxt": (44_541_480, 97_764),
    "soeaver_inception-v3.prototxt": (23_834_568, 34_526),
    # torchvision's ResNet-18 (11,689,512) + res2a's 64->64 projection (4,096 + 128 Scale).
    "holmesshuan_resnet18_deploy.prototxt": (11_693_736, 9_749),
    "cvjena_resnet10_preact.prototxt": (5_417_070, 3_984),
}
FILES = sorted(PARAMS)


def path_of(name):
    return (KAIMING if name.startswith("ResNet") else ZOO) / name


def test_every_reference_file_is_pinned():
    found = {p.name for p in ZOO.glob("*.prototxt")} | {p.name for p in KAIMING.glob("*.prototxt")}
    assert found == set(PARAMS)


@pytest.mark.parametrize("name", FILES)
def test_zoo_reads_and_infers(name):
    net = read_prototxt(path_of(name))
    shapes = infer(net)
    count = count_params(shapes)
    assert (count.learnable, count.batchnorm) == PARAMS[name]
    # Every net ends in a classifier over 1000 classes (LeNet: 10).
    last = shapes[-1].tops[0]
    assert last[:2] == (net.inputs[0].shape[0], 10 if name == "lenet.prototxt" else 1000)


def test_macs_match_the_papers():
    """Multiply-accumulates per image: ResNet-50 3.86 G (He et al.: 3.8e9 FLOPs, multiply-adds),
    MobileNet v1 569 M (Howard et al., Table 1), AlexNet 724 M, GoogLeNet 1.58 G."""
    expected = {"ResNet-50-deploy.prototxt": 3_857_973_248, "mobilenet_v1.prototxt": 568_740_352,
                "bvlc_alexnet.prototxt": 724_406_816, "bvlc_googlenet.prototxt": 1_582_671_872}
    for name, value in expected.items():
        net = read_prototxt(path_of(name))
        assert sum(macs(s) for s in infer(net)) // net.inputs[0].shape[0] == value, name


def test_v1_legacy_upgrades_to_the_2015_file():
    """The 2014 V1 CaffeNet (`layers { type: CONVOLUTION }`) upgrades to exactly the net BVLC
    itself converted it to in 2015 (the same file after upgrade_net_proto_text)."""
    old = read_prototxt(ZOO / "bvlc_reference_caffenet_V1legacy_2014.prototxt")
    new = read_prototxt(ZOO / "bvlc_reference_caffenet_input_dim_2015-02.prototxt")
    assert old.to_proto() == new.to_proto()
    assert old.layer("conv1").type == "Convolution"
    assert [lp.type for lp in old.to_proto().layer][:4] == ["Input", "Convolution", "ReLU",
                                                             "Pooling"]


def test_v1_param_fields_become_param_specs():
    net = read_prototxt("v1", text="""
        input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
        layers { name: "c" type: CONVOLUTION bottom: "data" top: "c"
                 blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
                 param: "shared_w" param: "shared_b"
                 convolution_param { num_output: 4 kernel_size: 3 } }
        layers { name: "s" type: SOFTMAX_LOSS bottom: "c" bottom: "data" top: "loss"
                 include { phase: TRAIN } }
    """)
    c = net.layer("c").param
    assert [(p.name, p.lr_mult, p.decay_mult) for p in c.param] == [
        ("shared_w", 1.0, 1.0), ("shared_b", 2.0, 0.0)]
    assert [layer.name for layer in net] == ["c"]  # the TRAIN-only loss is filtered out
    assert [layer.type for layer in read_prototxt("v1", "TRAIN", text=_V1_TEXT)] == [
        "Convolution", "SoftmaxWithLoss"]


_V1_TEXT = """
    input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
    input: "label" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1
    layers { name: "c" type: CONVOLUTION bottom: "data" top: "c"
             convolution_param { num_output: 4 kernel_size: 3 } }
    layers { name: "s" type: SOFTMAX_LOSS bottom: "c" bottom: "label" top: "loss"
             include { phase: TRAIN } }
"""


V0_CAFFENET_HEAD = """
name: "CaffeNet"
input: "data"
input_dim: 10 input_dim: 3 input_dim: 227 input_dim: 227
layers { layer { name: "conv1" type: "conv" num_output: 96 kernelsize: 11 stride: 4
                 blobs_lr: 1. blobs_lr: 2. weight_decay: 1. weight_decay: 0. }
         bottom: "data" top: "conv1" }
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: MAX kernelsize: 3 stride: 2 }
         bottom: "conv1" top: "pool1" }
layers { layer { name: "norm1" type: "lrn" local_size: 5 alpha: 0.0001 beta: 0.75 }
         bottom: "pool1" top: "norm1" }
layers { layer { name: "pad2" type: "padding" pad: 2 } bottom: "norm1" top: "pad2" }
layers { layer { name: "conv2" type: "conv" num_output: 256 group: 2 kernelsize: 5 }
         bottom: "pad2" top: "conv2" }
layers { layer { name: "fc" type: "innerproduct" num_output: 10 } bottom: "conv2" top: "fc" }
layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.4 } bottom: "fc" top: "fc" }
layers { layer { name: "prob" type: "softmax" } bottom: "fc" top: "prob" }
"""


def test_v0_upgrades_like_caffe():
    """V0 (2013): types are lower-case strings and parameters sit in the layer itself; a
    'padding' layer folds into the convolution that follows it (UpgradeV0PaddingLayers)."""
    net = read_prototxt("v0", text=V0_CAFFENET_HEAD)
    assert [(layer.name, layer.type) for layer in net] == [
        ("conv1", "Convolution"), ("relu1", "ReLU"), ("pool1", "Pooling"), ("norm1", "LRN"),
        ("conv2", "Convolution"), ("fc", "InnerProduct"), ("drop", "Dropout"),
        ("prob", "Softmax")]
    conv2 = net.layer("conv2").param
    assert list(conv2.bottom) == ["norm1"] and list(conv2.convolution_param.pad) == [2]
    assert conv2.convolution_param.group == 2
    assert [(p.lr_mult, p.decay_mult) for p in net.layer("conv1").param.param] == [(1, 1), (2, 0)]
    assert net.layer("norm1").param.lrn_param.alpha == pytest.approx(1e-4)
    assert net.layer("drop").param.dropout_param.dropout_ratio == pytest.approx(0.4)
    shapes = {s.layer.name: s.tops[0] for s in infer(net)}
    # Same geometry as CaffeNet: conv2 keeps 27x27 thanks to the folded padding.
    assert shapes["conv2"] == (10, 256, 27, 27)
    assert shapes["prob"] == (10, 10)


def test_three_input_forms_give_the_same_net():
    body = 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }'
    forms = [
        'input: "data" input_dim: 2 input_dim: 3 input_dim: 5 input_dim: 7 ' + body,
        'input: "data" input_shape { dim: 2 dim: 3 dim: 5 dim: 7 } ' + body,
        'layer { name: "data" type: "Input" top: "data" '
        'input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } } ' + body,
        # The list syntax of protobuf text format, also accepted by Caffe's parser.
        'layer { name: "data" type: "Input" top: "data" '
        'input_param { shape { dim: [2, 3, 5, 7] } } } ' + body,
    ]
    nets = [read_prototxt("f", text=t) for t in forms]
    for net in nets:
        assert [(i.name, i.shape) for i in net.inputs] == [("data", (2, 3, 5, 7))]
        assert [layer.name for layer in net] == ["r"]


def test_phase_rules_follow_caffe():
    text = """
    layer { name: "d" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
    layer { name: "train_only" type: "ReLU" bottom: "data" top: "a" include { phase: TRAIN } }
    layer { name: "not_test" type: "ReLU" bottom: "data" top: "b" exclude { phase: TEST } }
    layer { name: "staged" type: "ReLU" bottom: "data" top: "c" include { stage: "deploy" } }
    layer { name: "always" type: "ReLU" bottom: "data" top: "e" }
    """
    names = lambda net: [layer.name for layer in net]  # noqa: E731
    assert names(read_prototxt("p", text=text)) == ["always"]  # TEST by default
    assert names(read_prototxt("p", "TRAIN", text=text)) == ["train_only", "not_test", "always"]
    assert names(read_prototxt("p", "TEST", text=text, stages=("deploy",))) == [
        "staged", "always"]
    # A state in the file sets the default phase, as Caffe's Net does.
    assert names(read_prototxt("p", text="state { phase: TRAIN } " + text))[:2] == [
        "train_only", "not_test"]


def test_fork_field_is_mapped_and_warned_once():
    net = read_prototxt(ZOO / "densenet_121.prototxt")
    pool1 = net.layer("pool1").param.pooling_param
    assert pool1.round_mode == caffe_pb2.PoolingParameter.FLOOR  # from ceil_mode: false
    assert len(net.warnings) == 1
    assert net.warnings[0].startswith(f"{ZOO / 'densenet_121.prototxt'}:54:5: "
                                      "pooling_param.ceil_mode")
    assert "round_mode" in net.warnings[0]
    # Floor rounding is what makes DenseNet's pool1 56x56 (ceil would give 57).
    assert dict((s.layer.name, s.tops[0]) for s in infer(net))["pool1"] == (1, 64, 56, 56)


def test_unknown_fields_are_kept_for_fork_layers_and_counted():
    text = """
    input: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 5 }
    layer { name: "p" type: "Permute" bottom: "data" top: "p"
            permute_param { order: 0 order: 2 order: 3 order: 1 } }
    layer { name: "q" type: "Pooling" bottom: "p" top: "q"
            pooling_param { kernel_size: 2 ceil_mode: true unheard_of: 3 }
            unheard_of_too { x: "y" } }
    layer { name: "r" type: "Pooling" bottom: "q" top: "r"
            pooling_param { kernel_size: 1 unheard_of: 4 } }
    """
    net = read_prototxt("fork.prototxt", text=text)
    assert net.layer("p").extra == {"permute_param": [{"order": [0, 2, 3, 1]}]}
    assert net.layer("q").extra["unheard_of_too"] == [{"x": ["y"]}]
    assert net.layer("q").extra["pooling_param.unheard_of"] == [3]
    assert dict((s.layer.name, s.tops[0]) for s in infer(net))["p"] == (1, 4, 5, 3)
    by_field = {w.split(": ")[1]: w for w in net.warnings}
    assert set(by_field) == {"permute_param", "pooling_param.ceil_mode",
                             "pooling_param.unheard_of", "unheard_of_too"}
    assert by_field["pooling_param.unheard_of"].startswith("fork.prototxt:6:60: ")
    assert by_field["pooling_param.unheard_of"].endswith("ignored (2 places)")
    assert "kept for fork layer" in by_field["permute_param"]


def test_axpy_reads_as_a_fork_layer():
    net = read_prototxt(ZOO / "SE-ResNet-50.prototxt")
    axpy = [layer for layer in net if layer.type == "Axpy"]
    assert len(axpy) == 16 and net.warnings == []
    shapes = {s.layer.name: s for s in infer(net)}
    first = shapes[axpy[0].name]
    assert first.bottoms == [(1, 256, 1, 1), (1, 256, 56, 56), (1, 256, 56, 56)]
    assert first.tops == [(1, 256, 56, 56)]


def test_text_format_corners():
    text = """# comment
    name: 'single ' "and double" # comment after a value
    input: "data"; input_shape < dim: 0x2 dim: 3 >,
    layer {
      name: "s\\x41"  type: "Scale" bottom: "data" top: "s"
      scale_param: { bias_term: True axis: -1 num_axes: 1 }
      param { lr_mult: 1.5e0 decay_mult: 1f }
    }
    layer { name: "pool" type: "Pooling" bottom: "s" top: "pool"
            pooling_param { pool: 1 kernel_size: 1 } }
    """
    result = parse_net_text(text, "corner")
    assert result.unknown == []
    net = read_prototxt("corner", text=text)
    assert net.name == "single and double"
    assert net.inputs[0].shape == (2, 3)
    layer = net.layers[0]
    assert layer.name == "sA"
    assert layer.param.scale_param.bias_term and layer.param.scale_param.axis == -1
    assert [(p.lr_mult, p.decay_mult) for p in layer.param.param] == [(1.5, 1.0)]
    assert net.layer("pool").param.pooling_param.pool == caffe_pb2.PoolingParameter.AVE


@pytest.mark.parametrize("text,message", [
    ('layer { name: "a" type: "ReLU" ', "<t>:1:32: missing '}' before the end of the file"),
    ('layer { name: "a" type: "ReLU" } }', "<t>:1:34: expected a field name, found '}'"),
    ('layer { name: a }', "<t>:1:15: LayerParameter.name expects a quoted string, found a"),
    ('layer { name "a" }', "<t>:1:14: expected ':' or '{' after 'name', found '\"a\"'"),
    ('layer {\n  convolution_param { num_output: -1 } }',
     "<t>:2:35: ConvolutionParameter.num_output: -1 is out of range for a uint32"),
    ('layer { pooling_param { pool: AVERAGE } }',
     "<t>:1:31: PoolingParameter.pool: 'AVERAGE' is not one of MAX, AVE, STOCHASTIC"),
    ('layer { name: "a" name: "b" }',
     "<t>:1:19: LayerParameter.name is not repeated but is given more than once"),
    ('layer { bottom { } }', "<t>:1:9: LayerParameter.bottom is a string, not a message"),
    ('layer { include: 1 }',
     "<t>:1:18: LayerParameter.include is a message: expected '{', found '1'"),
    ('layer { name: "a" } @', "<t>:1:21: unexpected character '@'"),
])
def test_syntax_errors_name_line_and_column(text, message):
    with pytest.raises(NetError) as err:
        read_prototxt("<t>", text=text)
    assert str(err.value) == message


@pytest.mark.parametrize("text,message", [
    ('input: "data" input_dim: 1 input_dim: 3 '
     'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }',
     "expected 4 input_dim values per input, found 2 for 1 input(s)"),
    ('layer { name: "r" type: "ReLU" bottom: "nothing" top: "r" }',
     "layer 'r' (ReLU): bottom 'nothing' is not produced by any layer or input"),
    ('input: "data" input_shape { dim: 1 } '
     'layer { name: "a" type: "ReLU" bottom: "data" top: "x" } '
     'layer { name: "b" type: "ReLU" bottom: "data" top: "x" }',
     "layer 'b' (ReLU): top 'x' is already produced by layer 'a' (only an in-place layer may "
     "reuse a blob name)"),
    ('input: "data" input_shape { dim: 1 } '
     'layer { name: "a" type: "Eltwise" bottom: "data" bottom: "y" top: "x" } '
     'layer { name: "b" type: "ReLU" bottom: "x" top: "y" }',
     "layer 'a' (Eltwise): the graph has a cycle: 'b' -> 'a' -> 'b'"),
    ('input: "data" input_shape { dim: 1 } '
     'layer { name: "a" type: "ReLU" bottom: "y" top: "x" } '
     'layer { name: "b" type: "ReLU" bottom: "data" top: "y" }',
     "layer 'a' (ReLU): bottom 'y' is produced only later, by layer 'b' (Caffe runs layers in "
     "file order)"),
    ('layers { name: "x" bottom: "data" }', "legacy layer 1 ('x') has no type"),
    ('layer { name: "x" } layers { name: "y" type: RELU }',
     "the net mixes 'layer' and legacy 'layers' entries; Caffe accepts only one of them"),
    ('name: "empty"', "defines no layers (is it a network definition?)"),
])
def test_graph_errors(text, message):
    with pytest.raises(NetError) as err:
        read_prototxt("n.prototxt", text=text)
    assert str(err.value) == "n.prototxt: " + message


def test_duplicate_layer_names_warn():
    net = read_prototxt("d", text="""input: "data" input_shape { dim: 1 }
        layer { name: "a" type: "ReLU" bottom: "data" top: "data" }
        layer { name: "a" type: "ReLU" bottom: "data" top: "data" }""")
    assert net.warnings == ["layer 'a' (ReLU): another layer has the same name; weights are "
                            "matched to the first"]


def test_files_from_other_editors(tmp_path):
    """A UTF-8 byte-order mark, CRLF line ends and comments in GBK (common in forks' files) read
    as Caffe reads them; a string value that is not UTF-8 is still an error, with its place."""
    text = ('# 输入层\r\ninput: "data"\r\ninput_shape { dim: 1 dim: 2 }\r\n'
            'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }  # 激活\r\n')
    path = tmp_path / "gbk.prototxt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("gbk"))
    net = read_prototxt(path)
    assert [layer.name for layer in net] == ["r"] and net.inputs[0].shape == (1, 2)
    path.write_bytes(b'input: "data" input_shape { dim: 1 }\nlayer { name: "\xb2\xe3" }\n')
    with pytest.raises(NetError) as err:
        read_prototxt(path)
    assert str(err.value) == f"{path}:2:15: LayerParameter.name: the string is not valid UTF-8"
