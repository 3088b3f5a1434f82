"""Our text parses back through protobuf's text parser and re-emits identically."""
import pytest
from google.protobuf import text_format

from prototxt_gen import Net, generate
from prototxt_gen.proto import caffe_pb2
from prototxt_gen.build.catalog import template_names
from prototxt_gen.errors import NetError
from prototxt_gen.proto.prototxt import format_message, parse_prototxt
from prototxt_gen.proto.textproto import parse_net_text

from conftest import KAIMING, ZOO

STYLES = [("original", "input_dim"), ("original", "input_shape"), ("original", "layer"),
          ("modern", "layer"), ("modern", "input_shape"), ("modern", "input_dim")]


@pytest.mark.parametrize("model", template_names())
@pytest.mark.parametrize("layout,input_style", STYLES)
def test_generated_text_round_trips(model, layout, input_style):
    net = generate(model)
    text = net.to_prototxt(layout, input_style)
    proto = caffe_pb2.NetParameter()
    text_format.Parse(text, proto)  # protobuf's own parser, not ours
    assert proto == net.to_proto(input_style)
    again = Net.from_proto(proto)
    for a, b in zip(again.layers, net.layers):
        a.text_order = b.text_order  # a layout hint, not part of the message
    assert again.to_prototxt(layout, input_style) == text
    assert [i.shape for i in again.inputs] == [i.shape for i in net.inputs]


@pytest.mark.parametrize("depth", [50, 101])
def test_release_files_round_trip_through_the_writer(depth):
    text = (KAIMING / f"ResNet-{depth}-deploy.prototxt").read_text()
    proto = parse_prototxt(text)
    orders = {k: ("top", "bottom", "name", "type") for k, layer in enumerate(text.split("\n\n")[1:])
              if layer.startswith("layer {\n\ttop:")}
    assert format_message(proto, "original", layer_orders=orders) == text


ZOO_FILES = sorted(p.name for p in ZOO.glob("*.prototxt"))
# Fork-only fields that BVLC's schema (and so protobuf's strict parser, like Caffe's) rejects.
# Both files carry PoolingParameter.ceil_mode; prototxt_gen.caffe.reader reads them (test_reader).
FORK_FIELDS = {"densenet_121.prototxt": "ceil_mode",
               "soeaver_resnext50-32x4d.prototxt": "ceil_mode"}


@pytest.mark.parametrize("name", ZOO_FILES)
def test_zoo_files_survive_the_writer(name):
    """Real files from 2014-2020 (comments, fillers, param blocks, V1 `layers`): parse, write in
    both layouts, parse again: the same message."""
    text = (ZOO / name).read_text()
    if name in FORK_FIELDS:
        with pytest.raises(NetError, match=rf"^{name}:\d+:\d+: .*{FORK_FIELDS[name]}"):
            parse_prototxt(text, name)
        return
    proto = parse_prototxt(text, name)
    for layout in ("original", "modern"):
        written = format_message(proto, layout)
        assert parse_prototxt(written) == proto
        assert format_message(parse_prototxt(written), layout) == written


@pytest.mark.parametrize("name", ZOO_FILES)
def test_our_text_parser_agrees_with_protobufs(name):
    """The tolerant parser (textproto) builds the same message as protobuf's own TextFormat
    parser on every real file; on fork files, the same as protobuf on the file with the fork
    field written the BVLC way (ceil_mode: false -> round_mode: FLOOR)."""
    text = (ZOO / name).read_text()
    ours = parse_net_text(text, name)
    if name in FORK_FIELDS:
        assert {u.path for u in ours.unknown} == {"layer.pooling_param.ceil_mode"}
        text = text.replace("ceil_mode: false", "round_mode: FLOOR")
    else:
        assert ours.unknown == []
    assert ours.message == parse_prototxt(text, name)


def test_float_fields_keep_their_exact_value():
    lrn = caffe_pb2.LRNParameter(alpha=0.0001, beta=0.75, k=2)
    bn = caffe_pb2.BatchNormParameter(eps=1e-5, moving_average_fraction=0.9)
    ep = caffe_pb2.EltwiseParameter(coeff=[0.17, -1, 1 / 3, 3.4028234663852886e38, 1e-45])
    for msg in (lrn, bn, ep):
        text = format_message(msg, "modern")
        again = type(msg)()
        text_format.Parse(text, again)
        assert again == msg, text
    assert format_message(lrn, "modern") == "alpha: 0.0001\nbeta: 0.75\nk: 2\n"
    assert format_message(bn, "modern") == "moving_average_fraction: 0.9\neps: 1e-05\n"
    assert "coeff: 0.17\n" in format_message(ep, "modern")


def test_strings_are_escaped():
    layer = caffe_pb2.LayerParameter(name='conv "1"\\a/b\n', type="Convolution")
    text = format_message(layer, "modern")
    again = caffe_pb2.LayerParameter()
    text_format.Parse(text, again)
    assert again == layer


def test_modern_layout_matches_bvlc_style():
    text = generate("resnet18").to_prototxt("modern")
    assert text.startswith('name: "ResNet-18"\nlayer {\n  name: "data"\n  type: "Input"\n'
                           '  top: "data"\n'
                           "  input_param { shape: { dim: 1 dim: 3 dim: 224 dim: 224 } }\n}\n"
                           'layer {\n  name: "conv1"\n  type: "Convolution"\n  bottom: "data"\n'
                           '  top: "conv1"\n  convolution_param {\n    num_output: 64\n'
                           "    bias_term: false\n    pad: 3\n    kernel_size: 7\n    stride: 2\n"
                           "  }\n}\n")
    assert "\n\n" not in text and "\t" not in text
