"""The CLI fuzzed as an attacker or a fuzzer would: hostile prototxts, caffemodels, specs and
output paths, each run through `prototxt_gen.cli.main` in a forked child with a time limit.

Cases are a pure function of their number (`case(i)`), so a run is deterministic, can be split
across processes and resumed. A case passes when the command exits 0, 1 or 2 with every line
on stderr its own ("prototxt-gen: ..."), within the time limit, without a signal, with peak RSS
under the bound, and leaves behind exactly its outputs on success and nothing on failure.

    python tests/fuzzing.py --cases 10000 --jobs 2 --results fuzz.jsonl   (resumable)

The structured nets come from `synth_net(draw)`, which takes its choices from a `draw`
function: random.Random here, hypothesis's data.draw in tests/test_fuzz.py.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REFERENCE = Path(os.environ.get("PROTOTXT_GEN_REFERENCE", ROOT.parent / "shared" / "reference"))

TIMEOUT = 20.0          # seconds a case may run
RSS_BOUND_MB = 2048     # peak resident memory of a case (inputs here are all under 1 MB)
EXIT_CODES = {0, 1, 2}  # success, output not written, bad input (README)

# -- hostile values -------------------------------------------------------------------------------

NAMES = ['"""', "'''", "a\\\\", "\\\\", "x\\n__import__('os').system('touch PWNED')\\n",
         "\\u2028", "</script><script>alert(1)</script>", "<x>", "{}", "{0}", "%s%n",
         "a\\\"b", "\\t", "\\x00", "é名前", "", " ", "-", "../../etc", "a" * 300, "$(touch PWNED)",
         "\\\"\\\"\\\"; import os; os.system('touch PWNED') #", "\\r\\n", "\\342\\200\\250"]
NUMBERS = ["0", "-1", "1", "2", "3", "7", "-2147483648", "2147483647", "2147483648",
           "4294967295", "4294967296", "9223372036854775808", "1e300", "-1e300", "nan", "inf",
           "1000000", "99999999", "65536", "0x7fffffff", "0.5", "-0", "1e-45"]
FIELDS = ["num_output: 0", "num_output: 100000", "group: 0", "group: 3", "kernel_size: 0",
          "kernel_size: 100000", "stride: 0", "dilation: 0", "pad: 100000", "axis: 9",
          "axis: -9", "pool: STOCHASTIC", "global_pooling: true", "operation: MAX", "coeff: 2",
          "shuffle_channel_param { group: 0 }", "shuffle_channel_param { group: 1e300 }",
          "convolution_param { num_output: 0 kernel_size: 1 }",
          "inner_product_param { num_output: 0 }", "reshape_param { shape { dim: -1 dim: -1 } }",
          "slice_param { slice_point: 100 }", "crop_param { offset: 1000 }",
          "tile_param { tiles: 100000 }", "permute_param { order: 5 }",
          "input_param { shape { dim: 1 dim: 16 dim: 1000000 dim: 28 } }",
          "input_dim: 1000000", "bottom: \"data\"", "top: \"data\"", "engine: CUDNN",
          "ceil_mode: false", "pooling_param { kernel_size: 0 }", "lrn_param { local_size: 0 }",
          "lrn_param { local_size: 4 }", "batch_norm_param { eps: -1 }",
          "eltwise_param { coeff: 1 coeff: 2 coeff: 3 }", "scale_param { axis: 4 }",
          "argmax_param { top_k: 100000 }", "power_param { power: 1e300 }",
          'norm_param { eps: "x" across_spatial: 3 }', 'ceil_mode: "yes"',
          'permute_param { order: "a" order: 1e9 }', 'shuffle_channel_param { group: "x" }',
          "norm_param { channel_shared: false eps: nan }", "pooling_param { ceil_mode: 2 }"]
SNIPPETS = ['"a\\x"', '"\\', "{", "}", "<", ">", "[", "]", ":", "\x00", "\xff\xfe", "#",
            'layer { name: "c" type: "Convolution" bottom: "c" top: "c" }',
            'layer { type: "ShuffleChannel" bottom: "data" top: "s" }',
            'layer { name: "x" type: "NoSuchLayer" bottom: "data" top: "y" }',
            "layers { name: 'v1' type: CONVOLUTION bottom: 'data' top: 'v1' }",
            "input: 'extra' input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1"]


@dataclass
class Case:
    """One invocation: argv for cli.main, the files to lay out first, and the files a
    successful run writes (all of them) and a failed one must not leave (any of them)."""

    id: int
    kind: str                      # where the input came from: prototxt, caffemodel, spec...
    command: str                   # the row of the report: info, convert-onnx, render-dot...
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    setup: str = ""                # "symlink", "fifo", "dir": what is at the output path first
    note: str = ""                 # how the input was made


