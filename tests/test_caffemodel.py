""".caffemodel reading and writing, checked against protobuf's own (independent) encoder and
decoder, with legacy layouts, odd encodings, bad files and a file past the 2 GB message limit."""
import os

import numpy as np
import pytest

from prototxt_gen import generate
from prototxt_gen.proto import caffe_pb2
from prototxt_gen.caffe.caffemodel import read_caffemodel
from prototxt_gen.caffe.weights import load_weights, write_caffemodel
from prototxt_gen.errors import NetError
from prototxt_gen.caffe.reader import read_prototxt

from conftest import ZOO, run_cli
from weights import random_weights

V1 = caffe_pb2.V1LayerParameter


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packed(arr, field=5):
    """BlobProto data as protobuf encodes a packed repeated float/double field."""
    payload = np.ascontiguousarray(arr).tobytes()
    return bytes([field << 3 | 2]) + varint(len(payload)) + payload


@pytest.mark.parametrize("model", ["resnet50", "mobilenet_v1.prototxt", "SE-ResNet-50.prototxt"])
def test_round_trip_preserves_every_array(tmp_path, model):
    net = generate(model) if not model.endswith(".prototxt") else read_prototxt(ZOO / model)
    random_weights(net, seed=3)
    path = tmp_path / "w.caffemodel"
    write_caffemodel(net, path)
    for mmap in (False, True):
        again = generate(model) if not model.endswith(".prototxt") else read_prototxt(ZOO / model)
        report = load_weights(again, path, mmap=mmap)
        assert report.missing == [] and report.extra == [] and report.mismatched == []
        assert len(report.loaded) == sum(1 for layer in net if layer.blobs)
        for a, b in zip(net, again):
            assert len(a.blobs) == len(b.blobs)
            for x, y in zip(a.blobs, b.blobs):
                assert y.dtype == np.float32 and y.shape == x.shape
                assert x.tobytes() == y.tobytes()
        if not mmap:
            assert all(b.flags.writeable and b.flags.owndata or b.base is not None
                       for layer in again for b in layer.blobs)


def test_protobuf_decodes_what_we_write(tmp_path):
    """protobuf's own parser reads our file as a NetParameter with the same blobs (what Caffe's
    ReadProtoFromBinaryFile does), including the Input layer Caffe's Net::ToProto writes."""
    net = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    path = tmp_path / "lenet.caffemodel"
    write_caffemodel(net, path)
    proto = caffe_pb2.NetParameter.FromString(path.read_bytes())
    assert proto.name == "LeNet"
    assert [lp.name for lp in proto.layer] == ["data"] + [layer.name for layer in net]
    assert proto.layer[0].type == "Input"
    for lp in proto.layer[1:]:
        layer = net.layer(lp.name)
        assert lp.type == layer.type and list(lp.bottom) == list(layer.bottom)
        assert len(lp.blobs) == len(layer.blobs)
        for blob, arr in zip(lp.blobs, layer.blobs):
            assert tuple(blob.shape.dim) == arr.shape
            assert np.array_equal(np.array(blob.data, np.float32), arr.ravel())


def _lenet_v1_model(tmp_path, weights, double=False, legacy=True, unpacked=()):
    """A 2014-style model encoded by protobuf: V1 `layers`, legacy num/channels/height/width
    (right-aligned: biases 1x1x1xN, fc weights 1x1xMxK), float or double data."""
    proto = caffe_pb2.NetParameter(name="LeNet")
    types = {"conv1": V1.CONVOLUTION, "conv2": V1.CONVOLUTION, "ip1": V1.INNER_PRODUCT,
             "ip2": V1.INNER_PRODUCT}
    for name, arrays in weights.items():
        layer = proto.layers.add(name=name, type=types[name])
        for arr in arrays:
            blob = layer.blobs.add()
            if legacy:
                dims = (1,) * (4 - arr.ndim) + arr.shape
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(arr.shape)
            if name in unpacked:  # proto2 parsers must accept unpacked repeated floats too
                blob.MergeFromString(b"".join(b"\x2d" + np.float32(v).tobytes()
                                              for v in arr.ravel()))
            elif double:
                blob.MergeFromString(packed(arr.astype("<f8"), field=8))
            else:
                blob.MergeFromString(packed(arr.astype("<f4")))
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(proto.SerializeToString())
    return path


def _lenet_weights():
    net = random_weights(read_prototxt(ZOO / "lenet.prototxt"), seed=7)
    return {layer.name: layer.blobs for layer in net if layer.blobs}


@pytest.mark.parametrize("double", [False, True])
def test_v1_model_with_legacy_shapes(tmp_path, double):
    weights = _lenet_weights()
    path = _lenet_v1_model(tmp_path, weights, double=double, unpacked=("conv1",))
    net = read_prototxt(ZOO / "lenet.prototxt")
    load_weights(net, path)
    for name, arrays in weights.items():
        for want, got in zip(arrays, net.layer(name).blobs):
            assert got.shape == want.shape  # 1x1x500x800 became 500x800, 1x1x1x20 became 20
            unpacked_float = name == "conv1"
            assert got.dtype == (np.float64 if double and not unpacked_float else np.float32)
            assert np.array_equal(got, want)


