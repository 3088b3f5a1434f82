"""Caffe network → PyTorch: a runtime `nn.Module`, a standalone .py file, and back to .caffemodel.

Every layer type has one converter, registered in CONVERTERS with @converter: it returns a
`Lowered` -- the submodule to create (if any, as class + arguments, so the same description
builds the module here and writes its constructor in an exported .py) and the Python
expression that computes the layer's tops from its bottoms. From these the translator writes
one `forward` in Caffe's execution order; a blob written by an in-place layer is simply the
same variable reassigned, so every layer sees exactly the value Caffe would give it. The
runtime module runs that generated code (like torch.fx's GraphModule); `to_source` writes the
same code as a file.

Weights go from the caffemodel's numpy buffers to `torch.from_numpy` without copies (BatchNorm's
statistics are divided by its scale-factor blob, so those are new, small arrays).
"""
from __future__ import annotations

import builtins
import inspect
import keyword
import linecache
import math
import os
import symtable
import textwrap
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..proto import caffe_pb2
from . import torch_ops
from ..errors import NetError, one_line, shown, untranslatable
from ..registry import put
from ..graph.fuse import (batchnorm_eps, batchnorm_scale_pairs, batchnorm_statistics,
                   value_readers)
from ..graph.fuse import fuse as fold_affine
from ..graph.inference import for_inference
from ..graph.net import Layer, Net, net_inputs, net_outputs
from ..limits import check_memory
from ..proto.prototxt import format_float32
from ..graph.shapes import (LayerShapes, affine_layout, concat_axis, conv_geometry,
                     crop_offsets, flatten_axes, infer, largest_new_weight, new_weight_bytes,
                     normalize_params, permute_order, reduction_axes, reshape_span,
                     shuffle_group, slice_axis, spatial, tile_repeats)


class Unsupported(Exception):
    """Raised by a converter for a layer (or a use of it) it cannot translate."""


@dataclass
class Ctor:
    """A submodule: cls(*args, **kwargs), then its tensors (parameters and buffers) replaced
    by the given arrays. An array of None keeps the module's own initial value."""

    cls: type
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    tensors: dict[str, np.ndarray | None] = field(default_factory=dict)

    def source(self) -> str:
        prefix = "nn." if self.cls.__module__.startswith("torch.nn") else ""
        parts = [_lit(a) for a in self.args] + [f"{k}={_lit(v)}" for k, v in self.kwargs.items()]
        return f"{prefix}{self.cls.__name__}({', '.join(parts)})"


# How Caffe blob k is found in the module's state: (tensor name, transform to Caffe layout),
# or a constant array (BatchNorm's scale factor, 1 once the statistics are divided by it).
BlobKey = tuple[str, Callable[[np.ndarray], np.ndarray] | None] | np.ndarray


@dataclass
class Lowered:
    """A layer as code: `expr` uses {m} for its submodule and {0}, {1}... for its bottoms.
    With several tops, `tuple_out` means the expression returns one value per top; otherwise
    every top gets the same value (Split)."""

    expr: str
    module: Ctor | None = None
    blob_keys: list[BlobKey] = field(default_factory=list)
    tuple_out: bool = False
    helpers: tuple[type, ...] = ()


Converter = Callable[[Layer, LayerShapes], Lowered]
CONVERTERS: dict[str, Converter] = {}


def converter(*types: str, replace: bool = False) -> Callable[[Converter], Converter]:
    """Register how layer types translate, as fn(layer, shapes) -> Lowered. For a fork's layer:

        @prototxt_gen.backends.pytorch.converter("MyLayer")
        def my_layer(layer, shapes):
            return Lowered("torch.relu({0}) * 2")

    `shapes` has the layer's bottom, top and weight-blob shapes (register a shape rule with
    prototxt_gen.graph.shapes.rule first); `layer.blobs` its weights; raise Unsupported(reason) for a
    configuration the converter cannot handle. A type that has one already needs replace=True."""
    def register(fn: Converter) -> Converter:
        put(CONVERTERS, types, fn, "a PyTorch converter", replace)
        return fn
    return register


# -- the plan: one statement per layer ------------------------------------------------------------

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
    fast_helpers: tuple[Callable, ...] = ()  # torch_ops functions the fast code calls
    new_weights: int = 0      # bytes of initial weights for layers the net has none for
    largest_new: int = 0      # bytes of the largest of those initial weights

    @property
    def helpers(self) -> list[type]:
        seen: dict[type, None] = {}
        for st in self.statements:
            for h in st.lowered.helpers + ((st.lowered.module.cls,) if st.lowered.module else ()):
                if h.__module__ == torch_ops.__name__:
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
        try:
            lowered.append(CONVERTERS[s.layer.type](s.layer, s))
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
                (torch_ops.batch_norm_scale,) if merged else (), new_weight_bytes(shapes),
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
                statements[index[j]].lowered.module.cls is torch_ops.Scale:
            nxt = statements[index[j]]
            fast[index[i]] = Assign((nxt.tops[0],), f"batch_norm_scale({st.bottoms[0]}, "
                                    f"self.{st.attr}, self.{nxt.attr})")
            fast[index[j]] = Assign((), "")  # done by its BatchNorm's line
        elif (layer.type == "ReLU" and layer.in_place and readers.get(reads[i][0]) == [i]
              and reads[i][0][0] >= 0 and net.layers[reads[i][0][0]].type in _FRESH_OUTPUT):
            slope = layer.param.relu_param.negative_slope
            var = st.tops[0]
            fast[index[i]] = Assign((var,), f"F.leaky_relu({var}, {_lit(slope)}, inplace=True)"
                                    if slope else f"F.relu({var}, inplace=True)")
    return fast