@dataclass
class Result:
    id: int
    kind: str
    command: str
    verdict: str                   # ok, traceback, internal, stray, hang, crash, exit, partial, rss
    rc: int | None
    seconds: float
    rss_mb: float
    detail: str = ""
    note: str = ""


# -- sources --------------------------------------------------------------------------------------

class Sources:
    """The valid files the mutations start from (read and written once per process)."""

    def __init__(self):
        zoo = REFERENCE / "zoo"
        self.prototxts: dict[str, bytes] = {p.name: p.read_bytes() for p in sorted(zoo.glob("*.prototxt"))}
        for p in sorted((HERE / "data").glob("*.prototxt")):
            self.prototxts[p.name] = p.read_bytes()
        # Small files are the ones worth converting many times; big ones are read and drawn.
        self.small = sorted(n for n, b in self.prototxts.items() if len(b) < 20000)
        self.specs: dict[str, bytes] = {p.name: p.read_bytes()
                                        for p in sorted((ROOT / "templates").glob("*.toml"))}
        self.specs["my_resnet.toml"] = (ROOT / "examples" / "my_resnet.toml").read_bytes()
        self.models = self._caffemodels()
        self.state_dict = self._state_dict()

    def _state_dict(self) -> bytes:
        """lenet's weights as `convert --to python` saves them (torch.save's zip)."""
        import io

        import torch
        from prototxt_gen.caffe.weights import load_weights
        from prototxt_gen.backends.pytorch import to_torch
        from prototxt_gen.caffe.reader import read_prototxt
        net = read_prototxt(REFERENCE / "zoo" / "lenet.prototxt")
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "w.caffemodel").write_bytes(self.models["lenet.prototxt"][1])
            load_weights(net, Path(d) / "w.caffemodel")
        buf = io.BytesIO()
        torch.save(to_torch(net).state_dict(), buf)
        return buf.getvalue()

    @staticmethod
    def _caffemodels() -> dict[str, tuple[bytes, bytes]]:
        """(prototxt, caffemodel) pairs with random weights written by our writer."""
        import numpy as np
        from prototxt_gen.caffe.weights import write_caffemodel
        from prototxt_gen.caffe.reader import read_prototxt
        from prototxt_gen.graph.shapes import infer
        out = {}
        with tempfile.TemporaryDirectory() as d:
            for name in ("lenet.prototxt", "squeezenet_v1.1.prototxt",
                         "bvlc_reference_caffenet_V1legacy_2014.prototxt"):
                path = REFERENCE / "zoo" / name
                net = read_prototxt(path)
                if "caffenet" in name:  # 60M weights are too many to rewrite per case
                    net.inputs[0].shape = (1, 3, 67, 67)
                rng = np.random.default_rng(0)
                for s in infer(net):
                    s.layer.blobs = [rng.standard_normal(shape).astype(np.float32) * 0.05
                                     for shape in s.blobs]
                model = Path(d) / "w.caffemodel"
                write_caffemodel(net, model)
                text = net.to_prototxt() if "caffenet" in name else path.read_bytes().decode()
                out[name] = (text.encode(), model.read_bytes())
        return out


# -- mutations ------------------------------------------------------------------------------------

def _positions(data: bytes, r: random.Random, pattern: bytes) -> list[int]:
    out, i = [], data.find(pattern)
    while i >= 0 and len(out) < 5000:
        out.append(i)
        i = data.find(pattern, i + 1)
    return out


