"""Fold BatchNorm, Scale and Bias layers into the convolution before them, for inference.

A chain of per-channel affine layers (BatchNorm with its scale-factor blob, Scale, Bias) that
reads a Convolution's, Deconvolution's or InnerProduct's output -- and nothing else reads the
values in between -- becomes part of that layer's weights and bias. A chain with no such layer
before it (a pre-activation BatchNorm + Scale) becomes one Scale layer with bias, whose
`fused_from` names the layers it replaces. Works on weights in numpy (float64 arithmetic),
independent of any back end.
"""
from __future__ import annotations

import numpy as np

from ..graph.net import Layer, Net
from ..graph.shapes import infer
from ..layers.normalization import batchnorm_statistics
from ..proto import caffe_pb2

FOLD_INTO = ("Convolution", "Deconvolution", "InnerProduct")


def fuse(net: Net) -> Net:
    """A copy of `net` with affine chains folded (see the module doc); `net` is unchanged."""
    shapes = infer(net)
    readers, _ = value_readers(net)
    out = net.copy(layers=[])
    taken: set[int] = set()
    for i, layer in enumerate(net.layers):
        if i in taken:
            continue
        chain = _chain(net, i, readers, shapes)
        if chain and not name_free(net, i, chain):
            chain = []
        if not chain:
            out.layers.append(layer)
            continue
        a, b = _compose([net.layers[j] for j in chain], shapes[chain[0]].bottoms[0])
        last = net.layers[chain[-1]]
        if layer.type in FOLD_INTO and layer.blobs:
            out.layers.append(_fold(layer, a, b, last.top[0]))
            taken.update(chain)
        elif layer.type not in FOLD_INTO and len(chain) > 1:
            out.layers.append(_merged([net.layers[j] for j in chain], a, b))
            taken.update(chain)
        else:
            out.layers.append(layer)
    return out


Value = tuple[int, int]  # (producing layer, top index); -1 for the net's inputs


def value_readers(net: Net) -> tuple[dict[Value, list[int]], list[list[Value]]]:
    """For each value, the layers that read it; and for each layer, the values its bottoms
    read. A blob name written again by an in-place layer is a new value."""
    current: dict[str, Value] = {b.name: (-1, k) for k, b in enumerate(net.inputs)}
    readers: dict[Value, list[int]] = {}
    reads: list[list[Value]] = []
    for i, layer in enumerate(net.layers):
        reads.append([current[name] for name in layer.bottom])
        for value in reads[-1]:
            readers.setdefault(value, []).append(i)
        for k, name in enumerate(layer.top):
            current[name] = (i, k)
    return readers, reads


def affine_ok(layer: Layer, bottom: tuple[int, ...], need_blobs: bool = True) -> bool:
    """Per-channel (axis 1) affine with its own learned blobs, one bottom, one top."""
    if len(layer.bottom) != 1 or len(layer.top) != 1 or len(bottom) < 2 or (
            need_blobs and not layer.blobs):
        return False
    p = layer.param
    if layer.type == "BatchNorm":
        return not p.batch_norm_param.HasField("use_global_stats") or \
            p.batch_norm_param.use_global_stats
    if layer.type in ("Scale", "Bias"):
        sub = p.scale_param if layer.type == "Scale" else p.bias_param
        return sub.axis in (1, 1 - len(bottom)) and sub.num_axes == 1
    return False


def batchnorm_scale_pairs(net: Net, shapes=None) -> dict[int, int]:
    """BatchNorm layer index -> index of the per-channel Scale that is the only reader of its
    output: pairs a back end may run as one normalization with Scale's factor and bias (the
    same arithmetic as the two layers; BatchNorm's own output then never exists)."""
    shapes = infer(net) if shapes is None else shapes
    readers, _ = value_readers(net)
    pairs = {}
    for i, layer in enumerate(net.layers):
        if layer.type != "BatchNorm" or len(layer.top) != 1 or not shapes[i].bottoms or \
                not affine_ok(layer, shapes[i].bottoms[0], need_blobs=False):
            continue
        nxt = readers.get((i, 0), [])
        if len(nxt) == 1 and net.layers[nxt[0]].type == "Scale" and affine_ok(
                net.layers[nxt[0]], shapes[nxt[0]].bottoms[0], need_blobs=False) and \
                name_free(net, i, nxt):
            pairs[i] = nxt[0]
    return pairs


