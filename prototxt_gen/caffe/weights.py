"""A net's weights and .caffemodel files: matched by layer name from a file (load_weights, with
a report of what was missing, extra or did not fit), and written back as one (write_caffemodel,
streamed in the layout the reader scans: docs/caffe.md §1)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..errors import NetError
from ..graph.net import Net
from ..proto import caffe_pb2
from ..proto.wire import tag as _tag, varint as _varint
from .caffemodel import (_LEN, BLOB_DATA, BLOB_DOUBLE_DATA, BLOB_SHAPE, LAYER_BLOBS, NET_LAYER,
                         SHAPE_DIM, CaffeModel, read_caffemodel, shape_text)


# -- matching weights to a net --------------------------------------------------------------------

@dataclass
class WeightReport:
    loaded: list[str] = field(default_factory=list)    # layers that received weights
    missing: list[str] = field(default_factory=list)   # layers with parameters, none in the file
    extra: list[str] = field(default_factory=list)     # layers with weights the net lacks
    mismatched: list[str] = field(default_factory=list)  # one message per layer that does not fit

    def lines(self, source: str) -> list[str]:
        out = []
        if self.missing:
            out.append(f"{source}: no weights for {len(self.missing)} layer(s) that need them: "
                       + _names(self.missing))
        if self.extra:
            out.append(f"{source}: {len(self.extra)} layer(s) with weights are not in the net "
                       "(ignored, as Caffe does): " + _names(self.extra))
        return out


def load_weights(net: Net, source: str | os.PathLike | CaffeModel, *, mmap: bool = False,
                 strict: bool = False, check_only: bool = False) -> WeightReport:
    """Give each layer of `net` the blobs of the same-named layer in a .caffemodel, as
    Net::CopyTrainedLayersFrom does: layers are matched by name, the number of blobs must
    match and every blob's shape must equal the one the net expects (legacy 4-D shapes compare
    right-aligned). Layers of the file that the net lacks are ignored; layers of the net that
    the file lacks keep no weights. Both are reported (and added to net.warnings); with
    strict=True a missing layer is an error. A misfit raises NetError naming the layer and both
    shapes -- unless check_only, which assigns nothing and lists every misfit in the report."""
    from ..graph.shapes import infer
    model = source if isinstance(source, CaffeModel) else read_caffemodel(source)
    try:
        weights = model.weights(mmap=mmap or check_only)
        legacy = model.legacy_shapes()
    finally:
        if not isinstance(source, CaffeModel):
            model.close()
    report = WeightReport()
    expected = {s.layer.name: s.blobs for s in infer(net)}
    assign = []
    names = set()
    for layer in net.layers:
        if layer.name in names:
            continue  # Caffe copies into the first layer of a name
        names.add(layer.name)
        want = expected.get(layer.name, [])
        arrays = weights.get(layer.name)
        if not arrays:
            if want:
                report.missing.append(layer.name)
            continue
        where = f"{model.path}: layer '{layer.name}' ({layer.type})"
        if len(arrays) != len(want):
            report.mismatched.append(
                f"{where}: the file has {len(arrays)} blobs, the net expects {len(want)} "
                f"({', '.join(shape_text(w) for w in want) or 'none'})")
            continue
        bad = [k for k, (arr, shape, old) in enumerate(zip(arrays, want, legacy[layer.name]))
               if not _shape_equals(arr.shape, tuple(shape), old)]
        if bad:
            k = bad[0]
            report.mismatched.append(
                f"{where}: blob {k} has shape {shape_text(arrays[k].shape)} in the file, the net "
                f"expects {shape_text(want[k])}")
            continue
        assign.append((layer, [a.reshape(s) for a, s in zip(arrays, want)]))
        report.loaded.append(layer.name)
    report.extra = [n for n, arrays in weights.items() if arrays and n not in names]
    if check_only:
        return report
    if report.mismatched:
        more = len(report.mismatched) - 1
        raise NetError(report.mismatched[0] + (f" (and {more} more layer(s) do not fit)"
                                               if more else ""))
    if strict and report.missing:
        raise NetError(f"{model.path}: no weights for layer(s) " + _names(report.missing))
    for layer, blobs in assign:
        layer.blobs = blobs
    net.warnings.extend(report.lines(model.path))
    return report


def _shape_equals(have: tuple[int, ...], want: tuple[int, ...], legacy: bool) -> bool:
    """Blob::ShapeEquals: legacy blobs compare as 4-D, right-aligned (a bias of N is 1×1×1×N)."""
    if not legacy:
        return have == want
    if len(want) > 4:
        return False
    return have == (1,) * (4 - len(want)) + want


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# -- writing --------------------------------------------------------------------------------------

def write_caffemodel(net: Net, path: str | os.PathLike) -> None:
    """Write the net and its weights as a .caffemodel the way Caffe's Net::ToProto does (an
    Input layer for the inputs, `shape` + `data` per blob; float64 arrays go to double_data).
    Streams layer by layer into a temporary file that replaces `path` when complete."""
    from ..fileio import atomic_open
    proto = net.to_proto("layer")
    first = len(proto.layer) - len(net.layers)
    with atomic_open(path) as f:
        if proto.name:
            f.write(_tag(1, _LEN) + _bytes(proto.name.encode("utf-8")))
        for k, lp in enumerate(proto.layer):
            layer = net.layers[k - first] if k >= first else None
            body = lp.SerializeToString()
            blobs = [_blob_parts(arr, layer, j) for j, arr in
                     enumerate(layer.blobs if layer is not None else [])]
            size = len(body) + sum(len(head) + data.nbytes for head, data in blobs)
            f.write(_tag(NET_LAYER, _LEN) + _varint(size) + body)
            for head, data in blobs:
                f.write(head)
                f.write(memoryview(data).cast("B"))


def _blob_parts(arr, layer, index: int) -> tuple[bytes, np.ndarray]:
    arr = np.asarray(arr)
    if arr.dtype == np.float64:
        data, number = np.ascontiguousarray(arr, "<f8"), BLOB_DOUBLE_DATA
    elif arr.dtype.kind in "fiub":
        data, number = np.ascontiguousarray(arr, "<f4"), BLOB_DATA
    else:
        raise NetError(f"layer '{layer.name}': blob {index} has dtype {arr.dtype}, which a "
                       "caffemodel cannot hold")
    packed = b"".join(_varint(d) for d in arr.shape)
    shape = _tag(SHAPE_DIM, _LEN) + _bytes(packed)
    head = (_tag(BLOB_SHAPE, _LEN) + _bytes(shape)
            + _tag(number, _LEN) + _varint(data.nbytes))
    blob_size = len(head) + data.nbytes
    return _tag(LAYER_BLOBS, _LEN) + _varint(blob_size) + head, data


def _bytes(data: bytes) -> bytes:
    return _varint(len(data)) + data


# -- the net a caffemodel embeds ------------------------------------------------------------------

def read_caffemodel_net(path: str | os.PathLike, phase: str | None = None, *,
                        prepare: Callable[[Net], None] | None = None) -> Net:
    """The network a .caffemodel embeds (Caffe saves each layer's full definition next to its
    weights), with those weights: for when the prototxt is lost. `prepare(net)` runs before
    the shapes are needed (to give a data layer's tops their shapes: Net.set_shape)."""
    with read_caffemodel(path) as model:
        net = _embedded_net(model, phase, prepare)
        load_weights(net, model)
    return net


def _embedded_net(model: CaffeModel, phase: str | None, prepare=None) -> Net:
    """The embedded net in `phase`; by default in the phase Caffe stamped on its layers when
    it saved them (a snapshot taken in training is the TRAIN net, with its data layers), else
    in the file's state or TEST -- and if that net is incomplete, TRAIN."""
    from ..graph.shapes import DATA_SOURCES
    from ..graph.shapes import infer
    proto = model.proto
    if phase is None and not proto.HasField("state"):
        stamped = {lp.phase for lp in proto.layer if lp.HasField("phase")}
        if stamped == {caffe_pb2.TRAIN}:
            phase = "TRAIN"
    tries = [phase] if phase is not None else [None, "TRAIN"]
    for choice in tries:
        try:
            net = Net.from_proto(proto, choice)
            net.check()
            if prepare is not None:
                prepare(net)
            infer(net)
            break
        except NetError as exc:
            failure = exc
    else:
        hint = ""
        if any(lp.type in DATA_SOURCES for lp in proto.layer):
            hint = (" -- it embeds its training net; for the deploy view give the deploy "
                    f"prototxt with --weights {model.path}")
        raise NetError(f"{model.path}: {failure}{hint}") from None
    if choice == "TRAIN":
        net.notes.append("read the embedded net in phase TRAIN, the phase it was saved in "
                         "(--phase TEST for the other; for the deploy view give the deploy "
                         "prototxt with --weights)")
    return net