def mutate_text(data: bytes, r: random.Random, vocab: dict[str, list[str]]) -> tuple[bytes, str]:
    """One to three mutations of a text file; returns the bytes and what was done."""
    done = []
    for _ in range(r.choice((1, 1, 1, 2, 3))):
        how = r.choice(("flip", "truncate", "delete", "duplicate", "insert", "number", "name",
                        "field", "nest", "number", "name", "field"))
        n = len(data)
        if how == "flip" and n:
            data = bytearray(data)
            for _ in range(r.randint(1, 8)):
                data[r.randrange(n)] = r.randrange(256)
            data = bytes(data)
        elif how == "truncate" and n:
            data = data[:r.randrange(n)]
        elif how == "delete" and n:
            a = r.randrange(n)
            data = data[:a] + data[a + r.randint(1, 200):]
        elif how == "duplicate" and n:
            a = r.randrange(n)
            data = data[:a] + data[a:a + r.randint(1, 2000)] * r.randint(2, 4) + data[a:]
        elif how == "insert":
            a = r.randrange(n + 1)
            data = data[:a] + r.choice(vocab["snippets"]).encode("utf-8", "surrogateescape") \
                + data[a:]
        elif how == "number":
            digits = [i for i in range(n) if data[i:i + 1].isdigit() and
                      (i == 0 or not data[i - 1:i].isalnum())][:5000]
            if digits:
                a = r.choice(digits)
                b = a
                while b < n and (data[b:b + 1].isalnum() or data[b:b + 1] in b".-"):
                    b += 1
                data = data[:a] + r.choice(vocab["numbers"]).encode() + data[b:]
        elif how == "name":
            quotes = _positions(data, r, b'"')
            if len(quotes) >= 2:
                k = r.randrange(len(quotes) - 1)
                a, b = quotes[k], quotes[k + 1]
                data = data[:a + 1] + r.choice(vocab["names"]).encode() + data[b:]
        elif how == "field":
            braces = _positions(data, r, vocab["anchor"]) or [n]
            a = r.choice(braces) + 1
            data = data[:a] + b" " + r.choice(vocab["fields"]).encode() + b" " + data[a:]
        elif how == "nest":
            depth = r.choice((50, 500, 1100, 5000, 100000))
            opener, closer = r.choice(vocab["nest"])
            a = r.choice(_positions(data, r, b"\n") or [n])
            data = data[:a] + opener.encode() * depth + closer.encode() * depth + data[a:]
        done.append(how)
    return data, "+".join(done)


PROTOTXT_VOCAB = {"names": NAMES, "numbers": NUMBERS, "fields": FIELDS, "snippets": SNIPPETS,
                  "nest": [("a { ", "} "), ("layer { ", "} "), ("[", "]")], "anchor": b"{"}
SPEC_VOCAB = {
    "names": NAMES + ["{unit:d}", "{unit!z}", "{", "}", "{nope}", "{unit}{unit}", "res{unit}",
                      "bottleneck", "basic", "classifier", "resnet", "original", "layer",
                      "input_shape", "poly", "slim", "kaiming"],
    "numbers": NUMBERS + ["1000000000", "100000", "-5", "18446744073709551616", "1e9", "true",
                          "[1, 2]", "{ a = 1 }", "\"3\""],
    "fields": ["\nunits = 1000000000\n", "\nunits = 100000\n", "\nunits = 0\n",
               "\nchannels = 4294967296\n", "\nwidth = 0\n", "\ngroups = 7\n",
               "\nstride = 0\n", "\nkernel = 100000\n", "\nkind = [\"resnet\"]\n",
               "\nblock = { a = 1 }\n", "\nnum_classes = 2147483648\n", "\ndilation = 0\n",
               "\nshape = [1, 3, 1000000, 1000000]\n", "\nshape = [1, 3]\n", "\nnope = 1\n",
               "\nconv = \"{unit:d}\"\n", "\nconv = \"{unit!z}\"\n", "\nrelu = \"{conv}\"\n",
               "\nbn = \"{\"\n", "\nmax_iter = 1e300\n", "\nstepvalue = [-1]\n"],
    "snippets": ["[", "]", "=", "\"", "[[stage]]\nblock = \"bottleneck\"\nunits = 100000\n",
                 "\nkind = [1, 2]\n", "\nkind = { a = 1 }\n", "\nblock = [\"x\"]\n",
                 "\nunits = 1000000000\n", "\n[naming]\nconv = \"{unit:d}\"\n",
                 "\n[naming]\nconv = \"{unit!z}\"\n", "\nchannels = 4294967296\n",
                 "\n[solver]\nbase_lr = 1e400\n", "\n[train]\nbatch_size = 0\n",
                 "\nshape = [1, 3, 100000, 100000]\n", "\x00", "\udcff"],
    "nest": [("[", "]"), ("{a=", "}"), ("x = [", "]\n")], "anchor": b"\n"}


# -- structured nets ------------------------------------------------------------------------------

LAYER_KINDS = ["Convolution", "Deconvolution", "Pooling", "InnerProduct", "ReLU", "PReLU",
               "BatchNorm", "Scale", "Bias", "Eltwise", "Concat", "Softmax", "LRN", "Flatten",
               "Reshape", "Slice", "Split", "Crop", "Dropout", "Power", "Sigmoid", "TanH",
               "ShuffleChannel", "Permute", "Normalize", "ArgMax", "Reduction", "Tile", "MVN",
               "Axpy", "Exp", "Log", "Silence", "Unknown"]
