"""SSD's PriorBox and DetectionOutput: shapes, pictures, and the priors in both back ends
against OpenCV's PriorBox (an independent implementation of prior_box_layer.cpp) and a plain
loop reading of Caffe's code."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from prototxt_gen.backends.pytorch import to_torch
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.graph.shapes import infer
from prototxt_gen.layers.detection import prior_box_params, prior_boxes
from prototxt_gen.view.render import family, key_params

from conftest import DATA, assert_info_refuses, run_cli
from reference import assert_close_to, inputs_for, onnx_blobs, opencv_blobs, with_weights

SSD = DATA / "ssd_head.prototxt"


def for_opencv(tmp_path, detections=False):
    """The head without `img_size`: OpenCV 4 ignores it and uses the image's size
    (docs/caffe.md §9), so that case is checked against Caffe's loop instead
    (test_priors_follow_caffes_loop); without DetectionOutput unless asked."""
    text = SSD.read_text().replace(" img_size: 60", "")
    path = tmp_path / "ssd_opencv.prototxt"
    path.write_text(text if detections else text[:text.index('layer { name: "detection_out"')])
    return path


def test_shapes_labels_and_family():
    shapes = {s.layer.name: s for s in infer(read_prototxt(SSD))}
    assert shapes["conv1_priorbox"].tops == [(1, 2, 16 * 16 * 6 * 4)]
    assert shapes["conv2_priorbox"].tops == [(1, 2, 8 * 8 * 3 * 4)]
    assert shapes["mbox_priorbox"].tops == [(1, 2, 6912)]
    assert shapes["detection_out"].tops == [(1, 1, 50, 7)]  # keep_top_k per image, at most
    s = shapes["conv1_priorbox"]
    assert key_params(s.layer, s) == ["6 priors per cell", "min 10"]
    assert family("PriorBox")[0] == family("DetectionOutput")[0] == "detection"


def test_info_and_render_read_an_ssd_file(tmp_path):
    r = run_cli("info", SSD)
    assert r.returncode == 0, r.stderr
    assert "DetectionOutput  1×1×50×7" in r.stdout
    r = run_cli("render", SSD, "-o", tmp_path / "ssd.dot")
    assert r.returncode == 0, r.stderr
    assert "6 priors per cell" in (tmp_path / "ssd.dot").read_text()


def caffe_loop(p, layer_h, layer_w, img_h, img_w):
    """prior_box_layer.cpp's Forward_cpu, loop for loop (its float/double arithmetic)."""
    img_h, img_w = p.img_h or img_h, p.img_w or img_w
    step_h = p.step_h or img_h / layer_h
    step_w = p.step_w or img_w / layer_w
    out = []
    for h in range(layer_h):
        for w in range(layer_w):
            cx, cy = np.float32((w + p.offset) * step_w), np.float32((h + p.offset) * step_h)

            def box(bw, bh):
                out.extend([(cx - bw / 2.) / img_w, (cy - bh / 2.) / img_h,
                            (cx + bw / 2.) / img_w, (cy + bh / 2.) / img_h])
            for s, mn in enumerate(p.min_sizes):
                box(mn, mn)
                if p.max_sizes:
                    side = math.sqrt(mn * p.max_sizes[s])
                    box(side, side)
                for ar in p.aspect_ratios:
                    if abs(ar - 1.) < 1e-6:
                        continue
                    box(mn * math.sqrt(ar), mn / math.sqrt(ar))
    boxes = np.asarray(out, np.float32)
    if p.clip:
        boxes = np.minimum(np.maximum(boxes, 0.), 1.)
    variances = np.tile(np.asarray(p.variances, np.float32), len(boxes) // len(p.variances))
    return np.stack([boxes, variances])[None]


PRIOR_BOX_CASES = {  # beyond the file's two: defaults, img_h/img_w, step_h/step_w
    "defaults": "min_size: 30.0",
    "rectangles": "min_size: 12.0 max_size: 40.0 aspect_ratio: 2 aspect_ratio: 0.5 "
                  "aspect_ratio: 3 flip: false img_h: 40 img_w: 70 step_h: 5 step_w: 9 "
                  "offset: 0 clip: true",
}


def case_net(tmp_path, params):
    path = tmp_path / "pb.prototxt"
    path.write_text('input: "data" input_shape { dim: 1 dim: 3 dim: 48 dim: 64 }\n'
                    'input: "feat" input_shape { dim: 1 dim: 2 dim: 6 dim: 8 }\n'
                    'layer { name: "pb" type: "PriorBox" bottom: "feat" bottom: "data" '
                    f'top: "pb" prior_box_param {{ {params} }} }}\n')
    return read_prototxt(path)


@pytest.mark.parametrize("layer", ["conv1_priorbox", "conv2_priorbox", *PRIOR_BOX_CASES])
def test_priors_follow_caffes_loop(tmp_path, layer):
    net = case_net(tmp_path, PRIOR_BOX_CASES[layer]) if layer in PRIOR_BOX_CASES \
        else read_prototxt(SSD)
    s = next(s for s in infer(net) if s.layer.type == "PriorBox"
             and (s.layer.name == layer or layer in PRIOR_BOX_CASES))
    p = prior_box_params(s.layer)
    (feature, image) = s.bottoms
    got = prior_boxes(np, p, feature[2], feature[3], image[2], image[3])
    want = caffe_loop(p, feature[2], feature[3], image[2], image[3])
    assert got.shape == want.shape == (1,) + s.tops[0][1:]
    assert np.abs(got - want).max() <= 1e-6


def test_priors_match_opencv_in_both_back_ends(tmp_path):
    net, prototxt, weights = with_weights(tmp_path, for_opencv(tmp_path))
    xs = inputs_for(net)
    blobs = sorted({t for layer in net.layers for t in layer.top})
    with torch.no_grad():
        ours = {k: v.numpy() for k, v in to_torch(net).blobs(*map(torch.from_numpy, xs)).items()}
    refs = opencv_blobs(net, prototxt, weights, xs, blobs)
    assert {"conv1_priorbox", "conv2_priorbox", "mbox_priorbox"} <= set(refs)
    assert assert_close_to(refs, ours) >= 20
    assert assert_close_to(refs, onnx_blobs(net, blobs, xs)) >= 20


@pytest.mark.parametrize("field,error", [
    ("max_size: 5.0", "prior_box_param.max_size needs one value above each min_size"),
    ("variance: 0.1 variance: 0.2", "prior_box_param.variance takes 1 or 4 positive values"),
    ("aspect_ratio: -2", "prior_box_param.aspect_ratio must be positive, not -2"),
    ("step: 8 step_h: 4", "prior_box_param: give step or step_h/step_w, not both"),
    ("img_h: 30", "prior_box_param: img_h must be positive (both height and width)"),
])
def test_bad_prior_box_parameters_are_one_line_errors(tmp_path, field, error):
    assert_info_refuses(
        tmp_path, 'input: "data" input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }\n'
        'layer { name: "pb" type: "PriorBox" bottom: "data" bottom: "data" top: "pb"'
        f' prior_box_param {{ min_size: 10.0 {field} }} }}\n',
        f"layer 'pb' (PriorBox): {error} (input 1×3×32×32, 1×3×32×32)")


# -- DetectionOutput -----------------------------------------------------------------------

class _Lazy(dict):
    """Boxes decoded when first asked for (most priors are never candidates)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __missing__(self, p):
        self[p] = box = self.fn(p)
        return box


def caffe_detections(d, loc, conf, prior):
    """detection_output_layer.cpp's Forward_cpu with bbox_util.cpp's DecodeBBox, ApplyNMSFast
    and JaccardOverlap, loop for loop, in float32 as Caffe's NormalizedBBox holds them."""
    f = np.float32
    n = loc.shape[0]
    priors, variances = prior[0, 0].reshape(-1, 4), prior[0, 1].reshape(-1, 4)
    locs = 1 if d.share_location else d.num_classes
    loc = loc.reshape(n, len(priors), locs, 4)
    conf = conf.reshape(n, len(priors), d.num_classes)

    def decode(p, v, l):
        if d.variance_encoded_in_target:
            v = [f(1)] * 4
        pw, ph = p[2] - p[0], p[3] - p[1]
        if d.code_type == "CORNER":
            box = [p[k] + v[k] * l[k] for k in range(4)]
        elif d.code_type == "CORNER_SIZE":
            box = [p[k] + v[k] * l[k] * (pw if k % 2 == 0 else ph) for k in range(4)]
        else:
            cx = v[0] * l[0] * pw + (p[0] + p[2]) / f(2)
            cy = v[1] * l[1] * ph + (p[1] + p[3]) / f(2)
            w, h = np.exp(v[2] * l[2]) * pw, np.exp(v[3] * l[3]) * ph
            box = [cx - w / f(2), cy - h / f(2), cx + w / f(2), cy + h / f(2)]
        return [min(max(x, f(0)), f(1)) for x in box] if d.clip else box

    def size(b):
        return f(0) if b[2] < b[0] or b[3] < b[1] else (b[2] - b[0]) * (b[3] - b[1])

    def jaccard(a, b):
        if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
            return f(0)
        inter = (min(a[2], b[2]) - max(a[0], b[0])) * (min(a[3], b[3]) - max(a[1], b[1]))
        return inter / (size(a) + size(b) - inter)

    rows = []
    for i in range(n):
        boxes = {c: _Lazy(lambda p, c=c: decode(priors[p], variances[p], loc[i, p, c]))
                 for c in range(locs)}
        found = {}
        for c in range(d.num_classes):
            if c == d.background:
                continue
            b = boxes[0 if d.share_location else c]
            scores = conf[i, :, c]
            order = sorted((p for p in range(len(scores)) if scores[p] > d.confidence_threshold),
                           key=lambda p: -scores[p])  # stable: ties in prior order
            if d.top_k > -1:
                order = order[:d.top_k]
            kept, threshold = [], d.nms_threshold
            for p in order:
                if all(jaccard(b[p], b[k]) <= threshold for k in kept):
                    kept.append(p)
                    if d.eta < 1 and threshold > 0.5:
                        threshold *= d.eta
            found[c] = kept
        total = sum(map(len, found.values()))
        if d.keep_top_k > -1 and total > d.keep_top_k:
            ranked = sorted(((conf[i, p, c], c, p) for c, ps in found.items() for p in ps),
                            key=lambda t: -t[0])[:d.keep_top_k]
            found = {c: [p for _, c2, p in ranked if c2 == c] for c in sorted(found)}
        for c in sorted(found):
            b = boxes[0 if d.share_location else c]
            rows += [[i, c, conf[i, p, c], *b[p]] for p in found[c]]
    if not rows:
        rows = [[i, -1, -1, -1, -1, -1, -1] for i in range(n)]
    return np.asarray(rows, np.float32)[None, None]


def detection_inputs(net, xs, model):
    """The three bottoms of detection_out, as our module computes them."""
    layer = net.layer("detection_out")
    with torch.no_grad():
        blobs = model.blobs(*map(torch.from_numpy, xs), names=list(layer.bottom))
    return [blobs[b].numpy() for b in layer.bottom]


def test_detections_match_caffes_loop_and_opencv_in_pytorch(tmp_path):
    from prototxt_gen.layers.detection import detection_params
    net, prototxt, weights = with_weights(tmp_path, for_opencv(tmp_path, detections=True))
    xs = inputs_for(net)
    model = to_torch(net)
    with torch.no_grad():
        ours = model(*map(torch.from_numpy, xs)).numpy()
    want = caffe_detections(detection_params(net.layer("detection_out")),
                            *detection_inputs(net, xs, model))
    assert ours.shape == want.shape and want.shape[2] > 5
    assert np.abs(ours - want).max() <= 1e-5
    # OpenCV 4 finds the same detections but lists them by score; Caffe (and we) by image,
    # then label, then score (detection_output_layer.cpp fills a map by label): compare in
    # Caffe's order.
    ref = opencv_blobs(net, prototxt, weights, xs, ["detection_out"])["detection_out"]
    assert ref.shape == ours.shape
    assert np.abs(ours - caffe_order(ref)).max() <= 1e-4


def caffe_order(rows):
    """Detections sorted by image, label, descending score."""
    r = rows[0, 0]
    return r[np.lexsort((-r[:, 2], r[:, 1], r[:, 0]))][None, None]


def onnx_run(model, xs):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip([i.name for i in session.get_inputs()], xs)))


