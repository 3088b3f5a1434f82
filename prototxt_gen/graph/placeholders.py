"""Weights for layers that have none (a prototxt without its caffemodel), per layer type:
placeholders that make each layer harmless, and random weights of a trained net's scale for
checks that need outputs that vary."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..registry import PLACEHOLDERS
from .net import Net


def placeholder(layer, k: int, shape: Sequence[int]) -> np.ndarray:
    """A value for weight blob k of a layer that has no weights (a prototxt without its
    caffemodel) that makes the layer harmless: zeros, except where the layer's type declares
    otherwise (registry.placeholder: factors and variances 1, so that BatchNorm and Scale are
    the identity; PReLU's slope Caffe's default 0.25)."""
    fill = PLACEHOLDERS.get(layer.type)
    value = fill(layer, k, tuple(shape)) if fill else 0.0
    if isinstance(value, np.ndarray):
        return value.astype(np.float32).reshape(shape)
    return np.full(shape, value, np.float32)


def fill_placeholders(net: Net) -> list[str]:
    """Give every layer that has no weights the placeholder values (see `placeholder`);
    returns the names of the layers filled."""
    from ..limits import check_memory
    from .shapes import infer, new_weight_bytes
    shapes = infer(net)
    # Twice: the arrays, then the model that holds them (measured: 1.9x for a 400 MB layer).
    check_memory(2 * new_weight_bytes(shapes),
                 "placeholder weights for the layers without weights")
    filled = []
    for s in shapes:
        if s.blobs and not s.layer.blobs:
            s.layer.blobs = [placeholder(s.layer, k, shape) for k, shape in enumerate(s.blobs)]
            filled.append(s.layer.name)
    return filled


def random_blob(rng: np.random.Generator, kind: str, k: int, shape) -> np.ndarray:
    """Weight blob k of a layer of type `kind` at the scale of a trained net: convolution and
    inner product weights He-scaled (std sqrt(2/fan-in)), Scale's gamma near 1, PReLU's
    slopes 0.25, biases near 0; BatchNorm the identity until calibrated (verify.calibrated)."""
    x = rng.standard_normal(tuple(shape)).astype(np.float32)
    if kind == "BatchNorm":  # identity until calibrated
        return [np.zeros(shape, np.float32), np.ones(shape, np.float32),
                np.ones(shape, np.float32)][min(k, 2)]
    if kind == "Scale" and k == 0:
        return 1 + 0.1 * x
    if kind == "BN":  # the forks' 1×C×1×1 slope, bias, mean, variance
        return [1 + 0.1 * x, 0.1 * x, 0.1 * x, 1 + 0.1 * np.abs(x)][min(k, 3)]
    if kind == "PReLU":
        return np.full(shape, 0.25, np.float32)
    if len(shape) > 1:  # weights: (outputs, fan-in...) for convolutions and inner products
        return x * np.float32(math.sqrt(2.0 / max(math.prod(shape[1:]), 1)))
    return 0.1 * x