SMALL = [0, 1, 2, 3, 4, 7, -1]
ANY = SMALL + [2**31 - 1, 2**31, 2**32, 100000, -2**31]


def synth_net(draw) -> str:
    """A prototxt of a few layers whose types, wiring and parameters come from `draw(options)`
    (each call picks one of the options): mostly nonsense that is well-formed text."""
    dims = [draw([1, 2]), draw([1, 3, 4, 16, 0, 100000]), draw([1, 5, 8, 28, 0, 1000000]),
            draw([1, 5, 8, 28, -3])]
    name = draw(["data", "data", '"""', "<x>", "a\\\\", "{}"])
    lines = [f'name: "{draw(["synth", chr(34) * 3, "</script>", "n{0}"])}"',
             f'input: "{name}"'] + [f"input_dim: {d}" for d in dims]
    blobs = [name]
    for k in range(draw([1, 2, 3, 5, 8])):
        kind = draw(LAYER_KINDS)
        n_bottom = draw([1, 1, 1, 2, 0, 3])
        bottoms = [draw(blobs + ["missing"]) for _ in range(n_bottom)]
        in_place = draw([False, False, True]) and bottoms
        tops = [bottoms[0]] if in_place else [f"b{k}_{j}" for j in range(draw([1, 1, 2, 0]))]
        params = []
        for _ in range(draw([0, 1, 2, 3])):
            params.append(draw([
                f"convolution_param {{ num_output: {draw(SMALL + [64])} kernel_size: "
                f"{draw(SMALL)} stride: {draw(SMALL)} pad: {draw(SMALL)} group: {draw(SMALL)} "
                f"dilation: {draw(SMALL)} }}",
                f"pooling_param {{ pool: {draw(['MAX', 'AVE', 'STOCHASTIC'])} kernel_size: "
                f"{draw(SMALL)} stride: {draw(SMALL)} pad: {draw(SMALL)} }}",
                f"pooling_param {{ global_pooling: true }}",
                f"inner_product_param {{ num_output: {draw(SMALL)} axis: {draw(SMALL)} "
                f"transpose: {draw(['true', 'false'])} }}",
                f"eltwise_param {{ operation: {draw(['SUM', 'PROD', 'MAX'])} coeff: "
                f"{draw(['1', '-1', '0.5', 'nan'])} }}",
                f"concat_param {{ axis: {draw(SMALL)} }}",
                f"softmax_param {{ axis: {draw(SMALL)} }}",
                f"lrn_param {{ local_size: {draw(SMALL)} norm_region: "
                f"{draw(['ACROSS_CHANNELS', 'WITHIN_CHANNEL'])} }}",
                f"reshape_param {{ shape {{ dim: {draw(SMALL)} dim: {draw(SMALL)} }} "
                f"axis: {draw(SMALL)} num_axes: {draw(SMALL)} }}",
                f"slice_param {{ axis: {draw(SMALL)} slice_point: {draw(SMALL)} }}",
                f"crop_param {{ axis: {draw(SMALL)} offset: {draw(SMALL)} }}",
                f"flatten_param {{ axis: {draw(SMALL)} end_axis: {draw(SMALL)} }}",
                f"scale_param {{ axis: {draw(SMALL)} num_axes: {draw(SMALL)} "
                f"bias_term: {draw(['true', 'false'])} }}",
                f"shuffle_channel_param {{ group: {draw(ANY)} }}",
                f"permute_param {{ order: {draw(SMALL)} order: {draw(SMALL)} }}",
                f"tile_param {{ axis: {draw(SMALL)} tiles: {draw(ANY)} }}",
                f"argmax_param {{ top_k: {draw(ANY)} axis: {draw(SMALL)} }}",
                f"reduction_param {{ axis: {draw(SMALL)} operation: "
                f"{draw(['SUM', 'MEAN', 'ASUM', 'SUMSQ'])} }}",
                f"power_param {{ power: {draw(['2', '0.5', '-1', '1e300'])} scale: 2 }}",
                f"batch_norm_param {{ eps: {draw(['0', '-1', '1e-5'])} }}",
                f"norm_param {{ across_spatial: {draw(['true', 'false'])} }}",
            ]))
        layer_name = draw([f"l{k}", f"l{k}", '"""', "a\\\\", "<x>", "{}", "l0", "\\u2028"])
        lines.append("layer {")
        lines.append(f'  name: "{layer_name}" type: "{kind}"')
        lines += [f'  bottom: "{b}"' for b in bottoms] + [f'  top: "{t}"' for t in tops]
        lines += [f"  {p}" for p in params]
        lines.append("}")
        blobs += [t for t in tops if t not in blobs]
    return "\n".join(lines) + "\n"