@pytest.mark.parametrize("opset", list(range(13, 21)))
def test_detections_in_onnx_equal_pytorchs(tmp_path, opset):
    """ONNX (standard ops, onnxruntime) gives the module's detections, rows and order, at
    batch 1 and 2 (the second image: another input), and passes onnx.checker's full check."""
    from prototxt_gen.backends.onnx import to_onnx
    net, _, _ = with_weights(tmp_path, SSD)
    model = to_torch(net)
    onnx_model = to_onnx(net, opset=opset)
    out = onnx_model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out][1:] == [1, "detection_out_detections", 7]
    x = inputs_for(net)[0]
    for batch in (x, np.concatenate([x, inputs_for(net, seed=5)[0]])):
        with torch.no_grad():
            want = model(torch.from_numpy(batch)).numpy()
        (got,) = onnx_run(onnx_model, [batch])
        assert got.shape == want.shape, (got.shape, want.shape)
        assert np.abs(got - want).max() <= 1e-5
    assert set(np.unique(got[0, 0, :, 0])) == {0.0, 1.0}


DETECTION_VARIANTS = {
    "corner": "code_type: CORNER keep_top_k: -1",
    "corner_size_in_target": "code_type: CORNER_SIZE variance_encoded_in_target: true",
    "clip_no_top_k": "code_type: CENTER_SIZE clip: true keep_top_k: 20 confidence_threshold: 0.4",
    "none_found": "code_type: CENTER_SIZE confidence_threshold: 0.99",
    "no_background": "code_type: CENTER_SIZE background_label_id: -1 keep_top_k: 30",
}