def test_v0_model(tmp_path):
    """A 2013 model: the V0 layer (with its blobs, field 50) nested inside the V1 entry."""
    arr = np.arange(20 * 25, dtype=np.float32).reshape(20, 1, 5, 5)
    bias = np.arange(20, dtype=np.float32)
    proto = caffe_pb2.NetParameter(name="old")
    entry = proto.layers.add()
    entry.layer.name, entry.layer.type = "conv1", "conv"
    for a in (arr, bias):
        b = entry.layer.blobs.add(num=1, channels=1, height=1, width=a.size)
        if a.ndim == 4:
            b.num, b.channels, b.height, b.width = a.shape
        b.MergeFromString(packed(a))
    path = tmp_path / "v0.caffemodel"
    path.write_bytes(proto.SerializeToString())
    net = read_prototxt(ZOO / "lenet.prototxt")
    report = load_weights(net, path)
    assert report.loaded == ["conv1"]
    assert report.missing == ["conv2", "ip1", "ip2"]
    assert np.array_equal(net.layer("conv1").blobs[0], arr)
    assert np.array_equal(net.layer("conv1").blobs[1], bias)


def test_legacy_shapes_must_still_fit(tmp_path):
    weights = _lenet_weights()
    weights["ip1"] = [weights["ip1"][0].reshape(500, 800, 1), weights["ip1"][1]]
    path = _lenet_v1_model(tmp_path, weights)
    with pytest.raises(NetError) as err:
        load_weights(read_prototxt(ZOO / "lenet.prototxt"), path)
    assert str(err.value) == (f"{path}: layer 'ip1' (InnerProduct): blob 0 has shape "
                              "1×500×800×1 in the file, the net expects 500×800")


def test_mismatches_missing_and_extra(tmp_path):
    net = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    net.layer("conv2").blobs[0] = net.layer("conv2").blobs[0][:40]
    net.layer("ip2").blobs.pop()
    path = tmp_path / "bad.caffemodel"
    write_caffemodel(net, path)
    target = read_prototxt(ZOO / "lenet.prototxt")
    with pytest.raises(NetError) as err:
        load_weights(target, path)
    assert str(err.value) == (
        f"{path}: layer 'conv2' (Convolution): blob 0 has shape 40×20×5×5 in the file, the net "
        "expects 50×20×5×5 (and 1 more layer(s) do not fit)")
    report = load_weights(target, path, check_only=True)
    assert report.mismatched[1] == (f"{path}: layer 'ip2' (InnerProduct): the file has 1 blobs, "
                                    "the net expects 2 (10×500, 10)")
    assert all(not layer.blobs for layer in target)  # nothing assigned when checking

    # Renamed layers: Caffe ignores the file's, and the net's stay without weights.
    renamed = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    renamed.layer("ip1").param.name = "fc_new"
    write_caffemodel(renamed, path)
    target = read_prototxt(ZOO / "lenet.prototxt")
    report = load_weights(target, path)
    assert report.missing == ["ip1"] and report.extra == ["fc_new"]
    assert target.warnings == [
        f"{path}: no weights for 1 layer(s) that need them: 'ip1'",
        f"{path}: 1 layer(s) with weights are not in the net (ignored, as Caffe does): 'fc_new'"]
    with pytest.raises(NetError, match="no weights for layer"):
        load_weights(read_prototxt(ZOO / "lenet.prototxt"), path, strict=True)


def test_float64_arrays_round_trip_as_double_data(tmp_path):
    net = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    net.layer("ip2").blobs = [b.astype(np.float64) / 3 for b in net.layer("ip2").blobs]
    path = tmp_path / "d.caffemodel"
    write_caffemodel(net, path)
    proto = caffe_pb2.NetParameter.FromString(path.read_bytes())
    ip2 = [lp for lp in proto.layer if lp.name == "ip2"][0]
    assert len(ip2.blobs[0].double_data) == 5000 and not ip2.blobs[0].data
    again = read_prototxt(ZOO / "lenet.prototxt")
    load_weights(again, path)
    assert again.layer("ip2").blobs[0].dtype == np.float64
    assert np.array_equal(again.layer("ip2").blobs[0], net.layer("ip2").blobs[0])


