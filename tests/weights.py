"""Deterministic random weights for tests: every layer gets blobs of the shapes the net expects,
scaled so that deep nets stay finite; BatchNorm variances are positive and its scale factor is
2 (not 1), so a reader that forgets to divide by it gets different numbers."""
import math

import numpy as np

from prototxt_gen.graph.shapes import infer


def random_weights(net, seed=0):
    rng = np.random.default_rng(seed)
    for s in infer(net):
        blobs = []
        for k, shape in enumerate(s.blobs):
            data = rng.standard_normal(shape).astype(np.float32)
            if len(shape) > 1:  # conv/fc weights, scaled by fan-in
                data *= np.float32(math.sqrt(1.0 / math.prod(shape[1:])))
            elif s.layer.type == "BatchNorm":  # mean, variance, scale factor (sums, see §3)
                data = [data * 2, (np.abs(data) + 0.5) * 2, np.float32([2.0])][k]
            else:  # biases, Scale's gamma (near 1) and beta
                gamma = s.layer.type == "Scale" and k == 0
                data = data * np.float32(0.1) + np.float32(1.0 if gamma else 0.0)
            blobs.append(data)
        s.layer.blobs = blobs
    return net