@pytest.mark.parametrize("variant", DETECTION_VARIANTS)
def test_detection_variants_follow_caffes_loop_in_both_back_ends(tmp_path, variant):
    from prototxt_gen.backends.onnx import to_onnx
    from prototxt_gen.layers.detection import detection_params
    text = SSD.read_text()
    start = text.index("  detection_output_param {")
    params = "num_classes: 3 share_location: true nms_param { nms_threshold: 0.45 " + \
        ("" if variant == "clip_no_top_k" else "top_k: 100 ") + "} " + \
        ("" if "confidence" in DETECTION_VARIANTS[variant] else "confidence_threshold: 0.2 ") + \
        ("" if "background" in DETECTION_VARIANTS[variant] else "background_label_id: 0 ") + \
        DETECTION_VARIANTS[variant]
    path = tmp_path / "variant.prototxt"
    path.write_text(text[:start] + f"  detection_output_param {{ {params} }} }}\n")
    net, _, _ = with_weights(tmp_path, path)
    xs = [np.concatenate([inputs_for(net)[0], inputs_for(net, seed=5)[0]])]  # batch 2
    model = to_torch(net)
    want = caffe_detections(detection_params(net.layer("detection_out")),
                            *detection_inputs(net, xs, model))
    with torch.no_grad():
        got = model(*map(torch.from_numpy, xs)).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5
    (onnx_got,) = onnx_run(to_onnx(net), xs)
    assert onnx_got.shape == want.shape and np.abs(onnx_got - want).max() <= 1e-5
    if variant == "none_found":
        assert want.tolist() == [[[[0] + [-1] * 6, [1] + [-1] * 6]]]


