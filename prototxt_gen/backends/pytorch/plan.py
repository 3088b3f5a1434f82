"""The plan of a translation: one statement per layer, in Caffe's order, from each layer's
lowering; and the two exact rewrites Caffe's in-place layers allow (`_fast_paths`)."""
from __future__ import annotations

import builtins
import keyword
from dataclasses import dataclass, field
from typing import Callable, Iterable

from torch import nn

from ...errors import Unsupported, untranslatable
from ..fuse import batchnorm_scale_pairs, value_readers
from ..fuse import fuse as fold_affine
from ...graph.net import Layer, Net, net_inputs, net_outputs
from ...graph.shapes import infer, largest_new_weight, new_weight_bytes
from ...layers.common import lit
from ..inference import for_inference
from . import ops
from .builder import CONVERTERS, Lowered, TorchBuilder


@dataclass
class Statement:
    layer: Layer
    lowered: Lowered
    attr: str | None          # submodule name, when the layer has one
    bottoms: list[str]        # variable names
    tops: list[str]


@dataclass
class Plan:
    name: str
    inputs: list[tuple[str, str, tuple[int, ...]]]  # (blob, variable, shape)
    outputs: list[tuple[str, str]]                  # (blob, variable), in Caffe's order
    statements: list[Statement]
    fused: bool
    # Statement index -> code for forward where it can do better than one op per layer (""
    # when an earlier statement already did this one's work); see _fast_paths.
    fast: dict[int, "Assign"] = field(default_factory=dict)
    fast_helpers: tuple[Callable, ...] = ()  # ops functions the fast code calls
    new_weights: int = 0      # bytes of initial weights for layers the net has none for
    largest_new: int = 0      # bytes of the largest of those initial weights

    @property
    def helpers(self) -> list[type]:
        seen: dict[type, None] = {}
        for st in self.statements:
            for h in st.lowered.helpers + ((st.lowered.module.cls,) if st.lowered.module else ()):
                if h.__module__ == ops.__name__:
                    seen[h] = None
        for h in self.fast_helpers:
            seen[h] = None
        return list(seen)


# Names a generated forward must not shadow.
RESERVED = {"self", "torch", "nn", "F", "math", "blobs", "names"} | set(dir(builtins))


def sanitize(name: str) -> str:
    """A Python identifier for a Caffe name: other characters become '_' ('conv2_1/dw' ->
    'conv2_1_dw'); a leading digit gets 'l_'. Collisions are resolved by the caller."""
    out = "".join(c if c.isalnum() and c.isascii() or c == "_" else "_" for c in name) or "_"
    if out[0].isdigit():
        out = "l_" + out
    if keyword.iskeyword(out):
        out += "_"
    return out


class _Names:
    """Unique identifiers for Caffe names (reversible through the mapping kept here)."""

    def __init__(self, taken: Iterable[str] = ()):
        self.taken = set(taken)
        self.by_name: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self.by_name:
            base = ident = sanitize(name)
            n = 2
            while ident in self.taken:
                ident, n = f"{base}_{n}", n + 1
            self.taken.add(ident)
            self.by_name[name] = ident
        return self.by_name[name]


# Attributes a submodule must not take the name of (nn.Module's and CaffeNet's own).
_MODULE_ATTRS = set(dir(nn.Module)) | {
    "input_names", "input_shapes", "output_names", "caffe_names", "caffe_blobs", "fused",
    "blob_names", "blobs", "layer_outputs"}


