"""The runtime module: a CaffeNet subclass whose forward is the generated code, compiled
(like torch.fx's GraphModule), with submodules built from the plan's Ctors and the net's
weights passed in without copies."""
from __future__ import annotations

import linecache
import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import NetError
from ...graph.net import Net
from ...limits import check_memory
from . import ops
from .builder import Ctor
from .codegen import _class_for, forward_source
from .plan import Plan, plan


_NAMESPACE = {"torch": torch, "nn": nn, "F": F, "math": math,
              **{name: obj for name, obj in vars(ops).items()
                 if callable(obj) and getattr(obj, "__module__", "") == ops.__name__}}


_counter = [0]


def _compile(source: str, name: str) -> Callable:
    _counter[0] += 1
    filename = f"<prototxt-gen {name} {_counter[0]}>"
    # Registered with linecache so that tracebacks and torch.compile can show the source.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    scope: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), dict(_NAMESPACE), scope)
    return next(iter(scope.values()))


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

    def timed_forward(self, *inputs, clock: Callable[[str], None]):
        """forward, calling `clock(layer name)` as each layer finishes (in Caffe's order)."""
        cls = type(self)
        if "_forward_timed" not in vars(cls):  # made on first use: only bench times layers
            cls._forward_timed = cls._make_timed_forward()
        return self._forward_timed(*inputs, clock=clock)

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
        "_make_timed_forward": staticmethod(
            lambda: _compile(forward_source(p, timed=True), cls_name)),
        "caffe_types": {st.layer.name: st.layer.type for st in p.statements},
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