def test_python_and_pt2_exports_run_the_detections(tmp_path):
    """--to python copies the DetectionOutput module into the file; --to pytorch writes a .pt2
    program calling it as torch.ops.prototxt_gen.detection_output (the warning says to import
    prototxt_gen.backends.pytorch to load it). In a fresh interpreter, both give the runtime
    module's detections, the program at batch 1 and 3 (the file says 1)."""
    net, prototxt, weights = with_weights(tmp_path, SSD)
    r = run_cli("convert", prototxt, "--weights", weights, "--to", "python",
                "-o", tmp_path / "ssd.py", "--class-name", "Ssd")
    assert r.returncode == 0, r.stderr
    r = run_cli("convert", prototxt, "--weights", weights, "--to", "pytorch",
                "-o", tmp_path / "ssd.pt2")
    assert r.returncode == 0, r.stderr
    assert (f"prototxt-gen: warning: {tmp_path / 'ssd.pt2'} calls "
            "torch.ops.prototxt_gen.detection_output: import prototxt_gen.backends.pytorch "
            "before torch.export.load") in r.stderr
    x = np.concatenate([inputs_for(net)[0], inputs_for(net, seed=5)[0],
                        inputs_for(net, seed=6)[0]])
    np.save(tmp_path / "x.npy", x)
    script = f"""
import importlib.util, sys
import numpy as np, torch
import prototxt_gen.backends.pytorch  # registers the .pt2 program's operators
spec = importlib.util.spec_from_file_location("ssd_export", {str(tmp_path / "ssd.py")!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
model = mod.Ssd()
model.load_state_dict(torch.load({str(tmp_path / "ssd.pth")!r}))
program = torch.export.load({str(tmp_path / "ssd.pt2")!r}).module()
x = torch.from_numpy(np.load({str(tmp_path / "x.npy")!r}))
with torch.no_grad():
    np.save({str(tmp_path / "py.npy")!r}, model.eval()(x[:1]).numpy())
    np.save({str(tmp_path / "pt2_1.npy")!r}, program(x[:1]).numpy())
    np.save({str(tmp_path / "pt2_3.npy")!r}, program(x).numpy())
"""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model = to_torch(net)
    with torch.no_grad():
        one, three = model(torch.from_numpy(x[:1])).numpy(), model(torch.from_numpy(x)).numpy()
    assert one.shape[2] > 5 and len(set(three[0, 0, :, 0])) == 3
    assert np.array_equal(np.load(tmp_path / "py.npy"), one)
    assert np.array_equal(np.load(tmp_path / "pt2_1.npy"), one)
    assert np.array_equal(np.load(tmp_path / "pt2_3.npy"), three)


