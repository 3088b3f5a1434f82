"""torchvision's ResNet family (resnet18-152, resnext, wide_resnet) into the nets that
`resnet*_tv`, `resnext*` and `wide_resnet*` generate (kaiming names: conv1, bn_conv1,
scale_conv1, res2a_branch2a, bn2a_branch2a, ..., res2a_branch1, fc1000).

torchvision's `layer{k}.{i}` is Caffe's stage k + 1, its i-th unit in the order the net
declares them (res2a, res2b, ... or res4a, res4b1, ...); `conv1..3`/`bn1..3` are branches 2a-2c
and `downsample.0/1` branch 1. A BatchNorm2d becomes Caffe's BatchNorm (running mean and
variance, scale factor 1) and the Scale after it (weight and bias). The checks are exact: every
tensor the net needs must be there with Caffe's shape, and every tensor given must be used."""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from ..errors import NetError
from ..graph.net import Layer, Net
from ..graph.shapes import infer
from .matching import Matcher

_BRANCH = re.compile(r"^res(\d+)([a-z]\d*)_branch(1|2[abc])$")
_IGNORED = ("num_batches_tracked",)


def is_torchvision_state(keys) -> bool:
    """Whether a state_dict has torchvision's ResNet names (our own modules' keys are
    sanitized layer names, which never hold `layer1.0.`)."""
    return any(k.startswith("layer1.0.") for k in keys)


def _after(layers: list[Layer], start: int, kind: str, blob: str) -> Layer | None:
    """The first layer of type `kind` after position `start` that reads `blob`."""
    for layer in layers[start + 1:]:
        if layer.type == kind and layer.bottom and layer.bottom[0] == blob:
            return layer
    return None


def _check_layout(net: Net) -> None:
    """torchvision's own choices, which a Caffe net of the same names and shapes may not share:
    its max pool (3×3, stride 2, pad 1, rounding down) and, in bottlenecks, the stride on the
    3×3 (v1.5). Weights loaded into another layout would compute something else."""
    from ..proto import caffe_pb2
    hint = ("; torchvision's weights belong in the built-in model of its layout "
            "(resnet18_tv ... resnet152_tv, resnext*, wide_resnet*)")
    pools = [layer for layer in net.layers if layer.type == "Pooling"]
    if pools:
        pp = pools[0].param.pooling_param
        if (pp.pool, pp.kernel_size, pp.stride, pp.pad, pp.round_mode) != (
                caffe_pb2.PoolingParameter.MAX, 3, 2, 1, caffe_pb2.PoolingParameter.FLOOR):
            raise NetError(f"layer '{pools[0].name}' is not torchvision's max pool (3×3, "
                           f"stride 2, pad 1, rounding down){hint}")
    for layer in net.layers:
        match = _BRANCH.match(layer.name) if layer.type == "Convolution" else None
        cp = layer.param.convolution_param
        if match and match[3] == "2a" and list(cp.kernel_size) == [1] and \
                any(s > 1 for s in cp.stride):
            raise NetError(f"layer '{layer.name}' strides its 1×1 convolution, as MSRA's "
                           f"release does; torchvision strides the 3×3{hint}")


def _units(net: Net) -> dict[str, tuple[Layer, ...]]:
    """torchvision module path -> (convolution, BatchNorm, Scale) or (InnerProduct,)."""
    layers = net.layers
    found: dict[str, tuple[Layer, ...]] = {}
    stages: dict[int, list[str]] = {}
    convs = []
    for j, layer in enumerate(layers):
        if layer.type == "Convolution":
            match = _BRANCH.match(layer.name)
            if layer.name == "conv1":
                path = "conv1"
            elif match:
                stage, unit, branch = int(match[1]), match[2], match[3]
                ids = stages.setdefault(stage, [])
                if unit not in ids:
                    ids.append(unit)
                convs.append((j, layer, stage, unit, branch))
                continue
            else:
                raise NetError(f"layer '{layer.name}' is not named as a torchvision-layout "
                               "ResNet's (conv1, res2a_branch2a, ...)")
            convs.append((j, layer, 0, "", path))
    first = min(stages, default=2)
    for j, layer, stage, unit, branch in convs:
        if stage == 0:
            conv_path, bn_path = "conv1", "bn1"
        else:
            prefix = f"layer{stage - first + 1}.{stages[stage].index(unit)}"
            if branch == "1":
                conv_path, bn_path = f"{prefix}.downsample.0", f"{prefix}.downsample.1"
            else:
                k = "abc".index(branch[1]) + 1
                conv_path, bn_path = f"{prefix}.conv{k}", f"{prefix}.bn{k}"
        bn = _after(layers, j, "BatchNorm", layer.top[0])
        scale = bn and _after(layers, layers.index(bn), "Scale", bn.top[0])
        if bn is None or scale is None:
            raise NetError(f"layer '{layer.name}' has no BatchNorm and Scale after it, as "
                           "torchvision's convolutions have")
        found[conv_path] = (layer,)
        found[bn_path] = (bn, scale)
    fcs = [layer for layer in layers if layer.type == "InnerProduct"]
    if len(fcs) > 1:
        raise NetError("more than one InnerProduct layer: not a torchvision ResNet")
    if fcs:
        found["fc"] = (fcs[0],)
    return found


def torchvision_blobs(net: Net, state: Mapping[str, np.ndarray], source: str = "state_dict"
                      ) -> Net:
    """Give `net`'s layers the weights of a torchvision state_dict (name -> float array);
    returns `net`. NetError, one line, when the state_dict is not of this net."""
    _check_layout(net)
    shapes = {s.layer.name: s.blobs for s in infer(net)}
    match = Matcher(state)

    def take(key: str, want) -> np.ndarray | None:
        arr = match.take(key, want, lambda k: np.asarray(state[k]),
                         lambda k: np.shape(state[k]), fit=lambda s: s)  # torch's = Caffe's
        return None if arr is None else np.asarray(arr, np.float32).reshape(want)

    blobs: dict[str, list] = {}
    for path, mapped in _units(net).items():
        if len(mapped) == 2:  # BatchNorm2d -> BatchNorm + Scale
            bn, scale = mapped
            (mean, var, _), (weight, bias) = shapes[bn.name], shapes[scale.name]
            blobs[bn.name] = [take(f"{path}.running_mean", mean),
                              take(f"{path}.running_var", var), np.ones(1, np.float32)]
            blobs[scale.name] = [take(f"{path}.weight", weight), take(f"{path}.bias", bias)]
            continue
        (layer,) = mapped
        want = shapes[layer.name]
        got = [take(f"{path}.weight", want[0])]
        if len(want) > 1:  # a bias: torchvision's convolutions have none (zeros), its fc has
            got.append(take(f"{path}.bias", want[1]) if layer.type == "InnerProduct"
                       else np.zeros(want[1], np.float32))
        blobs[layer.name] = got
    unused = sorted(k for k in state if k not in match.used and not k.endswith(_IGNORED))
    match.refuse_if_wrong(f"{source}: not a torchvision state_dict of '{net.name}'", unused)
    for layer in net.layers:
        if layer.name in blobs:
            layer.blobs = blobs[layer.name]
    return net
