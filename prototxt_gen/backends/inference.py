"""The inference view of a training net, which is what the translators run: each layer that hands
the net data (Data, ImageData, HDF5Data, MemoryData, DummyData, Python...) becomes net inputs of
the shapes its parameters or --input-shape give, and the layers that only training uses (losses,
Accuracy) are left out, with the inputs only they read (the labels).
"""
from __future__ import annotations

import warnings

from ..graph.net import Net
from ..graph.shapes import DATA_SOURCES, DATASET_LAYERS, LOSS_LAYERS, format_shape, infer
from ..layers.data import dataset_shapes

TRAINING_ONLY = LOSS_LAYERS + ("Accuracy",)


def for_inference(net: Net) -> Net:
    """`net` itself when it has neither data layers nor training-only layers; else a copy as
    the module doc says, with one warning saying what became of them."""
    data = {i for i, layer in enumerate(net.layers)
            if not layer.bottom and layer.type in DATA_SOURCES}
    # Training-only layers whose tops no kept layer reads, found from the end.
    dropped: set[int] = set()
    needed: set[str] = set()
    for i in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[i]
        if layer.type in TRAINING_ONLY and not needed.intersection(layer.top):
            dropped.add(i)
        else:
            needed.update(layer.bottom)
    if not data and not dropped:
        return net
    shapes = infer(net)  # says which data shape the file lacks
    out = net.copy(layers=[])
    made, unread = [], []
    for i in sorted(data):
        layer = net.layers[i]
        first = len(made)
        for top, shape in zip(layer.top, shapes[i].tops):
            if top in needed:
                out.add_input(top, shape)
                made.append(f"'{top}' {format_shape(shape)}")
            else:
                unread.append(f"'{top}'")
        if layer.type in DATASET_LAYERS and layer.top[0] not in net.top_shapes:
            assumed = dataset_shapes(layer)[1]
            if assumed and layer.top[0] in needed:
                made[first] += f" (assuming {' and '.join(assumed)})"
    out.layers = [layer for i, layer in enumerate(net.layers) if i not in data | dropped]
    what = []
    if data:
        names = ", ".join(f"'{net.layers[i].name}' ({net.layers[i].type})" for i in sorted(data))
        what.append(f"the data layer(s) {names} became the input(s) {', '.join(made) or 'none'}")
    if dropped:
        what.append("left out the training layer(s) " + ", ".join(
            f"'{net.layers[i].name}' ({net.layers[i].type})" for i in sorted(dropped))
            + (f" and the data only they read ({', '.join(unread)})" if unread else ""))
    elif unread:
        what.append(f"left out the data no layer reads ({', '.join(unread)})")
    warnings.warn(f"translated for inference: {'; '.join(what)}", stacklevel=3)
    return out