# -- real SSD files: OpenCV's res10 face detector, MobileNet-SSD, VGG16 SSD300 -------------

FACE = DATA / "opencv_face_detector_deploy.prototxt"
MOBILENET_SSD = DATA / "chuanqi305_MobileNetSSD_deploy.prototxt"
VGG_SSD300 = DATA / "weiliu89_VGG_VOC0712_SSD_300x300_deploy.prototxt"
REAL = [FACE, MOBILENET_SSD, VGG_SSD300]


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_real_ssd_files_read_render_and_convert(tmp_path, path):
    for command in (["info", path], ["render", path, "-o", tmp_path / "ssd.dot"],
                    ["convert", path, "--to", "onnx", "-o", tmp_path / "ssd.onnx"],
                    ["convert", path, "--to", "python", "-o", tmp_path / "ssd.py"],
                    ["convert", path, "--to", "pytorch", "-o", tmp_path / "ssd.pt2"]):
        r = run_cli(*command)
        assert r.returncode == 0, (command, r.stderr)
    assert "DetectionOutput  1×1×200×7" in run_cli("info", path).stdout


def detector_weights(tmp_path, path, gain=3.0):
    """(net, prototxt, caffemodel) with random weights of a trained net's scale, the class
    scores' convolutions amplified so that some classes win clearly: detections above the
    file's confidence threshold, scores apart. (With no detection OpenCV 4 outputs
    keep_top_k rows of zeros, Caffe one row [image, -1, ...] per image.)"""
    from prototxt_gen import load_weights, write_caffemodel
    from weights import random_weights
    net = random_weights(read_prototxt(path))
    for layer in net.layers:
        if layer.name.endswith("_mbox_conf"):
            layer.blobs = [blob * np.float32(gain) for blob in layer.blobs]
    weights = tmp_path / "detector.caffemodel"
    write_caffemodel(net, weights)
    net = read_prototxt(path)
    load_weights(net, weights, strict=True)
    return net, path, weights


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_real_ssd_detections_match_opencv_in_both_back_ends(tmp_path, path):
    from prototxt_gen.backends.onnx import to_onnx
    from prototxt_gen.backends.pytorch import save_exported
    net, prototxt, weights = detector_weights(tmp_path, path)
    x = inputs_for(net)[0]
    with torch.no_grad():
        ours = to_torch(net)(torch.from_numpy(x)).numpy()
    ref = caffe_order(opencv_blobs(net, prototxt, weights, [x], ["detection_out"])
                      ["detection_out"])
    assert ours.shape == ref.shape and ref.shape[2] > 10
    assert np.abs(ours - ref).max() <= 1e-4
    model = to_onnx(net)  # passes onnx.checker's full check
    (got,) = onnx_run(model, [x])
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4
    (two,) = onnx_run(model, [np.concatenate([x, x[:, :, ::-1]])])  # batch 2
    assert np.abs(two[:, :, two[0, 0, :, 0] == 0] - ref).max() <= 1e-4
    with pytest.warns(UserWarning, match="torch.ops.prototxt_gen.detection_output"):
        save_exported(net, tmp_path / "ssd.pt2")
    program = torch.export.load(tmp_path / "ssd.pt2").module()
    with torch.no_grad():
        got = program(torch.from_numpy(x)).numpy()
        both = program(torch.from_numpy(np.concatenate([x, x[:, :, ::-1]]))).numpy()
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4
    assert np.abs(both - two).max() <= 1e-4