# -- code generation ------------------------------------------------------------------------------

def _statement_code(st: Statement) -> str:
    low = st.lowered
    expr = low.expr.format(*st.bottoms, m=f"self.{st.attr}" if st.attr else "")
    if not st.tops:
        return ""
    if len(st.tops) == 1:
        return f"{st.tops[0]} = {expr}"
    if low.tuple_out:
        return f"{', '.join(st.tops)} = {expr}"
    return " = ".join(st.tops) + f" = {expr}"


def _dead_after(p: Plan, steps: list[tuple[list[str], list[str]]]) -> list[list[str]]:
    """Variables to delete after each step (reads, writes): values nothing reads any more, so
    that activations are freed as in Caffe's memory reuse rather than held to the end."""
    live = {var for _, var in p.outputs}
    dead: list[list[str]] = [[] for _ in steps]
    for i in range(len(steps) - 1, -1, -1):
        bottoms, tops = steps[i]
        for var in tops:
            if var not in live:
                dead[i].append(var)
            live.discard(var)
        for var in dict.fromkeys(bottoms):
            if var not in live and var not in tops:
                dead[i].append(var)
            live.add(var)
    return dead


def forward_source(p: Plan, record: bool = False) -> str:
    """The body of forward (record=False) or of a function that returns every blob's final
    value by name (record=True)."""
    args = ", ".join(["self"] + [var for _, var, _ in p.inputs])
    if record:
        lines = [f"def _forward_blobs({args}, names=None, by_layer=False):",
                 "    blobs, layers = {}, {}"]
        for b, var, _ in p.inputs:
            lines.append(f"    blobs[{b!r}] = {var}")
        for st in p.statements:
            code = _statement_code(st)
            if code:
                lines.append(f"    {code}")
            for name, var in zip(st.layer.top, st.tops):
                lines.append(f"    blobs[{name!r}] = {var}")
            lines.append(f"    layers[{st.layer.name!r}] = ({''.join(v + ', ' for v in st.tops)})")
        lines.append("    if by_layer:")
        lines.append("        return layers")
        lines.append("    return blobs if names is None else {n: blobs[n] for n in names}")
        return "\n".join(lines) + "\n"
    lines = [f"def forward({args}):"]
    codes, steps = [], []
    for k, st in enumerate(p.statements):
        if k in p.fast:  # its writes are the assignment's targets; none: the line is dropped
            fast = p.fast[k]
            code = fast.code()
            steps.append((st.bottoms, list(fast.targets)) if fast.targets else ([], []))
        else:
            code = _statement_code(st)
            steps.append((st.bottoms, st.tops))
        codes.append(code)
    for code, dead in zip(codes, _dead_after(p, steps)):
        if code:
            lines.append(f"    {code}")
        if dead:
            lines.append(f"    del {', '.join(dead)}")
    outs = [var for _, var in p.outputs]
    lines.append(f"    return {outs[0] if len(outs) == 1 else '(' + ', '.join(outs) + ')'}"
                 if outs else "    return None")
    return "\n".join(lines) + "\n"


_NAMESPACE = {"torch": torch, "nn": nn, "F": F, "math": math,
              **{name: obj for name, obj in vars(torch_ops).items()
                 if callable(obj) and getattr(obj, "__module__", "") == torch_ops.__name__}}
_counter = [0]


def _compile(source: str, name: str) -> Callable:
    _counter[0] += 1
    filename = f"<prototxt-gen {name} {_counter[0]}>"
    # Registered with linecache so that tracebacks and torch.compile can show the source.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    scope: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), dict(_NAMESPACE), scope)
    return next(iter(scope.values()))


# -- the runtime module ---------------------------------------------------------------------------