def test_bad_files_fail_in_one_line(tmp_path):
    net = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    good = tmp_path / "good.caffemodel"
    write_caffemodel(net, good)
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "cut in a header": data[:3],
        "garbage": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        "text": (ZOO / "lenet.prototxt").read_bytes(),
        "empty": b"",
    }
    for what, content in cases.items():
        path = tmp_path / f"{what.replace(' ', '_')}.caffemodel"
        path.write_bytes(content)
        with pytest.raises(NetError) as err:
            load_weights(read_prototxt(ZOO / "lenet.prototxt"), path)
        message = str(err.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, (what, message)
        if what == "empty":
            assert message.endswith("the file is empty")
        elif what == "text":
            assert "a prototxt given as weights?" in message
        elif what == "truncated":
            assert "truncated or corrupt at byte" in message
    with pytest.raises(NetError, match="no such weights file"):
        read_caffemodel(tmp_path / "absent.caffemodel")
    with pytest.raises(NetError, match="is a directory"):
        read_caffemodel(tmp_path)


def test_writer_never_leaves_a_partial_file(tmp_path):
    net = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    path = tmp_path / "w.caffemodel"
    path.write_bytes(b"old")
    net.layer("ip2").blobs[0] = np.array(["not", "numbers"])
    with pytest.raises(NetError, match="blob 0 has dtype"):
        write_caffemodel(net, path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["w.caffemodel"]


def test_a_file_over_2gb_loads(tmp_path):
    """One InnerProduct with 550,000 x 1,000 float weights: 2.2 GB, past protobuf's 2 GB message
    limit. The file is sparse (its zeros take no disk) and the weights are memory-mapped, so
    this costs neither disk nor memory; the scanner still walks every length and offset."""
    rows, cols = 550_000, 1_000
    path = tmp_path / "big.caffemodel"
    layer = caffe_pb2.LayerParameter(name="fc", type="InnerProduct", bottom=["data"],
                                     top=["fc"])
    layer.inner_product_param.num_output = rows
    layer.inner_product_param.bias_term = False
    body = layer.SerializeToString()
    nbytes = rows * cols * 4
    shape = caffe_pb2.BlobShape(dim=[rows, cols]).SerializeToString()

    blob_head = b"\x3a" + varint(len(shape)) + shape + b"\x2a" + varint(nbytes)
    blob = b"\x3a" + varint(len(blob_head) + nbytes) + blob_head
    layer_len = len(body) + len(blob) + nbytes
    tail = caffe_pb2.LayerParameter(name="prob", type="Softmax", bottom=["fc"], top=["prob"])
    with open(path, "wb") as f:
        f.write(b"\xa2\x06" + varint(layer_len) + body + blob)
        f.seek(nbytes - 4, os.SEEK_CUR)
        f.write(np.float32(1.5).tobytes())  # the last weight
        f.write(b"\xa2\x06" + varint(tail.ByteSize()) + tail.SerializeToString())
    assert path.stat().st_size > 2**31

    net = read_prototxt("big.prototxt", text=f"""
        input: "data" input_shape {{ dim: 1 dim: {cols} }}
        layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
                inner_product_param {{ num_output: {rows} bias_term: false }} }}
        layer {{ name: "prob" type: "Softmax" bottom: "fc" top: "prob" }}""")
    report = load_weights(net, path, mmap=True)
    assert report.loaded == ["fc"]
    w = net.layer("fc").blobs[0]
    assert w.shape == (rows, cols) and w[-1, -1] == 1.5 and w[0, 0] == 0


def test_info_checks_weights(tmp_path):
    net = random_weights(read_prototxt(ZOO / "lenet.prototxt"))
    path = tmp_path / "w.caffemodel"
    write_caffemodel(net, path)
    ok = run_cli("info", ZOO / "lenet.prototxt", "--weights", path)
    assert ok.returncode == 0 and ok.stderr == ""
    assert f"weights {path}: 4 layer(s) match" in ok.stdout
    net.layer("conv1").blobs[0] = net.layer("conv1").blobs[0][:10]
    write_caffemodel(net, path)
    bad = run_cli("info", ZOO / "lenet.prototxt", "--weights", path, "--format", "json")
    assert bad.returncode == 2
    assert bad.stderr == (f"prototxt-gen: error: {path}: layer 'conv1' (Convolution): blob 0 "
                          "has shape 10×1×5×5 in the file, the net expects 20×1×5×5\n")
    import json
    report = json.loads(bad.stdout)
    assert report["weights"]["loaded"] == ["conv2", "ip1", "ip2"]
    assert len(report["weights"]["mismatched"]) == 1


def test_a_caffemodel_alone_gives_the_net(tmp_path):
    """Caffe embeds every layer's definition in the .caffemodel: without the prototxt we still
    get the same network (inputs, layers, shapes) and its weights."""
    import json
    from prototxt_gen.caffe.weights import read_caffemodel_net
    net = random_weights(read_prototxt(ZOO / "SE-ResNet-50.prototxt"))
    path = tmp_path / "se.caffemodel"
    write_caffemodel(net, path)
    again = read_caffemodel_net(path)
    assert again.to_proto() == net.to_proto()
    assert all(np.array_equal(x, y) for a, b in zip(net, again) for x, y in zip(a.blobs, b.blobs))
    from_model = json.loads(run_cli("info", path, "--format", "json").stdout)
    from_text = json.loads(run_cli("info", ZOO / "SE-ResNet-50.prototxt", "--format",
                                   "json").stdout)
    assert from_model["layers"] == from_text["layers"]
    assert from_model["totals"]["params"] == 28_088_024
