"""What each Caffe layer type declares, and the rule every registry follows.

A layer type is declared in one module of `prototxt_gen.layers` (one per family): its shape
rule, its PyTorch and ONNX lowerings, its drawing family and node label, its MAC count and its
placeholder weights, each registered here with a decorator. The graph, the back ends and the pictures read these tables;
`tests/test_architecture.py` checks that every translatable type has every piece.

A second registration for the same name is an error unless it asks to replace the first, so
that a fork's plugin cannot silently change what a built-in layer means.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

# layer type -> fn(layer, bottom_shapes) -> (top_shapes, weight_blob_shapes)
RULES: dict[str, Callable] = {}
# layer type -> fn(b) that lowers the layer through a back end's builder (see backends/)
TORCH: dict[str, Callable] = {}
ONNX: dict[str, Callable] = {}
# layer type -> drawing family (a key of view.render.PALETTE)
FAMILIES: dict[str, str] = {}
# layer type -> fn(layer_shapes) -> multiply-accumulates of one forward pass (none: 0)
MACS: dict[str, Callable] = {}
# layer type -> fn(layer, layer_shapes) -> the lines a picture shows in its node (none: [])
LABELS: dict[str, Callable] = {}
# layer type -> fn(layer, k, shape) -> the value (a number, or an array of that shape) that
# fills weight blob k of a layer without weights so that the layer is harmless, or as its
# deterministic filler makes it (graph/placeholders.py); a type without one gets zeros
PLACEHOLDERS: dict[str, Callable] = {}


def put(table: dict[str, Any], names: Iterable[str], value: Any, what: str,
        replace: bool = False) -> None:
    names = list(names)
    taken = [n for n in names if n in table] if not replace else []
    if taken:
        raise ValueError(f"{what} for {', '.join(map(repr, taken))} is already registered "
                         "(pass replace=True to replace it)")
    for n in names:
        table[n] = value


def _decorator(table: dict[str, Callable], what: str):
    def declare(*types: str, replace: bool = False) -> Callable[[Callable], Callable]:
        def register(fn: Callable) -> Callable:
            put(table, types, fn, what, replace)
            return fn
        return register
    declare.__doc__ = f"Register {what} for layer types (replace=True to replace one)."
    return declare


rule = _decorator(RULES, "a shape rule")
torch_lowering = _decorator(TORCH, "a PyTorch converter")
onnx_lowering = _decorator(ONNX, "an ONNX converter")
placeholder = _decorator(PLACEHOLDERS, "a placeholder")
macs = _decorator(MACS, "a MAC count")
label = _decorator(LABELS, "a node label")


def draw(family: str, *types: str, replace: bool = False) -> None:
    """Draw layer types in a family's colour."""
    put(FAMILIES, types, family, "a drawing family", replace)