# -- the cases ------------------------------------------------------------------------------------

PROTOTXT_COMMANDS = [("info", ["info", "{net}"], []),
                     ("info-json", ["info", "{net}", "--format", "json"], []),
                     ("convert-onnx", ["convert", "{net}", "--to", "onnx", "-o", "m.onnx"],
                      ["m.onnx"]),
                     ("convert-python", ["convert", "{net}", "--to", "python", "-o", "m.py"],
                      ["m.py", "m.pth"]),
                     ("convert-pytorch", ["convert", "{net}", "--to", "pytorch", "-o", "m.pt2"],
                      ["m.pt2"]),
                     ("render-dot", ["render", "{net}", "-o", "g.dot"], ["g.dot"]),
                     ("render-html", ["render", "{net}", "-o", "g.html"], ["g.html"]),
                     ("convert-onnx-verify", ["convert", "{net}", "--to", "onnx", "--verify",
                                              "--fuse", "-o", "m.onnx"], ["m.onnx"]),
                     ("info-shape", ["info", "{net}", "--input-shape", "2,3,67,67"], [])]
# How often each is picked: torch.export and dot are slow, so they get fewer cases.
PROTOTXT_WEIGHTS = [4, 2, 4, 4, 1, 3, 1, 1, 1]


def case(i: int, src: Sources) -> Case:
    """Case number i: the same for every run on every machine."""
    r = random.Random(f"prototxt-gen fuzz {i}")
    kind = r.choices(("prototxt", "synth", "caffemodel", "spec", "output", "statedict"),
                     weights=(45, 20, 15, 15, 5, 4))[0]
    return globals()[f"_{kind}_case"](i, r, src)


def _command(r: random.Random, small: bool) -> tuple[str, list[str], list[str]]:
    weights = PROTOTXT_WEIGHTS if small else [4, 2, 2, 1, 0, 3, 1, 0, 1]
    return r.choices(PROTOTXT_COMMANDS, weights=weights)[0]


def _prototxt_case(i: int, r: random.Random, src: Sources) -> Case:
    name = r.choice(src.small if r.random() < 0.7 else sorted(src.prototxts))
    data, note = mutate_text(src.prototxts[name], r, PROTOTXT_VOCAB)
    command, argv, outputs = _command(r, name in src.small)
    return Case(i, "prototxt", command, [a.format(net="net.prototxt") for a in argv],
                {"net.prototxt": data}, outputs, note=f"{name}: {note}")


def _synth_case(i: int, r: random.Random, src: Sources) -> Case:
    text = synth_net(r.choice)
    command, argv, outputs = _command(r, True)
    return Case(i, "synth", command, [a.format(net="net.prototxt") for a in argv],
                {"net.prototxt": text.encode()}, outputs, note="synthesized net")


def _caffemodel_case(i: int, r: random.Random, src: Sources) -> Case:
    name = r.choice(sorted(src.models))
    text, model = src.models[name]
    how = r.choice(("bytes", "bytes", "blobs", "truncate", "swap"))
    if how == "bytes":
        data = bytearray(model)
        for _ in range(r.randint(1, 16)):
            data[r.randrange(len(data))] = r.randrange(256)
        model = bytes(data)
    elif how == "truncate":
        model = model[:r.randrange(len(model))]
    elif how == "blobs":
        model = _mutate_blobs(model, r)
    else:  # another net's weights
        model = src.models[r.choice(sorted(src.models))][1]
    command, argv, outputs = r.choice([
        ("info-weights", ["info", "net.prototxt", "--weights", "w.caffemodel"], []),
        ("info-caffemodel", ["info", "w.caffemodel"], []),
        ("convert-caffemodel", ["convert", "net.prototxt", "--weights", "w.caffemodel",
                                "--to", "caffemodel", "-o", "out.caffemodel"], ["out.caffemodel"]),
        ("convert-onnx", ["convert", "net.prototxt", "--weights", "w.caffemodel", "--to", "onnx",
                          "-o", "m.onnx"], ["m.onnx"]),
        ("convert-python", ["convert", "w.caffemodel", "--to", "python", "-o", "m.py"],
         ["m.py", "m.pth"]),
    ])
    return Case(i, "caffemodel", command, argv, {"net.prototxt": text, "w.caffemodel": model},
                outputs, note=f"{name}: {how}")


