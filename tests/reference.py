"""What the translator tests share: the generated nets they check, random weights written and
read back as a user's files would be, the tolerance the issues set, and OpenCV's Caffe importer
(opencv-python-headless<5, an independent implementation) run on the same prototxt +
caffemodel."""
import cv2
import numpy as np

from prototxt_gen.caffe.weights import load_weights, write_caffemodel
from prototxt_gen.graph.net import Net
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.build.spec import parse_spec

from conftest import ROOT
from weights import random_weights

CLIPPED = parse_spec((ROOT / "examples" / "my_resnet.toml").read_text().replace(
    "pool_kernel = 3\npool_stride = 2\npool_pad = 1",
    "pool_kernel = 2\npool_stride = 2\npool_pad = 1"), "clipped.toml")

# Generated nets the translators are checked on, with the input shape each is generated at.
GENERATED = [
    ("resnet18", (2, 3, 97, 131)),     # odd, non-square
    ("resnet34", (1, 3, 160, 160)),
    ("resnet50", None),                # the 2016 release's layout, conv1 with a bias
    ("resnet101", (1, 3, 67, 67)),     # pool1 rounds up: 34 -> 17
    ("resnet152", (1, 3, 96, 96)),
    (ROOT / "examples" / "my_resnet.toml", None),  # groups, dilation
    (CLIPPED, (1, 3, 65, 65)),         # pooling's clip rule
]
GENERATED_IDS = [str(getattr(m, "source", m)).split("/")[-1] for m, _ in GENERATED]


def bound(ref):
    """The tolerance the issue sets: 1e-4 · max(1, max|ref|)."""
    return 1e-4 * max(1.0, float(np.abs(ref).max()))


def with_weights(tmp_path, net_or_path, seed=0):
    """(net, prototxt path, caffemodel path): random weights written by our writer and read
    back through load_weights, as a user's files would be."""
    if isinstance(net_or_path, Net):
        prototxt = tmp_path / "net.prototxt"
        prototxt.write_text(net_or_path.to_prototxt("modern"))
        net = net_or_path
    else:
        prototxt = net_or_path
        net = read_prototxt(prototxt)
    weights = tmp_path / "net.caffemodel"
    write_caffemodel(random_weights(net, seed), weights)
    net = read_prototxt(prototxt)
    load_weights(net, weights, strict=True)
    return net, prototxt, weights


def inputs_for(net, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(i.shape).astype(np.float32) for i in net.inputs]


def last_writers(net):
    last = {}
    for layer in net.layers:
        for k, top in enumerate(layer.top):
            last[top] = (layer.name, k)
    return last


def opencv_text(net):
    """The net's prototxt as OpenCV 4 reads it: its schema spells BVLC's `round_mode: FLOOR`
    (field 13) as its own `ceil_mode: false` and fails on the former."""
    return net.to_prototxt("modern").replace("round_mode: FLOOR", "ceil_mode: false")


def opencv_blobs(net, prototxt, weights, xs, blobs):
    """OpenCV's value of each blob: the output of the layer that wrote it last, with OpenCV's
    layer fusion off so that every layer's output exists. OpenCV names outputs by layer and
    reaches only a layer's first top, so blobs written last as another top are left out."""
    cv = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    cv.enableFusion(False)
    for blob, x in zip(net.inputs, xs):
        cv.setInput(x, blob.name)
    last = last_writers(net)
    names = [b for b in blobs if b in last and last[b][1] == 0]
    return dict(zip(names, cv.forward([last[b][0] for b in names])))


def rewrite_axpy(net, path):
    """`net` with each Axpy(a, x, y) -- SENet's fork layer, a·x + y, which OpenCV 4 computes as
    a·y + x -- spelled in layers OpenCV computes as Caffe does: Flatten(a), Scale(x, a, axis 0), Eltwise SUM(., y); written to `path`."""
    rewritten = Net(net.name, net.inputs)
    for layer in net.layers:
        if layer.type != "Axpy":
            rewritten.layers.append(layer)
            continue
        a, x, y = layer.bottom
        name, top = layer.name, layer.top[0]
        rewritten.add_layer("Flatten", f"{name}/a", a, f"{name}/a")
        rewritten.add_layer("Scale", f"{name}/ax", [x, f"{name}/a"], f"{name}/ax",
                            scale_param=dict(axis=0))
        rewritten.add_layer("Eltwise", name, [f"{name}/ax", y], top)
    path.write_text(rewritten.to_prototxt("modern"))
    return path


def assert_close_to(refs, ours, what="blob"):
    """Each of OpenCV's arrays (`refs`, by blob) equals ours within `bound`; returns how many
    were compared."""
    for blob, ref in refs.items():
        got = ours[blob]
        assert ref.size == got.size, blob
        err = np.abs(got - ref.reshape(got.shape)).max()
        assert err <= bound(ref), f"{what} '{blob}': max|Δ| {err:.3g} vs OpenCV"
    return len(refs)


def onnx_blobs(net, blobs, xs, opset=17):
    """{blob: value} of our ONNX model of `net` made to output `blobs`, run by onnxruntime on
    inputs xs (in the net's input order)."""
    import onnxruntime as ort
    from prototxt_gen.backends.onnx import translate
    t = translate(net, outputs=blobs, opset=opset)
    session = ort.InferenceSession(t.model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return dict(zip(t.outputs, session.run(None, dict(zip(t.inputs, xs)))))