def _chain(net: Net, i: int, readers, shapes) -> list[int]:
    """The affine layers that follow layer i's single output, each the only reader of the
    value before it. For a layer that is itself affine, the chain starts with it."""
    layer = net.layers[i]
    chain: list[int] = []
    if layer.type in FOLD_INTO:
        if len(layer.top) != 1:
            return []
        value = (i, 0)
    elif affine_ok(layer, shapes[i].bottoms[0] if shapes[i].bottoms else ()):
        chain, value = [i], (i, 0)
    else:
        return []
    while True:
        nxt = readers.get(value, [])
        if len(nxt) != 1 or not affine_ok(net.layers[nxt[0]], shapes[nxt[0]].bottoms[0]):
            return chain
        chain.append(nxt[0])
        value = (nxt[0], 0)


def name_free(net: Net, i: int, chain: list[int]) -> bool:
    """Moving the chain's output name up to layer i must not change what layers in between
    see under that name."""
    name = net.layers[chain[-1]].top[0]
    return not any(name in net.layers[j].top or name in net.layers[j].bottom
                   for j in range(i + 1, chain[-1]) if j not in chain)


def _compose(layers: list[Layer], bottom: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The chain as y = a * x + b per channel, in float64."""
    c = bottom[1]
    a, b = np.ones(c), np.zeros(c)
    for layer in layers:
        blobs = [np.asarray(x, np.float64).reshape(-1) for x in layer.blobs]
        if layer.type == "BatchNorm":
            mean, var = batchnorm_statistics(layer)
            inv = 1.0 / np.sqrt(var + layer.param.batch_norm_param.eps)
            la, lb = inv, -mean * inv
        elif layer.type == "Scale":
            la = blobs[0]
            lb = blobs[1] if layer.param.scale_param.bias_term else np.zeros(c)
        else:
            la, lb = np.ones(c), blobs[0]
        a, b = a * la, b * la + lb
    return a, b


def _fold(layer: Layer, a: np.ndarray, b: np.ndarray, top: str) -> Layer:
    param = caffe_pb2.LayerParameter()
    param.CopyFrom(layer.param)
    param.top[0] = top
    w = np.asarray(layer.blobs[0], np.float64)
    if layer.type == "InnerProduct":
        ip = param.inner_product_param
        w = w * (a[None, :] if ip.transpose else a[:, None])
        has_bias = ip.bias_term
        ip.bias_term = True
    else:
        cp = param.convolution_param
        if layer.type == "Convolution":
            w = w * a.reshape((-1,) + (1,) * (w.ndim - 1))
        else:  # (C_in, num_output/group, k...): output channel g*(n/g) + j
            g = cp.group
            w = (w.reshape((g, w.shape[0] // g) + w.shape[1:])
                 * a.reshape((g, 1, -1) + (1,) * (w.ndim - 2))).reshape(w.shape)
        has_bias = cp.bias_term
        cp.bias_term = True
    bias = np.asarray(layer.blobs[1], np.float64).reshape(-1) if has_bias else 0.0
    blobs = [w.astype(np.float32), (bias * a + b).astype(np.float32)]
    return Layer(param, blobs, layer.text_order, dict(layer.extra))


def _merged(layers: list[Layer], a: np.ndarray, b: np.ndarray) -> Layer:
    first, last = layers[0], layers[-1]
    param = caffe_pb2.LayerParameter(name=first.name, type="Scale", bottom=[first.bottom[0]],
                                     top=[last.top[0]])
    param.scale_param.bias_term = True
    return Layer(param, [a.astype(np.float32), b.astype(np.float32)],
                 fused_from=tuple(x.name for x in layers))
