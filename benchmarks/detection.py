"""SSD detection: MobileNet-SSD, OpenCV's res10 face detector and VGG16 SSD300 (tests/data)
with random weights of a trained net's scale (class scores amplified so that there are
detections), against OpenCV's dnn on the same files and the same input, in one process.

    python benchmarks/detection.py [--repeat 30] [--threads 1]

Reported, as medians with the spread: (1) loading -- OpenCV reading the prototxt and
caffemodel into a runnable net, against our conversion of the same files to an ONNX model
(read, translate, check with onnx.checker) plus creating the onnxruntime session; (2) the time
to the first detections, loading then one forward pass (OpenCV prepares its layers on the first
forward, onnxruntime when the session is created); (3) one forward pass at batch 1 --
onnxruntime and our PyTorch module, against OpenCV's forward. The
detections of all three are compared before anything is timed. Threads are pinned (default 1)
so that the libraries' thread pools do not decide the result.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from prototxt_gen import load_weights, read_prototxt
from prototxt_gen.backends.onnx import to_onnx
from prototxt_gen.backends.pytorch import to_torch
from prototxt_gen.caffe.weights import write_caffemodel
from timing import timed
from weights import random_weights

FILES = [ROOT / "tests" / "data" / "chuanqi305_MobileNetSSD_deploy.prototxt",
         ROOT / "tests" / "data" / "opencv_face_detector_deploy.prototxt",
         ROOT / "tests" / "data" / "weiliu89_VGG_VOC0712_SSD_300x300_deploy.prototxt"]


def show(label, t, base=None):
    med, lo, hi = t
    ratio = f"  {med / base[0]:.2f}x OpenCV" if base else ""
    print(f"  {label:<34} {med * 1000:8.1f} ms  ({lo * 1000:.1f}-{hi * 1000:.1f}){ratio}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = args.threads

    for path in FILES:
        with tempfile.TemporaryDirectory() as tmp:
            run(path, Path(tmp), args, options)


def run(path, tmp, args, options):
    weights = tmp / "model.caffemodel"
    net = random_weights(read_prototxt(path))
    for layer in net.layers:  # amplified class scores: detections above the threshold
        if layer.name.endswith("_mbox_conf"):
            layer.blobs = [b * np.float32(3) for b in layer.blobs]
    write_caffemodel(net, weights)
    x = np.random.default_rng(1).standard_normal((1, 3, 300, 300)).astype(np.float32)

    def opencv_load():
        return cv2.dnn.readNetFromCaffe(str(path), str(weights))

    def ours_load():
        net = read_prototxt(path)
        load_weights(net, weights)
        return ort.InferenceSession(to_onnx(net).SerializeToString(), options,
                                    providers=["CPUExecutionProvider"]), net

    cv = opencv_load()
    session, net = ours_load()
    module = to_torch(net)

    def opencv_run():
        cv.setInput(x)
        return cv.forward()

    def onnx_run():
        return session.run(None, {"data": x})[0]

    def torch_run():
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    ref = opencv_run()[0, 0]
    ref = ref[np.lexsort((-ref[:, 2], ref[:, 1], ref[:, 0]))]  # Caffe's order
    for name, got in (("onnxruntime", onnx_run()), ("PyTorch", torch_run())):
        assert got.shape[2] == len(ref) and np.abs(got[0, 0] - ref).max() <= 1e-4, name
    print(f"{path.stem}, 300x300, {len(ref)} detections, {args.threads} thread(s), "
          f"median of {args.repeat}")
    print(" loading (OpenCV: read; ours: read, convert, check, session):")
    base = timed(opencv_load, args.repeat)
    show("OpenCV readNetFromCaffe", base)
    show("prototxt-gen -> onnxruntime session", timed(ours_load, args.repeat), base)
    print(" time to the first detections (loading as above, then one forward pass):")

    def opencv_first():
        first = opencv_load()
        first.setInput(x)
        return first.forward()

    def ours_first():
        first, _ = ours_load()
        return first.run(None, {"data": x})[0]
    base = timed(opencv_first, args.repeat)
    show("OpenCV", base)
    show("prototxt-gen -> onnxruntime", timed(ours_first, args.repeat), base)
    print(" one forward pass, batch 1:")
    base = timed(opencv_run, args.repeat)
    show("OpenCV dnn", base)
    show("onnxruntime (our ONNX)", timed(onnx_run, args.repeat), base)
    show("PyTorch (our module, eager)", timed(torch_run, args.repeat), base)


if __name__ == "__main__":
    main()