def plan(net: Net, fuse: bool = False) -> Plan:
    """Translate every layer (without building modules). Layers that cannot be translated are
    all reported in one error, before anything is built. A training net is translated for
    inference (see inference.for_inference)."""
    net = for_inference(net)
    if fuse:
        net = fold_affine(net)
    shapes = infer(net)
    missing = [s.layer for s in shapes
               if s.layer.type not in CONVERTERS and s.layer.type != "Input"]
    problems = []
    lowered: list[Lowered | None] = []
    for s in shapes:
        if s.layer.type == "Input" or s.layer.type not in CONVERTERS:
            lowered.append(None)
            continue
        b = TorchBuilder(s.layer, s)
        try:
            CONVERTERS[s.layer.type](b)
            if b.lowered is None:
                raise Unsupported("its converter wrote no code")
            lowered.append(b.lowered)
        except Unsupported as exc:
            problems.append(f"'{s.layer.name}' ({s.layer.type}: {exc})")
            lowered.append(None)
    if missing or problems:
        raise untranslatable("PyTorch", "prototxt_gen.backends.pytorch.converter", missing, problems)

    attrs = _Names(_MODULE_ATTRS)
    variables = _Names(RESERVED | {"batch_norm_scale"})
    inputs = [(name, variables(name), shape) for name, shape in net_inputs(net)]
    statements = []
    index = {}  # layer index -> statement index
    for i, (s, low) in enumerate(zip(shapes, lowered)):
        layer = s.layer
        if layer.type == "Input":
            continue
        attr = attrs(layer.name) if low.module is not None else None
        index[i] = len(statements)
        statements.append(Statement(layer, low, attr, [variables(b) for b in layer.bottom],
                                    [variables(t) for t in layer.top]))
    outputs = [(b, variables(b)) for b in net_outputs(net)]
    fast = _fast_paths(net, shapes, statements, index)
    merged = any(a.expr.startswith("batch_norm_scale(") for a in fast.values())
    return Plan(net.name, inputs, outputs, statements, fuse, fast,
                (ops.batch_norm_scale,) if merged else (), new_weight_bytes(shapes),
                largest_new_weight(shapes))


# Layers whose output is a new tensor that autograd does not need again: a ReLU may overwrite it.
_FRESH_OUTPUT = {"Convolution", "Deconvolution", "InnerProduct", "BatchNorm", "Scale", "Bias",
                 "Eltwise"}


@dataclass(frozen=True)
class Assign:
    """One line of forward, `targets = expr`, kept as its parts so that nothing parses the
    code back; no targets: the line is left out (another line does its work)."""
    targets: tuple[str, ...]
    expr: str

    def code(self) -> str:
        return f"{', '.join(self.targets)} = {self.expr}" if self.targets else ""


def _fast_paths(net: Net, shapes, statements: list[Statement], index: dict[int, int]):
    """Two rewrites of forward that Caffe's in-place layers allow, both exact:
    a BatchNorm whose only reader is a per-channel Scale runs as one batch_norm call using
    both layers' tensors (the submodules stay as they are); and an in-place ReLU overwrites
    its input when nothing else reads that value and the value is a fresh tensor."""
    readers, reads = value_readers(net)
    pairs = batchnorm_scale_pairs(net, shapes)
    fast: dict[int, Assign] = {}
    for i, layer in enumerate(net.layers):
        if i not in index:
            continue
        st = statements[index[i]]
        j = pairs.get(i)
        if j is not None and st.attr and j in index and statements[index[j]].attr and \
                statements[index[j]].lowered.module.cls is ops.Scale:
            nxt = statements[index[j]]
            fast[index[i]] = Assign((nxt.tops[0],), f"batch_norm_scale({st.bottoms[0]}, "
                                    f"self.{st.attr}, self.{nxt.attr})")
            fast[index[j]] = Assign((), "")  # done by its BatchNorm's line
        elif (layer.type == "ReLU" and layer.in_place and readers.get(reads[i][0]) == [i]
              and reads[i][0][0] >= 0 and net.layers[reads[i][0][0]].type in _FRESH_OUTPUT):
            slope = layer.param.relu_param.negative_slope
            var = st.tops[0]
            fast[index[i]] = Assign((var,), f"F.leaky_relu({var}, {lit(slope)}, inplace=True)"
                                    if slope else f"F.relu({var}, inplace=True)")
    return fast