def _mutate_blobs(model: bytes, r: random.Random) -> bytes:
    """Structured damage: blob shapes with negative, zero or huge dims, data removed or
    shortened, layer names swapped."""
    from prototxt_gen.proto import caffe_pb2
    net = caffe_pb2.NetParameter.FromString(model)
    layers = [lp for lp in net.layer if lp.blobs] or list(net.layer)
    for _ in range(r.randint(1, 3)):
        lp = r.choice(layers)
        if not lp.blobs:
            continue
        blob = r.choice(lp.blobs)
        what = r.choice(("dims", "dims", "nodata", "short", "name", "legacy"))
        if what == "dims":
            dims = list(blob.shape.dim) or [1]
            dims[r.randrange(len(dims))] = r.choice([-1, 0, 2**31, 2**40, 2**62, -2**62])
            blob.shape.ClearField("dim")
            blob.shape.dim.extend(dims)
        elif what == "nodata":
            blob.ClearField("data")
        elif what == "short":
            del blob.data[len(blob.data) // 2:]
        elif what == "name":
            lp.name = r.choice(NAMES).replace("\\\\", "\\")
        else:
            blob.ClearField("shape")
            blob.num, blob.channels = r.choice([(-1, 1), (2**31 - 1, 2**31 - 1), (1, 0)])
    return net.SerializeToString()


def _statedict_case(i: int, r: random.Random, src: Sources) -> Case:
    data = bytearray(src.state_dict)
    how = r.choice(("bytes", "truncate", "tail"))
    if how == "bytes":
        for _ in range(r.randint(1, 16)):
            data[r.randrange(len(data))] = r.randrange(256)
    elif how == "truncate":
        del data[r.randrange(len(data)):]
    else:  # the zip's central directory, where lengths and offsets live
        for _ in range(r.randint(1, 8)):
            data[len(data) - 1 - r.randrange(min(400, len(data)))] = r.randrange(256)
    return Case(i, "statedict", "convert-statedict",
                ["convert", "net.prototxt", "--state-dict", "sd.pth", "--to", "caffemodel",
                 "-o", "out.caffemodel"],
                {"net.prototxt": src.models["lenet.prototxt"][0], "sd.pth": bytes(data)},
                ["out.caffemodel"], note=f"lenet state_dict: {how}")


def _spec_case(i: int, r: random.Random, src: Sources) -> Case:
    name = r.choice(sorted(src.specs))
    data, note = mutate_text(src.specs[name], r, SPEC_VOCAB)
    command, argv, outputs = r.choice([
        ("generate", ["--spec", "s.toml", "-o", "out.prototxt"], ["out.prototxt"]),
        ("generate", ["--spec", "s.toml"], []),
        ("generate-train", ["--spec", "s.toml", "--phase", "train", "-o", "out.prototxt"],
         ["out.prototxt"]),
        ("info", ["info", "s.toml"], []),
        ("solver", ["solver", "--spec", "s.toml", "-o", "solver.prototxt"],
         ["solver.prototxt"]),
    ])
    return Case(i, "spec", command, argv, {"s.toml": data}, outputs, note=f"{name}: {note}")


def _output_case(i: int, r: random.Random, src: Sources) -> Case:
    target = r.choice(["x" * 300 + ".onnx", "nodir/m.onnx", "-", "out", "m.onnx", "é.onnx",
                       "a\nb.onnx", "m.onnx/", "."])
    setup = r.choice(["", "", "dir", "symlink", "fifo"])
    command, argv, outputs = r.choice([
        ("convert-onnx", ["convert", "net.prototxt", "--to", "onnx", "-o", target], [target]),
        ("convert-python", ["convert", "net.prototxt", "--to", "python", "-o", target],
         [target, (target[:-3] if target.endswith(".py") else target) + ".pth"]),
        ("generate", ["resnet18", "-o", target], [target]),
        ("render-dot", ["render", "net.prototxt", "-o", target, "--format", "dot"], [target]),
        ("info", ["info", "net.prototxt", "-o", target], [target]),
    ])
    if target == "-" and command in ("generate", "info"):
        outputs = []
    return Case(i, "output", command, argv, {"net.prototxt": src.prototxts["lenet.prototxt"]},
                outputs, setup=setup, note=f"-o {target!r} {setup}")


# -- running --------------------------------------------------------------------------------------

def _lay_out(c: Case, d: Path) -> None:
    for name, data in c.files.items():
        (d / name).write_bytes(data)
    if c.setup and c.outputs and "/" not in c.outputs[0] and c.outputs[0] not in ("-", ".") \
            and len(c.outputs[0]) < 255:
        target = d / c.outputs[0]
        if c.setup == "dir":
            target.mkdir(exist_ok=True)
        elif c.setup == "symlink":
            (d / "victim").write_bytes(b"keep me")
            target.symlink_to("victim")
        elif c.setup == "fifo":
            os.mkfifo(target)


def start(c: Case, d: Path):
    """Fork a child that runs the case in `d`; returns its pid."""
    _lay_out(c, d)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        os.chdir(d)
        os.setpgid(0, 0)
        for fd, name in ((1, ".stdout"), (2, ".stderr")):
            out = os.open(d.parent / f"{d.name}{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, fd)
            os.close(out)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        # A safety net for the machine, far above the bound the verdict checks.
        limit = (RSS_BOUND_MB + 6144) * 2**20 + _vm_size()
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from prototxt_gen.cli import main
        code = main(c.argv)
        sys.stdout.flush()
        sys.stderr.flush()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        os._exit(code)


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def judge(c: Case, d: Path, status: int | None, rusage, seconds: float, hung: bool) -> Result:
    stderr = (d.parent / f"{d.name}.stderr").read_text("utf-8", "replace")
    rss = rusage.ru_maxrss / 1024 if rusage else 0.0
    rc = os.waitstatus_to_exitcode(status) if status is not None else None
    res = Result(c.id, c.kind, c.command, "ok", rc, round(seconds, 3), round(rss, 1),
                 note=c.note[:200])
    lines = stderr.splitlines()
    left = sorted(p.name for p in d.iterdir() if p.name not in c.files and p.name != "victim")
    stray = [ln for ln in lines if not ln.startswith("prototxt-gen: ")]
    if hung:
        res.verdict, res.detail = "hang", f"killed after {TIMEOUT:.0f} s"
    elif rc is None or rc < 0:
        res.verdict, res.detail = "crash", f"signal {-rc if rc else '?'}"
    elif "Traceback (most recent call last)" in stderr:
        res.verdict, res.detail = "traceback", stderr[-600:]
    elif "internal error" in stderr:
        res.verdict, res.detail = "internal", stderr[-400:]
    elif rc not in EXIT_CODES:
        res.verdict, res.detail = "exit", f"exit {rc}: {stderr[-300:]}"
    elif stray:
        res.verdict, res.detail = "stray", "\n".join(stray)[:400]
    elif rc != 0 and not lines:
        res.verdict, res.detail = "stray", f"exit {rc} without a message"
    elif any(n.endswith(".part") or n.startswith(".") for n in left):
        res.verdict, res.detail = "partial", f"left {left}"
    elif rc != 0 and any(_exists(d / o) for o in c.outputs if o not in ("-",)) \
            and not c.setup:
        res.verdict, res.detail = "partial", f"exit {rc} but wrote {left}"
    elif rc == 0 and c.outputs and not all(_exists(d / o) for o in c.outputs if o != "-") \
            and c.outputs[0] != "-":
        res.verdict, res.detail = "partial", f"exit 0 but only {left} of {c.outputs}"
    elif rss > RSS_BOUND_MB:
        res.verdict, res.detail = "rss", f"peak RSS {rss:.0f} MB"
    elif (d / "PWNED").exists() or (d.parent / "PWNED").exists():
        res.verdict, res.detail = "injection", "a name planted in the input ran"
    if (d / "victim").exists() and (d / "victim").read_bytes() != b"keep me":
        res.verdict, res.detail = "partial", "wrote through a symlink"
    if res.verdict == "ok" and lines:
        res.detail = lines[-1][:300]
    return res


def _exists(p: Path) -> bool:
    try:
        return p.is_file() and not p.is_symlink()
    except OSError:  # a name too long to look up
        return False


def run_cases(cases, jobs: int = 2, timeout: float = TIMEOUT, on_result=None) -> list[Result]:
    """Run the cases, `jobs` children at a time; each result goes to on_result as it comes."""
    results = []
    base = Path(tempfile.mkdtemp(prefix="prototxt-gen-fuzz-"))
    running: dict[int, tuple[Case, Path, float]] = {}
    pending = iter(cases)
    try:
        while True:
            while len(running) < jobs:
                c = next(pending, None)
                if c is None:
                    break
                d = base / f"c{c.id}"
                d.mkdir()
                running[start(c, d)] = (c, d, time.monotonic())
            if not running:
                break
            pid, status, rusage = os.wait4(-1, os.WNOHANG)
            now = time.monotonic()
            hung = None
            if not pid:
                for p, (c, d, t0) in running.items():
                    if now - t0 > timeout:
                        hung = p
                        break
                if hung is None:
                    time.sleep(0.005)
                    continue
                _kill(hung)
                pid, status, rusage = os.wait4(hung, 0)
            c, d, t0 = running.pop(pid)
            _kill(pid)  # whatever the case left running (dot, threads' children)
            res = judge(c, d, None if hung else status, rusage, now - t0, bool(hung))
            results.append(res)
            if on_result:
                on_result(res)
            shutil.rmtree(d, ignore_errors=True)
            for suffix in (".stdout", ".stderr"):
                (base / f"{d.name}{suffix}").unlink(missing_ok=True)
    finally:
        for pid in running:
            _kill(pid)
        shutil.rmtree(base, ignore_errors=True)
    return results


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def preload() -> None:
    """Import what the commands import, once, so that each forked case starts warm."""
    import numpy  # noqa: F401
    import prototxt_gen.cli  # noqa: F401
    for module in ("torch", "onnx", "onnxruntime", "graphviz", "prototxt_gen.backends.pytorch",
                   "prototxt_gen.backends.onnx", "prototxt_gen.view.render", "prototxt_gen.view.report",
                   "prototxt_gen.view.info", "prototxt_gen.build.generator", "prototxt_gen.build.training"):
        try:
            __import__(module)
        except ImportError:
            pass
    try:
        import torch
        torch.set_num_threads(1)  # two cases at a time share two cores
    except ImportError:
        pass


def table(results: list[Result]) -> str:
    """Per command: cases, exits 0/1/2, failures by verdict, slowest, peak RSS."""
    rows: dict[str, list[Result]] = {}
    for res in results:
        rows.setdefault(res.command, []).append(res)
    bad = ("traceback", "internal", "stray", "hang", "crash", "exit", "partial", "rss",
           "injection")
    head = ["command", "cases", "exit 0", "exit 1", "exit 2", *bad, "max s", "max RSS MB"]
    out = [head]
    for name in sorted(rows) + ["all"]:
        rs = results if name == "all" else rows[name]
        out.append([name, len(rs), *(sum(r.rc == k and r.verdict == "ok" for r in rs)
                                     for k in (0, 1, 2)),
                    *(sum(r.verdict == v for r in rs) for v in bad),
                    f"{max((r.seconds for r in rs), default=0):.1f}",
                    f"{max((r.rss_mb for r in rs), default=0):.0f}"])
    widths = [max(len(str(row[k])) for row in out) for k in range(len(head))]
    return "\n".join("| " + " | ".join(str(v).rjust(w) for v, w in zip(row, widths)) + " |"
                     for row in out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="0:300", help="N or FIRST:END (case numbers)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    p.add_argument("--results", help="JSON lines, appended; cases already there are skipped")
    p.add_argument("--timeout", type=float, default=TIMEOUT)
    p.add_argument("--show", action="store_true", help="print each failure as it comes")
    p.add_argument("--lay-out", nargs=2, metavar=("N", "DIR"),
                   help="write case N's files into DIR and print its command, to reproduce it")
    args = p.parse_args(argv)
    if args.lay_out:
        c = case(int(args.lay_out[0]), Sources())
        d = Path(args.lay_out[1])
        d.mkdir(parents=True, exist_ok=True)
        _lay_out(c, d)
        print(f"cd {d} && prototxt-gen " + " ".join(map(repr, c.argv)) + f"   # {c.note}")
        return 0
    first, _, end = args.cases.rpartition(":")
    ids = range(int(first or 0), int(end))
    done: dict[int, Result] = {}
    if args.results and os.path.exists(args.results):
        with open(args.results) as f:
            for line in f:
                if line.strip():
                    res = Result(**json.loads(line))
                    done[res.id] = res
    preload()
    src = Sources()
    log = open(args.results, "a") if args.results else None
    t0 = time.monotonic()
    n = [0]

    def report(res: Result):
        n[0] += 1
        if log:
            log.write(json.dumps(asdict(res)) + "\n")
            log.flush()
        if res.verdict != "ok" and args.show:
            print(f"case {res.id} ({res.kind}, {res.command}, {res.note}): {res.verdict}: "
                  f"{res.detail}", flush=True)
        if n[0] % 500 == 0:
            print(f"{n[0]} cases in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)

    todo = (case(i, src) for i in ids if i not in done)
    results = run_cases(todo, args.jobs, args.timeout, report)
    every = [done[i] for i in ids if i in done] + results
    print(table(every))
    print(f"{len(results)} cases run in {time.monotonic() - t0:.1f} s with {args.jobs} jobs, "
          f"{len(every) - len(results)} from {args.results}")
    return 1 if any(r.verdict != "ok" for r in every) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
