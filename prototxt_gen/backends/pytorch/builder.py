"""The PyTorch back end's side of the lowering protocol: the builder a lowering gets, and what
it produces -- a `Lowered` (the Python expression for the layer's tops, and the submodule it
calls as a `Ctor`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from torch import nn

from ...graph.net import Layer
from ...graph.shapes import LayerShapes
from ...layers.common import lit
from ...registry import TORCH, torch_lowering
from . import ops


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
        parts = [lit(a) for a in self.args] + [f"{k}={lit(v)}" for k, v in self.kwargs.items()]
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


class TorchBuilder:
    """What a PyTorch lowering works with: `layer`, its shapes `s` (bottoms, tops, weight
    blobs), `x` (its bottoms, as the placeholders {0}, {1}... of the expression it writes) and
    `np`; it calls `emit` once with the expression that computes its tops, the submodule that
    expression calls as {m} (made with `ctor`) and where Caffe's blobs are in its state."""

    np = np

    def __init__(self, layer: Layer, s: LayerShapes):
        self.layer, self.s = layer, s
        self.x = [f"{{{k}}}" for k in range(len(layer.bottom))]
        self.lowered: Lowered | None = None

    @property
    def name(self) -> str:
        return self.layer.name

    def ctor(self, cls: str | type, args: tuple = (), kwargs: dict | None = None,
             tensors: dict[str, np.ndarray | None] | None = None) -> Ctor:
        """A submodule to create: `cls` is a class, "nn.Name" (torch.nn's) or "Name" (one of
        the Caffe-specific modules in backends/pytorch/ops.py)."""
        if isinstance(cls, str):
            owner = nn if cls.startswith("nn.") else ops
            cls = getattr(owner, cls.removeprefix("nn."))
        return Ctor(cls, tuple(args), dict(kwargs or {}), dict(tensors or {}))

    def emit(self, expr: str, module: Ctor | None = None, blob_keys: Sequence[BlobKey] = (),
             tuple_out: bool = False, helpers: tuple[type, ...] = ()) -> None:
        self.lowered = Lowered(expr, module, list(blob_keys), tuple_out, helpers)

    def blob(self, k: int, fn: Callable[[np.ndarray], np.ndarray] | None = None):
        """Weight blob k (None when the layer has no weights: the module keeps its own
        initial value), optionally transformed."""
        if k >= len(self.layer.blobs):
            return None
        arr = np.asarray(self.layer.blobs[k])
        return fn(arr) if fn else arr


Converter = Callable[[TorchBuilder], None]
CONVERTERS = TORCH  # layer type -> lowering; the layer families fill it (prototxt_gen/layers)


def converter(*types: str, replace: bool = False) -> Callable[[Converter], Converter]:
    """Register how layer types translate, as fn(b: TorchBuilder) -> None. For a fork's layer:

        @prototxt_gen.backends.pytorch.converter("MyLayer")
        def my_layer(b):
            b.emit("torch.relu({0}) * 2")

    `b.s` has the layer's bottom, top and weight-blob shapes (register a shape rule with
    prototxt_gen.graph.shapes.rule first); `b.blob(k)` its weights; raise Unsupported(reason)
    for a configuration the converter cannot handle. A type that has one already needs
    replace=True."""
    return torch_lowering(*types, replace=replace)