def test_adaptive_nms_in_pytorch_and_a_clear_refusal_in_onnx(tmp_path):
    """nms_param.eta < 1 lowers the threshold after each kept box (above 0.5): the module
    follows Caffe's loop; ONNX's NonMaxSuppression cannot, and the conversion says so."""
    from prototxt_gen.errors import NetError
    from prototxt_gen.backends.onnx import to_onnx
    from prototxt_gen.layers.detection import detection_params
    text = SSD.read_text().replace("nms_threshold: 0.45 top_k: 100",
                                   "nms_threshold: 0.7 eta: 0.9 top_k: 100")
    path = tmp_path / "eta.prototxt"
    path.write_text(text)
    net, _, _ = with_weights(tmp_path, path)
    xs = inputs_for(net)
    model = to_torch(net)
    want = caffe_detections(detection_params(net.layer("detection_out")),
                            *detection_inputs(net, xs, model))
    with torch.no_grad():
        got = model(*map(torch.from_numpy, xs)).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5
    with pytest.raises(NetError, match=r"'detection_out' \(DetectionOutput: nms_param.eta 0.9 "
                                       r"\(ONNX's NonMaxSuppression has no adaptive "
                                       r"threshold\)\)"):
        to_onnx(net)


def test_hostile_sizes_are_refused_before_allocating(tmp_path):
    """A DetectionOutput with 200,000 classes would need 335 GiB of ONNX candidate tables: one
    line, exit 2, nothing written."""
    path = tmp_path / "hostile.prototxt"
    path.write_text('input: "loc" input_shape { dim: 1 dim: 4 }\n'
                    'input: "conf" input_shape { dim: 1 dim: 200000 }\n'
                    'input: "prior" input_shape { dim: 1 dim: 2 dim: 4 }\n'
                    'layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
                    'bottom: "prior" top: "det" '
                    'detection_output_param { num_classes: 200000 keep_top_k: 10 } }\n')
    r = run_cli("convert", path, "--to", "onnx", "-o", tmp_path / "m.onnx")
    assert r.returncode == 2 and not (tmp_path / "m.onnx").exists()
    assert r.stderr.strip().splitlines()[-1].startswith(
        f"prototxt-gen: error: {path}: layer 'det' (DetectionOutput): ONNX's per-class "
        "candidate tables would need 335.3 GiB, over the")
