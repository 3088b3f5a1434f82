"""Writing a translation: one .onnx file, or beside it a .data file of external weights when
the model is over protobuf's 2 GiB; weights go from their arrays to the file without a copy."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import onnx
from onnx import TensorProto

from ...graph.net import Net
from ...proto.wire import tag, varint
from .builder import DEFAULT_OPSET
from .translate import Translation, _le_view, check_model, translate


# Protobuf cannot serialize a message over 2 GiB; beyond this, weights go to a .data file.
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26


def save_onnx(net: Net, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
              fuse: bool = False, dynamic_batch: bool = True,
              outputs: Sequence[str] | None = None, external_data: bool | None = None,
              check_with: Callable[[str], None] | None = None) -> Translation:
    """Write the model to `path`, checked (see to_onnx). Weights over 2 GiB in all (or with
    external_data=True) go to `path`.data beside it, as ONNX external data. The model is
    written under a temporary name, checked there -- onnx.checker, then `check_with(path)`,
    which may raise -- and renamed into place only then: a failure leaves no output.

    The weights go from their numpy buffers straight into the file (see _write_model): no
    copy of them is made in memory, however large the model."""
    from ...fileio import atomic_open, atomic_path, check_target
    check_target(path)
    t = translate(net, opset=opset, fuse=fuse, dynamic_batch=dynamic_batch, outputs=outputs,
                  with_data=False)
    path = os.fspath(path)
    if external_data is None:
        external_data = sum(a.nbytes for a in t.arrays.values()) > EXTERNAL_DATA_THRESHOLD
    data_path = None
    if external_data:
        data_name = os.path.basename(path) + ".data"
        data_path = os.path.join(os.path.dirname(path), data_name)
        check_target(data_path)
        # The model refers to its data file by name, so the data goes to its final name.
        with atomic_open(data_path) as f:
            _write_external(f, t, data_name)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                _write_model(f, t)
            check_model(tmp)
            if check_with is not None:
                check_with(tmp)
    except BaseException:
        if data_path:
            try:
                os.unlink(data_path)
            except OSError:
                pass
        raise
    return t


def _write_external(f, t: Translation, data_name: str) -> None:
    """Move the large initializers' data to file `f`, page-aligned (runtimes map it)."""
    offset = 0
    for tp in t.model.graph.initializer:
        arr = t.arrays[tp.name]
        if arr.nbytes < 1024 or tp.raw_data:  # shapes, axes, small biases stay in the model
            continue
        pad = -offset % 4096
        f.write(b"\0" * pad)
        offset += pad
        f.write(_le_view(arr))
        tp.data_location = TensorProto.EXTERNAL
        for key, value in (("location", data_name), ("offset", str(offset)),
                           ("length", str(arr.nbytes))):
            tp.external_data.add(key=key, value=value)
        offset += arr.nbytes


_GRAPH = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number


_INITIALIZER = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number


_RAW_DATA = onnx.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number


def _write_model(f, t: Translation) -> None:
    """Serialize the model to `f` with each initializer's raw_data written from its array.

    Protobuf merges a message field that occurs twice, appending repeated fields: the file is
    the model without initializers, then a second `graph` field holding only the initializers,
    each encoded by hand around its array's bytes (raw_data)."""
    g = t.model.graph
    tensors = list(g.initializer)
    del g.initializer[:]
    try:
        f.write(t.model.SerializeToString())
    finally:
        g.initializer.extend(tensors)
    entries = []
    for tp in g.initializer:
        head = tp.SerializeToString()
        body = None
        if not tp.raw_data and tp.data_location != TensorProto.EXTERNAL:
            body = _le_view(t.arrays[tp.name])
            head += tag(_RAW_DATA) + varint(body.nbytes)
        size = len(head) + (body.nbytes if body is not None else 0)
        entries.append((tag(_INITIALIZER) + varint(size) + head, body))
    f.write(tag(_GRAPH) + varint(sum(len(h) + (b.nbytes if b is not None else 0)
                                  for h, b in entries)))
    for head, body in entries:
        f.write(head)
        if body is not None:
            f.write(body)