class CaffeNet(nn.Module):
    """A translated Caffe network. `forward` takes the inputs in `input_names` order and returns
    the output (several outputs: a tuple in `output_names` order, which is Caffe's: sorted by
    name). `blobs(*inputs, names=None)` returns any blob's value by its Caffe name, as
    pycaffe's net.blobs[name] gives it after a forward pass (the value after in-place layers).
    `layer_outputs(*inputs)` gives each layer's own outputs. `caffe_names` maps submodule
    names to Caffe layer names."""

    input_names: tuple[str, ...] = ()
    input_shapes: tuple[tuple[int, ...], ...] = ()  # as the net declares them
    output_names: tuple[str, ...] = ()
    caffe_names: dict[str, str] = {}
    fused: bool = False

    def blobs(self, *inputs, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        if names is not None:
            unknown = [n for n in names if n not in self.blob_names]
            if unknown:
                raise KeyError(f"no blob named {', '.join(map(repr, unknown))}")
        return self._forward_blobs(*inputs, names=names)

    def layer_outputs(self, *inputs) -> dict[str, tuple[torch.Tensor, ...]]:
        """Each layer's tops right after it ran, by Caffe layer name: unlike `blobs`, this
        shows a blob's value before the in-place layers that follow overwrite it."""
        return self._forward_blobs(*inputs, by_layer=True)


def to_torch(net: Net, *, fuse: bool = False, class_name: str | None = None) -> CaffeNet:
    """The network as a PyTorch module in eval mode, with the net's weights (`layer.blobs`, as
    load_weights gives them) or, for layers without, PyTorch's default initialization. With
    fuse=True, BatchNorm/Scale/Bias chains are folded into the layer before them."""
    cls_name = _class_for(net, class_name)
    return _module(plan(net, fuse), cls_name)


def _module(p: Plan, cls_name: str) -> CaffeNet:
    check_memory(p.new_weights, "PyTorch's initial weights for the layers without weights")
    attrs = {
        "forward": _compile(forward_source(p), cls_name),
        "_forward_blobs": _compile(forward_source(p, record=True), cls_name),
        "input_names": tuple(b for b, _, _ in p.inputs),
        "input_shapes": tuple(shape for _, _, shape in p.inputs),
        "output_names": tuple(b for b, _ in p.outputs),
        "blob_names": frozenset(b for b, _, _ in p.inputs)
        | {t for st in p.statements for t in st.layer.top},
        "caffe_names": {st.attr: st.layer.name for st in p.statements if st.attr},
        "caffe_blobs": {st.layer.name: (st.attr, st.lowered.blob_keys)
                        for st in p.statements if st.lowered.blob_keys},
        "fused": p.fused,
        "__module__": __name__,
    }
    cls = type(cls_name, (CaffeNet,), attrs)
    model = cls.__new__(cls)
    nn.Module.__init__(model)
    for st in p.statements:
        if st.attr:
            model.add_module(st.attr, build_module(st.lowered.module, st.layer.name))
    return model.eval()


def build_module(ctor: Ctor, layer_name: str = "") -> nn.Module:
    """Create the submodule; with every tensor given, on the meta device first so that no
    memory is allocated or initialized only to be replaced."""
    complete = bool(ctor.tensors) and all(v is not None for v in ctor.tensors.values())
    if complete:
        with torch.device("meta"):
            module = ctor.cls(*ctor.args, **ctor.kwargs)
        if {n for n, _ in _tensors(module)} - set(ctor.tensors):
            complete = False  # a tensor the converter does not set (a fork's module)
    if not complete:
        module = ctor.cls(*ctor.args, **ctor.kwargs)
    for name, arr in ctor.tensors.items():
        owner, _, leaf = name.rpartition(".")
        target = module.get_submodule(owner) if owner else module
        if arr is None:
            continue
        tensor = _tensor(arr)
        old = getattr(target, leaf)
        if old is not None and tuple(old.shape) != tuple(tensor.shape):
            raise NetError(f"layer '{layer_name}': {name} has shape {tuple(tensor.shape)}, the "
                           f"module expects {tuple(old.shape)}")
        if leaf in target._parameters:
            target._parameters[leaf] = nn.Parameter(tensor,
                                                    requires_grad=tensor.is_floating_point())
        else:
            target._buffers[leaf] = tensor
    return module


def _tensors(module: nn.Module):
    return list(module.named_parameters()) + list(module.named_buffers())


def _tensor(arr: np.ndarray) -> torch.Tensor:
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if not arr.flags.writeable or not arr.flags.aligned:
        arr = arr.copy()  # a read-only mmap view: torch tensors must be writable
    return torch.from_numpy(arr)


def _class_for(net: Net, name: str | None) -> str:
    """The generated class's name: `name` if it is a Python identifier, else from the net's."""
    if name is None:
        return _class_name(net.name)
    if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise NetError(f"class name {shown(name)} is not a Python identifier")
    return name


def _class_name(name: str) -> str:
    parts = [p for p in sanitize(name or "CaffeNet").replace("-", "_").split("_") if p]
    ident = "".join(p[:1].upper() + p[1:] for p in parts) or "CaffeNet"
    return ident if not ident[0].isdigit() else "Net" + ident


# -- standalone source ----------------------------------------------------------------------------

def to_source(net: Net, *, fuse: bool = False, class_name: str | None = None,
              weights_file: str | None = None) -> str:
    """A self-contained Python file defining the network as a plain nn.Module (needs torch
    only). Load weights saved with save_python (or any state_dict of the same structure)."""
    cls_name = _class_for(net, class_name)
    return _source(plan(net, fuse), cls_name, weights_file)


def _copied_sources(p: Plan, cls_name: str) -> list[str]:
    """The source of every class the exported file defines besides the net's: the helpers of
    torch_ops, and each class a registered converter brought (a fork layer's own module),
    copied when it needs nothing but torch and builtins -- else a NetError naming it."""
    sources = {h: inspect.getsource(h).rstrip() for h in p.helpers}
    foreign: dict[type, Layer] = {}
    for st in p.statements:
        for h in st.lowered.helpers + ((st.lowered.module.cls,) if st.lowered.module else ()):
            if h not in sources and not h.__module__.startswith("torch."):
                foreign.setdefault(h, st.layer)
    available = set(dir(builtins)) | {"torch", "nn", "F"} | {h.__name__ for h in sources} \
        | {h.__name__ for h in foreign}
    for cls, layer in foreign.items():
        where = f"layer '{layer.name}' ({layer.type}): class {cls.__qualname__} " \
                f"(from {cls.__module__})"
        try:
            source = textwrap.dedent(inspect.getsource(cls)).rstrip()
            missing = sorted(_global_names(source) - available)
        except (OSError, TypeError, SyntaxError):
            raise NetError(f"{where}: its source is not available to copy into the .py; use "
                           "--to pytorch, whose program needs no source") from None
        if missing or cls.__name__ == cls_name:
            why = (f"uses {', '.join(map(repr, missing))}, which the .py would lack" if missing
                   else "has the name of the exported class (give --class-name)")
            raise NetError(f"{where} {why}; use --to pytorch, whose program needs no source, "
                           "or make the class self-contained (torch, nn, F and builtins only)")
        sources[cls] = source
    return list(sources.values())


def _global_names(source: str) -> set[str]:
    """Names the source reads from its module's globals (not the ones it defines itself)."""
    table = symtable.symtable(source, "<class>", "exec")
    defined = {sym.get_name() for sym in table.get_symbols() if sym.is_assigned()
               or sym.is_imported()}
    used, todo = set(), [table]
    while todo:
        t = todo.pop()
        for sym in t.get_symbols():
            if sym.is_referenced() and (sym.is_global() or t is table):
                used.add(sym.get_name())
        todo.extend(t.get_children())
    return used - defined


def _source(p: Plan, cls_name: str, weights_file: str | None) -> str:
    from .. import __version__
    helpers = "".join("\n\n" + h + "\n" for h in _copied_sources(p, cls_name))
    init = [f"        self.{st.attr} = {st.lowered.module.source()}"
            for st in p.statements if st.attr]
    body = forward_source(p).replace("\n", "\n    ").rstrip() + "\n"
    load = _doc(weights_file or f"{cls_name.lower()}.pth")
    names = ", ".join(_doc(b) for b, _, _ in p.inputs)
    shape = ", ".join(map(str, p.inputs[0][2])) if p.inputs else ""
    return f'''"""{cls_name}: {_doc(p.name) or 'a Caffe network'} translated from Caffe by prototxt-gen {__version__}{' (BatchNorm/Scale fused)' if p.fused else ''}.

Needs only PyTorch. Inputs: {names or 'none'}; outputs: {', '.join(_doc(b) for b, _ in p.outputs)}.

    model = {cls_name}()
    model.load_state_dict(torch.load("{load}"))
    model.eval()
    out = model(torch.randn({shape}))
"""
import torch
import torch.nn.functional as F
from torch import nn
{helpers}


class {cls_name}(nn.Module):
    def __init__(self):
        super().__init__()
{chr(10).join(init) if init else "        pass"}

    {body}'''


def _doc(text: str) -> str:
    """A Caffe name as docstring text: it can neither end the docstring nor start an escape
    (backslashes and quotes escaped, line breaks and separators shown as escapes)."""
    return one_line(text, 200).replace("\\", "\\\\").replace('"', '\\"')


def save_python(net: Net, path: str | os.PathLike, *, fuse: bool = False,
                class_name: str | None = None) -> tuple[str, str]:
    """Write PATH (.py source) and its state_dict beside it (PATH with .pth); returns both
    paths. Both are written to temporary files first and renamed when complete."""
    from ..fileio import atomic_paths
    path = os.fspath(path)
    stem = path[:-3] if path.endswith(".py") else path
    weights = stem + ".pth"
    cls_name = _class_for(net, class_name)
    p = plan(net, fuse)
    model = _module(p, cls_name)
    source = _source(p, cls_name, os.path.basename(weights))
    with atomic_paths(path, weights) as (tmp_source, tmp_weights):
        with open(tmp_source, "w", encoding="utf-8") as f:
            f.write(source)
        torch.save(model.state_dict(), tmp_weights)
    return path, weights


def save_exported(net: Net, path: str | os.PathLike, *, fuse: bool = False,
                  class_name: str | None = None) -> None:
    """Write the module as a torch.export program whose batch (dimension 0 of every input) is
    free: loading it needs torch only (`torch.export.load(path).module()`). Where a layer
    ties the batch, the program is exported for the file's shapes, with a warning saying so."""
    from ..fileio import atomic_open
    cls_name = _class_for(net, class_name)
    p = plan(net, fuse)
    # Export keeps the module's weights, and saving copies a tensor at a time (measured: 3x
    # one 400 MB layer; 1.2-1.25x the weights of a ResNet-152 or a Wide ResNet-101, beyond
    # the 340 MB torch.export itself takes). Tops are traced as fake tensors: only the example
    # inputs are real, at a batch of up to 3 where the file says 1 (_export_dynamic).
    grow = max((3 / max(s[0], 1) if len(s) else 1 for _, _, s in p.inputs), default=1)
    check_memory(5 * p.new_weights // 4 + 2 * p.largest_new
                 + 4 * max(grow, 1) * sum(math.prod(s) for _, _, s in p.inputs),
                 "exporting (initial weights and example inputs)")
    model = _module(p, cls_name)
    if not model.input_names:
        raise NetError("the net declares no input")
    program, reason = _export_dynamic(model)
    if program is None:  # a layer ties the batch size (a Reshape naming it, say)
        shapes = ", ".join("x".join(map(str, s)) for s in model.input_shapes)
        warnings.warn(f"{os.fspath(path)}: exported for the file's input shapes only "
                      f"({shapes}): the batch cannot vary ({reason})", stacklevel=2)
        with torch.no_grad():
            program = torch.export.export(
                model, tuple(torch.zeros(s) for s in model.input_shapes))
    with atomic_open(path) as f:
        torch.export.save(program, f)


def _export_dynamic(model: nn.Module):
    """(program, None) with dimension 0 of every input free, or (None, why not). The example
    batch is never 1: torch.export specializes a size of 1 (or of any input dimension equal to
    another) and the program would then refuse every other batch."""
    declared = {s[0] for s in model.input_shapes if len(s)}
    tried = []
    for batch in sorted({max(2, b) for b in declared} | {3}):
        example = tuple(torch.zeros((batch, *s[1:]) if len(s) else s)
                        for s in model.input_shapes)
        dim = torch.export.Dim("batch", min=1)
        dynamic = tuple({0: dim} if len(x.shape) else None for x in example)
        try:
            with torch.no_grad():
                return torch.export.export(model, example, dynamic_shapes=dynamic), None
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds; the reason is kept
            tried.append(one_line(str(exc).strip().splitlines()[0] if str(exc).strip()
                                  else type(exc).__name__, 200))
    return None, tried[0]


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict file (torch.save), read without running pickled code."""
    from ..fileio import open_input
    with open_input(path, "state_dict file") as f:
        head = f.read(4)
        f.seek(0)
        if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save: zip, or a pickle
            raise NetError(f"{path}: not a file saved by torch.save")
        try:
            state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception:
            raise NetError(f"{path}: holds objects other than tensors (only a plain "
                           "state_dict loads safely)") from None
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise NetError(f"{path}: holds a {type(state).__name__}, not a state_dict of tensors")
    return state


# -- back to Caffe --------------------------------------------------------------------------------

def state_to_blobs(net: Net, state: dict[str, torch.Tensor] | nn.Module) -> Net:
    """Give each layer of `net` the blobs held in a module's state_dict (ours, or any with the
    same structure: keys are '<sanitized layer name>.<tensor>'), in Caffe's layouts; returns
    `net` for write_caffemodel."""
    if isinstance(state, nn.Module):
        if getattr(state, "fused", False):
            raise NetError("a fused module no longer matches the prototxt's layers; convert "
                           "without --fuse to write weights back")
        state = state.state_dict()
    p = plan(net)
    shapes = {s.layer.name: s.blobs for s in infer(net)}
    missing = []
    for st in p.statements:
        if not st.lowered.blob_keys:
            continue
        blobs = []
        for k, key in enumerate(st.lowered.blob_keys):
            if isinstance(key, np.ndarray):
                blobs.append(key)
                continue
            name, transform = key
            full = f"{st.attr}.{name}"
            if full not in state:
                missing.append(full)
                continue
            arr = state[full].detach().to("cpu", torch.float32).contiguous().numpy()
            arr = transform(arr) if transform else arr
            want = shapes[st.layer.name][k]
            if arr.size != math.prod(want):
                raise NetError(f"state_dict entry '{full}' has {arr.size} values, layer '{st.layer.name}' "
                               f"blob {k} needs shape {'×'.join(map(str, want))}")
            blobs.append(arr.reshape(want))
        st.layer.blobs = blobs
    if missing:
        raise NetError(f"the state_dict lacks {len(missing)} tensor(s) the net needs: "
                       + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    return net


# -- helpers for converters -----------------------------------------------------------------------

def _lit(v: Any) -> str:
    if isinstance(v, float):
        return format_float32(v) if np.isfinite(v) else f"float('{v}')"
    if isinstance(v, tuple):
        return "(" + ", ".join(map(_lit, v)) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(map(_lit, v)) + "]"
    return repr(v)


def _one(values: Sequence[int]):
    """A per-axis tuple, or one int when all axes agree (nn's own convention)."""
    values = tuple(int(v) for v in values)
    return values[0] if len(set(values)) == 1 else values


def _f32(layer: Layer, k: int, fn: Callable[[np.ndarray], np.ndarray] | None = None):
    """Blob k (None when the layer has no weights), optionally transformed."""
    if k >= len(layer.blobs):
        return None
    arr = np.asarray(layer.blobs[k])
    return fn(arr) if fn else arr


def _single(layer: Layer, s: LayerShapes) -> None:
    if len(layer.bottom) != 1 or len(layer.top) != 1:
        raise Unsupported(f"expects 1 bottom and 1 top, has {len(layer.bottom)} and "
                          f"{len(layer.top)}")


def _each_bottom(expr: str, layer: Layer) -> tuple[str, bool]:
    """A layer applied to each of several bottoms (Caffe shares the weights): a tuple."""
    if len(layer.bottom) == 1:
        return expr % 0, False
    return "(" + ", ".join(expr % k for k in range(len(layer.bottom))) + ")", True


# -- converters -----------------------------------------------------------------------------------

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_DECONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _conv_like(layer: Layer, s: LayerShapes, table: dict[int, type]) -> Lowered:
    cp = layer.param.convolution_param
    axis, kernel, pad, stride, dilation, channels, group = conv_geometry(cp, s.bottoms[0])
    if axis != 1 or len(kernel) not in table:
        raise Unsupported(f"{len(kernel)}-D convolution on axis {axis} (torch has 1-3-D, axis 1)")
    kwargs: dict[str, Any] = {"kernel_size": _one(kernel)}
    if any(v != 1 for v in stride):
        kwargs["stride"] = _one(stride)
    if any(pad):
        kwargs["padding"] = _one(pad)
    if any(v != 1 for v in dilation):
        kwargs["dilation"] = _one(dilation)
    if group != 1:
        kwargs["groups"] = group
    if not cp.bias_term:
        kwargs["bias"] = False
    tensors = {"weight": _f32(layer, 0)}
    keys: list[BlobKey] = [("weight", None)]
    if cp.bias_term:
        tensors["bias"] = _f32(layer, 1)
        keys.append(("bias", None))
    expr, many = _each_bottom("{m}({%d})", layer)
    return Lowered(expr, Ctor(table[len(kernel)], (channels, cp.num_output), kwargs, tensors),
                   keys, tuple_out=many)


@converter("Convolution")
def _convolution(layer, s):
    return _conv_like(layer, s, _CONV)


@converter("Deconvolution")
def _deconvolution(layer, s):
    return _conv_like(layer, s, _DECONV)


@converter("Pooling")
def _pooling(layer, s):
    _single(layer, s)
    pp = layer.param.pooling_param
    P = caffe_pb2.PoolingParameter
    mode = {P.MAX: "max", P.AVE: "ave", P.STOCHASTIC: "stochastic"}[pp.pool]
    if pp.global_pooling and mode != "stochastic":
        cls = nn.AdaptiveMaxPool2d if mode == "max" else nn.AdaptiveAvgPool2d
        return Lowered("{m}({0})", Ctor(cls, (1,)))
    if pp.global_pooling:
        return Lowered("{m}({0})", Ctor(torch_ops.CaffePool2d, (mode, (1, 1)),
                                        {"global_pool": True}))
    kernel = spatial(pp, 2, "kernel_size", "kernel_h", "kernel_w", None)
    pad = spatial(pp, 2, "pad", "pad_h", "pad_w", 0)
    stride = spatial(pp, 2, "stride", "stride_h", "stride_w", 1)
    ceil = pp.round_mode == P.CEIL
    # torch's pooling equals Caffe's for every input size when the padding is at most half
    # the kernel and, without padding, the stride does not exceed the kernel (torch clips an
    # empty last window that Caffe keeps); see docs/caffe.md §4.
    native = mode != "stochastic" and all(
        2 * p <= k and (p > 0 or k >= st or not ceil) for k, p, st in zip(kernel, pad, stride))
    if native:
        kwargs: dict[str, Any] = {}
        if kernel != stride:
            kwargs["stride"] = _one(stride)
        if any(pad):
            kwargs["padding"] = _one(pad)
        if ceil:
            kwargs["ceil_mode"] = True
        cls = nn.MaxPool2d if mode == "max" else nn.AvgPool2d
        return Lowered("{m}({0})", Ctor(cls, (_one(kernel),), kwargs))
    return Lowered("{m}({0})", Ctor(torch_ops.CaffePool2d, (mode, tuple(kernel)),
                                    {"stride": tuple(stride), "pad": tuple(pad),
                                     "ceil_mode": ceil}))


@converter("InnerProduct")
def _inner_product(layer, s):
    ip = layer.param.inner_product_param
    bottom = s.bottoms[0]
    axis = ip.axis % len(bottom)
    k = math.prod(bottom[axis:])
    tensors = {"weight": _f32(layer, 0, (lambda w: np.ascontiguousarray(w.T))
                              if ip.transpose else None)}
    keys: list[BlobKey] = [("weight", (lambda w: np.ascontiguousarray(w.T))
                            if ip.transpose else None)]
    if ip.bias_term:
        tensors["bias"] = _f32(layer, 1)
        keys.append(("bias", None))
    kwargs = {} if ip.bias_term else {"bias": False}
    arg = "{%d}" if len(bottom) == axis + 1 else f"torch.flatten({{%d}}, {axis})"
    expr, many = _each_bottom("{m}(" + arg + ")", layer)
    return Lowered(expr, Ctor(nn.Linear, (k, ip.num_output), kwargs, tensors), keys,
                   tuple_out=many)


_BATCHNORM = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


@converter("BatchNorm")
def _batch_norm(layer, s):
    _single(layer, s)
    bp = layer.param.batch_norm_param
    bottom = s.bottoms[0]
    eps = batchnorm_eps(layer)
    if bp.HasField("use_global_stats") and not bp.use_global_stats:
        # Caffe normalizes with the batch's own statistics then, in any phase.
        return Lowered(f"F.batch_norm({{0}}, None, None, training=True, eps={_lit(eps)})")
    if len(bottom) not in _BATCHNORM:
        raise Unsupported(f"a {len(bottom)}-D input (torch's BatchNorm takes 2-5-D)")
    stats = batchnorm_statistics(layer)
    mean, var = (None, None) if stats is None else (x.astype(np.float32) for x in stats)
    tensors = {"running_mean": mean, "running_var": var,
               "num_batches_tracked": None if stats is None else np.zeros((), np.int64)}
    keys: list[BlobKey] = [("running_mean", None), ("running_var", None),
                           np.ones(1, np.float32)]
    kwargs: dict[str, Any] = {"affine": False}
    if eps != 1e-5:
        kwargs = {"eps": eps, **kwargs}
    return Lowered("{m}({0})", Ctor(_BATCHNORM[len(bottom)], (bottom[1],), kwargs, tensors),
                   keys)


@converter("Scale")
def _scale(layer, s):
    sp = layer.param.scale_param
    shape, trailing = affine_layout(sp, s.bottoms)
    two = len(s.bottoms) == 2
    if layer.fused_from and len(s.bottoms[0]) == 4 and trailing == 2 and len(shape) == 1:
        # A BatchNorm + Scale chain with no convolution before it, folded (fuse.py) into
        # y = a * x + b: one BatchNorm2d whose statistics are the identity.
        c = shape[0]
        tensors = {"weight": _f32(layer, 0), "bias": _f32(layer, 1),
                   "running_mean": np.zeros(c, np.float32),
                   "running_var": np.ones(c, np.float32),
                   "num_batches_tracked": np.zeros((), np.int64)}
        return Lowered("{m}({0})", Ctor(nn.BatchNorm2d, (c,), {"eps": 0.0}, tensors))
    tensors, keys = {}, []
    if not two:
        tensors["weight"] = _f32(layer, 0)
        keys.append(("weight", None))
    if sp.bias_term:
        tensors["bias"] = _f32(layer, 0 if two else 1)
        keys.append(("bias", None))
    kwargs = {} if not two else {"learned": False}
    if not sp.bias_term:
        kwargs["bias"] = False
    return Lowered("{m}({0}, {1})" if two else "{m}({0})",
                   Ctor(torch_ops.Scale, (shape, trailing), kwargs, tensors), keys)


@converter("Bias")
def _bias(layer, s):
    bp = layer.param.bias_param
    shape, trailing = affine_layout(bp, s.bottoms)
    if len(s.bottoms) == 2:
        return Lowered("{m}({0}, {1})", Ctor(torch_ops.Bias, (shape, trailing),
                                             {"learned": False}))
    return Lowered("{m}({0})", Ctor(torch_ops.Bias, (shape, trailing), {},
                                    {"bias": _f32(layer, 0)}), [("bias", None)])


@converter("ReLU")
def _relu(layer, s):
    slope = layer.param.relu_param.negative_slope
    if slope:
        return Lowered(f"F.leaky_relu({{0}}, {_lit(slope)})")
    return Lowered("F.relu({0})")


@converter("PReLU")
def _prelu(layer, s):
    n = s.blobs[0][0]
    return Lowered("{m}({0})", Ctor(nn.PReLU, (n,) if n != 1 else (),
                                    tensors={"weight": _f32(layer, 0)}), [("weight", None)])


def _simple(expr: Callable[[Layer], str]):
    def convert(layer, s):
        _single(layer, s)
        return Lowered(expr(layer))
    return convert


CONVERTERS.update({
    "Sigmoid": _simple(lambda layer: "torch.sigmoid({0})"),
    "TanH": _simple(lambda layer: "torch.tanh({0})"),
    "AbsVal": _simple(lambda layer: "torch.abs({0})"),
    "BNLL": _simple(lambda layer: "F.softplus({0})"),
    "ReLU6": _simple(lambda layer: "F.relu6({0})"),
    "HardSwish": _simple(lambda layer: "F.hardswish({0})"),  # x * ReLU6(x + 3) / 6
    "Mish": _simple(lambda layer: "F.mish({0})"),            # x * tanh(softplus(x))
    "ELU": _simple(lambda layer: f"F.elu({{0}}, {_lit(layer.param.elu_param.alpha)})"),
    "Threshold": _simple(lambda layer: f"({{0}} > {_lit(layer.param.threshold_param.threshold)})"
                         ".to({0}.dtype)"),
    "Clip": _simple(lambda layer: f"torch.clamp({{0}}, {_lit(layer.param.clip_param.min)}, "
                    f"{_lit(layer.param.clip_param.max)})"),
    "Swish": _simple(lambda layer: f"{{0}} * torch.sigmoid({_lit(layer.param.swish_param.beta)}"
                     " * {0})" if layer.param.swish_param.beta != 1 else "F.silu({0})"),
    "Dropout": _simple(lambda layer: f"F.dropout({{0}}, "
                       f"{_lit(layer.param.dropout_param.dropout_ratio)}, self.training)"),
})


def _linear_expr(scale: float, shift: float, x: str = "{0}") -> str:
    """shift + scale * x, written without the parts that do nothing."""
    term = x if scale == 1 else f"{_lit(scale)} * {x}"
    return term if shift == 0 else f"({_lit(shift)} + {term})"


@converter("Power")
def _power(layer, s):
    _single(layer, s)
    pp = layer.param.power_param
    base = _linear_expr(pp.scale, pp.shift)
    return Lowered(base if pp.power == 1 else f"torch.pow({base}, {_lit(pp.power)})")


@converter("Exp")
def _exp(layer, s):
    _single(layer, s)
    ep = layer.param.exp_param
    ln_base = 1.0 if ep.base == -1 else math.log(ep.base)
    return Lowered(f"torch.exp({_linear_expr(ep.scale * ln_base, ep.shift * ln_base)})")


@converter("Log")
def _log(layer, s):
    _single(layer, s)
    lp = layer.param.log_param
    expr = f"torch.log({_linear_expr(lp.scale, lp.shift)})"
    return Lowered(expr if lp.base == -1 else f"{expr} / {_lit(math.log(lp.base))}")


@converter("Softmax")
def _softmax(layer, s):
    _single(layer, s)
    axis = layer.param.softmax_param.axis % len(s.bottoms[0])
    return Lowered(f"torch.softmax({{0}}, {axis})")


@converter("Eltwise")
def _eltwise(layer, s):
    ep = layer.param.eltwise_param
    E = caffe_pb2.EltwiseParameter
    n = len(layer.bottom)
    if ep.operation == E.PROD:
        return Lowered(" * ".join(f"{{{k}}}" for k in range(n)))
    if ep.operation == E.MAX:
        expr = "{0}"
        for k in range(1, n):
            expr = f"torch.maximum({expr}, {{{k}}})"
        return Lowered(expr)
    coeffs = list(ep.coeff) or [1.0] * n
    expr = ""
    for k, c in enumerate(coeffs):  # Caffe adds coeff_k * bottom_k in order
        if k:
            expr += " - " if c < 0 else " + "
        elif c < 0:
            expr += "-"
        expr += f"{{{k}}}" if abs(c) == 1 else f"{_lit(abs(c))} * {{{k}}}"
    return Lowered(expr)


@converter("Concat")
def _concat(layer, s):
    axis = concat_axis(layer.param.concat_param) % len(s.bottoms[0])
    if len(layer.bottom) == 1:
        return Lowered("{0}")
    parts = ", ".join(f"{{{k}}}" for k in range(len(layer.bottom)))
    return Lowered(f"torch.cat(({parts}), {axis})")


@converter("Slice")
def _slice(layer, s):
    sp = layer.param.slice_param
    axis = slice_axis(sp) % len(s.bottoms[0])
    if len(layer.top) == 1:
        return Lowered("{0}")
    if sp.slice_point:
        return Lowered(f"torch.tensor_split({{0}}, {_lit(list(sp.slice_point))}, {axis})",
                       tuple_out=True)
    return Lowered(f"torch.chunk({{0}}, {len(layer.top)}, {axis})", tuple_out=True)


@converter("Split")
def _split(layer, s):
    return Lowered("{0}")


@converter("Flatten")
def _flatten(layer, s):
    _single(layer, s)
    n = len(s.bottoms[0])
    start, end = flatten_axes(layer.param.flatten_param, n)
    return Lowered(f"torch.flatten({{0}}, {start}" + (f", {end})" if end != n - 1 else ")"))


@converter("Reshape")
def _reshape(layer, s):
    _single(layer, s)
    rp = layer.param.reshape_param
    n = len(s.bottoms[0])
    start, end = reshape_span(rp, n)
    dims = [f"{{0}}.shape[{k}]" for k in range(start)]
    dims += [f"{{0}}.shape[{start + k}]" if d == 0 else str(d)
             for k, d in enumerate(rp.shape.dim)]
    dims += [f"{{0}}.shape[{k}]" for k in range(end, n)]
    return Lowered(f"{{0}}.reshape({', '.join(dims)})" if dims else "{0}.reshape(())")


@converter("Crop")
def _crop(layer, s):
    cp = layer.param.crop_param
    axis, offsets = crop_offsets(cp, len(s.bottoms[0]))
    index = [":"] * axis + [f"{o}:{o} + {{1}}.shape[{axis + k}]" if o else
                            f":{{1}}.shape[{axis + k}]" for k, o in enumerate(offsets)]
    return Lowered(f"{{0}}[{', '.join(index)}]")


@converter("LRN")
def _lrn(layer, s):
    _single(layer, s)
    lp = layer.param.lrn_param
    if lp.norm_region == caffe_pb2.LRNParameter.WITHIN_CHANNEL:
        return Lowered("{m}({0})", Ctor(torch_ops.LRNWithinChannel,
                                        (lp.local_size, lp.alpha, lp.beta)))
    return Lowered("{m}({0})", Ctor(nn.LocalResponseNorm, (lp.local_size,),
                                    {"alpha": lp.alpha, "beta": lp.beta, "k": lp.k}))


@converter("MVN")
def _mvn(layer, s):
    _single(layer, s)
    mp = layer.param.mvn_param
    return Lowered("{m}({0})", Ctor(torch_ops.MVN, (), {
        "normalize_variance": mp.normalize_variance, "across_channels": mp.across_channels,
        "eps": mp.eps}))


@converter("Axpy")
def _axpy(layer, s):
    # SENet's fork layer: top = a * x + y, a being N×C×1×1.
    return Lowered("{0} * {1} + {2}")


@converter("Permute")
def _permute(layer, s):
    _single(layer, s)
    order = permute_order(layer, len(s.bottoms[0]))
    return Lowered(f"{{0}}.permute({', '.join(map(str, order))})")


@converter("Normalize")
def _normalize(layer, s):
    _single(layer, s)
    c = s.bottoms[0][1]
    across, shared, eps = normalize_params(layer)
    return Lowered("{m}({0})", Ctor(torch_ops.Normalize, (c,), {
        "across_spatial": across, "channel_shared": shared, "eps": eps},
        {"weight": _f32(layer, 0)}), [("weight", None)])


@converter("ArgMax")
def _argmax(layer, s):
    _single(layer, s)
    ap = layer.param.argmax_param
    axis = ap.axis % len(s.bottoms[0]) if ap.HasField("axis") else None
    return Lowered("{m}({0})", Ctor(torch_ops.ArgMax, (), {
        "top_k": ap.top_k, "out_max_val": ap.out_max_val, "axis": axis}))


@converter("Reduction")
def _reduction(layer, s):
    _single(layer, s)
    rp = layer.param.reduction_param
    R = caffe_pb2.ReductionParameter
    dims = tuple(reduction_axes(rp, len(s.bottoms[0])))
    x = {R.SUM: "{0}", R.ASUM: "torch.abs({0})", R.SUMSQ: "{0} * {0}",
         R.MEAN: "{0}"}[rp.operation]
    fn = "mean" if rp.operation == R.MEAN else "sum"
    expr = f"torch.{fn}({x}, {_lit(dims)})" if dims else x
    return Lowered(expr if rp.coeff == 1 else f"{_lit(rp.coeff)} * {expr}")


@converter("Tile")
def _tile(layer, s):
    _single(layer, s)
    reps = tile_repeats(layer.param.tile_param, len(s.bottoms[0]))
    return Lowered(f"{{0}}.repeat({', '.join(map(str, reps))})")


@converter("ShuffleChannel")
def _shuffle_channel(layer, s):
    _single(layer, s)
    group = shuffle_group(layer)
    return Lowered(f"F.channel_shuffle({{0}}, {group})")


@converter("Silence")
def _silence(layer, s):
    return Lowered("None")


@converter("Parameter")
def _parameter(layer, s):
    return Lowered("{m}.weight", Ctor(torch_ops.Blob, (tuple(s.blobs[0]),),
                                      tensors={"weight": _f32(layer, 0)}), [("weight", None)])
