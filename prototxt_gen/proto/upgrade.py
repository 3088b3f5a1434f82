"""Caffe's own upgrades of old network definitions (upgrade_proto.cpp, docs/caffe.md §5-6),
and the phase filter (Net::FilterNet).

V0 (`layers { layer { type: "conv" kernelsize: ... } }`) → V1 (`layers { type: CONVOLUTION }`)
→ current (`layer { type: "Convolution" }`); `input`/`input_dim`/`input_shape` → input
declarations; data-transformation fields → `transform_param`; BatchNorm's three `param {}` →
lr_mult 0. Each layer keeps a reference to where it came from in the text so that fork fields
read beside it can follow it.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import caffe_pb2
from .wire import is_repeated
from ..errors import NetError, shown

V1 = caffe_pb2.V1LayerParameter

# upgrade_proto.cpp, UpgradeV1LayerType.
V1_TYPES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# upgrade_proto.cpp, UpgradeV0LayerType.
V0_TYPES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING",
    "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}

# UpgradeV0LayerParameter: which V0 fields go where, per V1 type (V0 name -> field of the
# type's parameter message).
_V0_DATA = {"source": "source", "batchsize": "batch_size", "scale": "scale",
            "meanfile": "mean_file", "cropsize": "crop_size", "mirror": "mirror"}
_V0_FILLED = {"num_output": "num_output", "biasterm": "bias_term",
              "weight_filler": "weight_filler", "bias_filler": "bias_filler"}
V0_FIELDS = {
    "CONVOLUTION": ("convolution_param", {**_V0_FILLED, "pad": "pad", "kernelsize": "kernel_size",
                                          "group": "group", "stride": "stride"}),
    "INNER_PRODUCT": ("inner_product_param", _V0_FILLED),
    "POOLING": ("pooling_param", {"pool": "pool", "kernelsize": "kernel_size",
                                  "stride": "stride", "pad": "pad"}),
    "DROPOUT": ("dropout_param", {"dropout_ratio": "dropout_ratio"}),
    "LRN": ("lrn_param", {"local_size": "local_size", "alpha": "alpha", "beta": "beta",
                          "k": "k"}),
    "CONCAT": ("concat_param", {"concat_dim": "concat_dim"}),
    "DATA": ("data_param", {**_V0_DATA, "rand_skip": "rand_skip"}),
    "IMAGE_DATA": ("image_data_param", _V0_DATA),
    "WINDOW_DATA": ("window_data_param", _V0_DATA),
    "HDF5_DATA": ("hdf5_data_param", {"source": "source", "batchsize": "batch_size"}),
}

_DATA_PARAMS = ("data_param", "image_data_param", "window_data_param")


@dataclass
class Upgraded:
    """A network in current syntax, before phase filtering."""

    name: str
    inputs: list[tuple[str, tuple[int, ...]]]
    layers: list[caffe_pb2.LayerParameter]
    origins: list[tuple[str, int]]  # ("layer" | "layers", index in that container of the text)
    input_layer_name: str | None
    state: caffe_pb2.NetState
    notes: list[str]                # what was upgraded, for the user


def upgrade_net(proto: caffe_pb2.NetParameter) -> Upgraded:
    """Bring any historical NetParameter to current syntax, following UpgradeNetAsNeeded."""
    notes: list[str] = []
    if len(proto.layers) and len(proto.layer):
        raise NetError("the net mixes 'layer' and legacy 'layers' entries; Caffe accepts only "
                       "one of them")
    if len(proto.layers):
        v1 = list(enumerate(proto.layers))
        if any(lp.HasField("layer") for _, lp in v1):
            v1 = _upgrade_v0(v1)
            notes.append("upgraded V0 layer definitions (2014 and earlier)")
        layers = [_upgrade_v1(lp, index) for index, lp in v1]
        origins = [("layers", index) for index, _ in v1]
        notes.append(f"upgraded {len(layers)} V1 'layers' entries to 'layer'")
    else:
        layers = [_copy(lp) for lp in proto.layer]
        origins = [("layer", k) for k in range(len(layers))]
    for lp in layers:
        _upgrade_transform(lp, notes)
        _upgrade_batch_norm(lp, notes)
    inputs = _inputs(proto, notes)
    return Upgraded(proto.name, inputs, layers, origins, None, proto.state, notes)


def _copy(lp: caffe_pb2.LayerParameter) -> caffe_pb2.LayerParameter:
    out = caffe_pb2.LayerParameter()
    out.CopyFrom(lp)
    return out


def _inputs(proto: caffe_pb2.NetParameter, notes: list[str]) -> list[tuple[str, tuple[int, ...]]]:
    """The net-level inputs, as UpgradeNetInput reads them: input_shape when there is any
    (input_dim is then ignored), else 4 input_dim values per input; an `input` with neither is
    dropped (old caffemodels carry one). Entries past the inputs are ignored, as by Caffe;
    too few would make Caffe read past the end, so they are an error here."""
    names, shapes, dims = list(proto.input), list(proto.input_shape), list(proto.input_dim)
    if not shapes and not dims:
        if names:
            notes.append(f"dropped the net-level input {', '.join(map(shown, names))}: it "
                         "declares no input_shape or input_dim (Caffe drops it too)")
        return []
    if shapes:
        if len(shapes) < len(names):
            raise NetError(f"{len(shapes)} input_shape entries for {len(names)} inputs")
        if dims:
            notes.append("ignored input_dim: the net also declares input_shape, which Caffe "
                         "uses")
        extra = len(shapes) - len(names)
        out = [(name, tuple(shapes[k].dim)) for k, name in enumerate(names)]
    else:
        if len(dims) < 4 * len(names):
            raise NetError(f"expected 4 input_dim values per input, found {len(dims)} for "
                           f"{len(names)} input(s)")
        extra = len(dims) - 4 * len(names)
        out = [(name, tuple(dims[4 * k: 4 * k + 4])) for k, name in enumerate(names)]
    if extra:
        notes.append(f"ignored {extra} input_{'shape' if shapes else 'dim'} "
                     f"entr{'ies' if extra > 1 else 'y'} past the last input, as Caffe does")
    return out


def _upgrade_v1(v1: caffe_pb2.V1LayerParameter, index: int) -> caffe_pb2.LayerParameter:
    """UpgradeV1LayerParameter."""
    lp = caffe_pb2.LayerParameter()
    lp.name = v1.name
    lp.bottom.extend(v1.bottom)
    lp.top.extend(v1.top)
    lp.include.extend(v1.include)
    lp.exclude.extend(v1.exclude)
    type_name = V1.LayerType.Name(v1.type)
    if not v1.HasField("type") or type_name == "NONE":
        raise NetError(f"legacy layer {index + 1} ('{v1.name}') has no type")
    lp.type = V1_TYPES[type_name]
    lp.blobs.extend(v1.blobs)
    count = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for k in range(count):
        spec = lp.param.add()
        if k < len(v1.param):
            spec.name = v1.param[k]
        if k < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[k]
        if k < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[k]
        if k < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[k]
    lp.loss_weight.extend(v1.loss_weight)
    for fd, value in v1.ListFields():
        if fd.name.endswith("_param"):
            getattr(lp, fd.name).CopyFrom(value)
    return lp


def _upgrade_v0(v1: list[tuple[int, caffe_pb2.V1LayerParameter]]):
    """UpgradeV0Net: V0 layers nested in V1 entries become V1 layers; 'padding' layers fold
    into the convolution or pooling that consumes them (UpgradeV0PaddingLayers)."""
    out: list[tuple[int, caffe_pb2.V1LayerParameter]] = []
    padding: dict[str, tuple[str, int]] = {}  # padding top -> (its bottom, pad)
    for index, entry in v1:
        if not entry.HasField("layer"):
            out.append((index, entry))
            continue
        v0 = entry.layer
        if v0.type == "padding":
            if len(entry.bottom) != 1 or len(entry.top) != 1:
                raise NetError(f"V0 padding layer '{v0.name}' needs one bottom and one top")
            padding[entry.top[0]] = (entry.bottom[0], v0.pad)
            continue
        new = _v0_layer(entry, v0, index)
        for k, b in enumerate(new.bottom):
            if b in padding:
                source, pad = padding[b]
                if new.type == V1.CONVOLUTION:
                    new.convolution_param.pad[:] = [pad]
                elif new.type == V1.POOLING:
                    new.pooling_param.pad = pad
                else:
                    raise NetError(f"V0 padding before layer '{v0.name}', which is neither a "
                                   "convolution nor a pooling layer")
                new.bottom[k] = source
        out.append((index, new))
    return out


def _v0_layer(entry, v0, index: int) -> caffe_pb2.V1LayerParameter:
    new = caffe_pb2.V1LayerParameter()
    new.bottom.extend(entry.bottom)
    new.top.extend(entry.top)
    new.name = v0.name
    kind = V0_TYPES.get(v0.type)
    if kind is None:
        raise NetError(f"V0 layer {index + 1} ('{v0.name}') has unknown type '{v0.type}'")
    new.type = V1.LayerType.Value(kind)
    new.blobs.extend(v0.blobs)
    new.blobs_lr.extend(v0.blobs_lr)
    new.weight_decay.extend(v0.weight_decay)
    if kind == "HDF5_OUTPUT" and v0.HasField("hdf5_output_param"):
        new.hdf5_output_param.CopyFrom(v0.hdf5_output_param)
    param_name, fields = V0_FIELDS.get(kind, (None, {}))
    for src, dst in fields.items():
        if not v0.HasField(src):
            continue
        target = getattr(new, param_name)
        fd = target.DESCRIPTOR.fields_by_name[dst]
        value = getattr(v0, src)
        if fd.message_type is not None:
            getattr(target, dst).CopyFrom(value)
        elif is_repeated(fd):
            getattr(target, dst).append(value)
        else:
            setattr(target, dst, value)
    return new


def _upgrade_transform(lp: caffe_pb2.LayerParameter, notes: list[str]) -> None:
    """UpgradeNetDataTransformation: scale/mean_file/crop_size/mirror of the data layers
    moved to transform_param."""
    for name in _DATA_PARAMS:
        if not lp.HasField(name):
            continue
        dp = getattr(lp, name)
        moved = False
        for f in ("scale", "mean_file", "crop_size", "mirror"):
            if dp.HasField(f):
                setattr(lp.transform_param, f, getattr(dp, f))
                dp.ClearField(f)
                moved = True
        if moved:
            notes.append(f"layer '{lp.name}': moved {name} transformation fields to "
                         "transform_param")


def _upgrade_batch_norm(lp: caffe_pb2.LayerParameter, notes: list[str]) -> None:
    """UpgradeNetBatchNorm: BatchNorm's statistics are never trained."""
    if lp.type == "BatchNorm" and len(lp.param) == 3:
        for spec in lp.param:
            spec.lr_mult = 0
            spec.decay_mult = 0


# -- phase filtering (Net::FilterNet) -------------------------------------------------------------

PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST}


def make_state(base: caffe_pb2.NetState, phase: str | None = None, level: int | None = None,
               stages: tuple[str, ...] | None = None) -> caffe_pb2.NetState:
    state = caffe_pb2.NetState()
    state.CopyFrom(base)
    if phase is not None:
        if phase.upper() not in PHASES:
            raise NetError(f"unknown phase '{phase}' (expected TRAIN or TEST)")
        state.phase = PHASES[phase.upper()]
    if level is not None:
        state.level = level
    if stages is not None:
        del state.stage[:]
        state.stage.extend(stages)
    return state


def rule_met(state: caffe_pb2.NetState, rule: caffe_pb2.NetStateRule) -> bool:
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(s not in state.stage for s in rule.stage):
        return False
    if any(s in state.stage for s in rule.not_stage):
        return False
    return True


def layer_included(state: caffe_pb2.NetState, lp: caffe_pb2.LayerParameter) -> bool:
    """Caffe's rule: with include rules, a layer is in iff one is met; otherwise it is in
    unless an exclude rule is met."""
    if len(lp.include):
        return any(rule_met(state, r) for r in lp.include)
    return not any(rule_met(state, r) for r in lp.exclude)
