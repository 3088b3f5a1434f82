""".caffemodel files: trained weights, read without Caffe (weights.py matches them to a net and
writes them back).

A .caffemodel is one serialized caffe.NetParameter whose layers carry their weights as BlobProto
messages (docs/caffe.md §1). Parsing it with protobuf would copy every float into Python and
fails past protobuf's 2 GB message limit, so the reader scans the wire format itself over a
memory map: small messages (the net and layer definitions) go to protobuf once their blob
fields are cut out, and each blob's float bytes go straight into a numpy array (read from the
file into its memory, or, with mmap=True, viewed in place).
"""
from __future__ import annotations

import math
import mmap as _mmap
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Sequence

import numpy as np

from ..proto import caffe_pb2
from ..proto.wire import (FIXED32 as _FIXED32, FIXED64 as _FIXED64, LEN as _LEN,
                          VARINT as _VARINT, WireError, decode_varint,
                          fields as wire_fields, tag as _tag, varint as _varint)
from ..errors import NetError

# Field numbers (docs/caffe.md §1; every field of caffe.proto: proto/caffe.proto).
NET_LAYER, NET_LAYERS = 100, 2
LAYER_BLOBS, V1_BLOBS, V1_V0LAYER, V0_BLOBS = 7, 6, 1, 50
BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH = 1, 2, 3, 4
BLOB_DATA, BLOB_DIFF, BLOB_SHAPE, BLOB_DOUBLE_DATA, BLOB_DOUBLE_DIFF = 5, 6, 7, 8, 9
SHAPE_DIM = 1


class CorruptFile(NetError):
    pass


@dataclass
class BlobRef:
    """Where one blob's values sit in the file."""

    shape: tuple[int, ...]
    legacy: bool                # shape from num/channels/height/width (right-aligned rules)
    dtype: str                  # "<f4" (data) or "<f8" (double_data)
    segments: list[tuple[int, int, bool]]  # (offset, count, packed) runs of values
    count: int = 0


@dataclass
class CaffeModel:
    """A scanned .caffemodel: the net definition it embeds (without weights) and, per layer
    entry, its blobs."""

    path: str
    proto: caffe_pb2.NetParameter
    blobs: dict[tuple[str, int], list[BlobRef]] = field(default_factory=dict)
    _file: BinaryIO | None = None
    _map: _mmap.mmap | None = None
    _by_name: dict[str, list[BlobRef]] | None = None

    def weights(self, mmap: bool = False) -> dict[str, list[np.ndarray]]:
        """Arrays by layer name (Caffe's matching key), upgraded from V1/V0 entries as Caffe
        does. With mmap=True the arrays are read-only views of the file (nothing is read until
        used); otherwise they are read into memory: one buffer per dtype holds all of them,
        so that large allocations stay few (and use huge pages) and the reads are sequential."""
        named = self._named_refs()
        arenas = {} if mmap else self._arenas([r for refs in named.values() for r in refs])
        return {name: [self._array(r, arenas) for r in refs] for name, refs in named.items()}

    def legacy_shapes(self) -> dict[str, list[bool]]:
        return {name: [r.legacy for r in refs] for name, refs in self._named_refs().items()}

    def _named_refs(self) -> dict[str, list[BlobRef]]:
        if self._by_name is None:
            if len(self.proto.layers):  # V1/V0: names (of V0 layers) come out of the upgrade
                from ..proto.upgrade import upgrade_net
                up = upgrade_net(self.proto)
                pairs = zip(up.layers, up.origins)
            else:
                pairs = ((lp, ("layer", k)) for k, lp in enumerate(self.proto.layer))
            self._by_name = {}
            for lp, origin in pairs:
                refs = self.blobs.get(origin, [])
                if refs or lp.name not in self._by_name:
                    self._by_name[lp.name] = refs
        return self._by_name

    def _arenas(self, refs: list[BlobRef]) -> dict[int, np.ndarray]:
        """Read the packed blobs' bytes into per-dtype buffers; id(ref) -> its array."""
        out: dict[int, np.ndarray] = {}
        dense = [r for r in refs if len(r.segments) == 1 and r.segments[0][2]]
        for dtype in ("<f4", "<f8"):
            group = sorted((r for r in dense if r.dtype == dtype), key=lambda r: r.segments[0][0])
            if not group:
                continue
            arena = np.empty(sum(r.count for r in group), dtype)
            raw = memoryview(arena).cast("B")
            size, at = arena.itemsize, 0
            fd = self._file.fileno()
            for r in group:
                offset, count, _ = r.segments[0]
                if _read_at(fd, raw[at * size:(at + count) * size], offset) != count * size:
                    raise CorruptFile(f"{self.path}: truncated inside a blob at byte {offset}")
                out[id(r)] = arena[at:at + count]
                at += count
        return out

    def _array(self, ref: BlobRef, arenas: dict[int, np.ndarray]) -> np.ndarray:
        if id(ref) in arenas:
            arr = arenas[id(ref)]
        elif len(ref.segments) == 1 and ref.segments[0][2]:
            offset, count, _ = ref.segments[0]
            arr = np.frombuffer(self._map, ref.dtype, count, offset)
        else:
            parts = []
            for offset, count, packed in ref.segments:
                if packed:
                    parts.append(np.frombuffer(self._map, ref.dtype, count, offset))
                else:  # one tag byte before every value (a rare, unpacked encoding)
                    rec = np.frombuffer(self._map, np.dtype([("tag", "u1"), ("v", ref.dtype)]),
                                        count, offset)
                    parts.append(rec["v"])
            arr = np.concatenate(parts) if parts else np.empty(0, ref.dtype)
        if not arr.dtype.isnative:  # big-endian hosts: the file is little-endian
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return arr.reshape(ref.shape)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        # The map stays valid while arrays view it; it is released with the last of them.

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_at(fd: int, buf: memoryview, offset: int) -> int:
    """Read len(buf) bytes at `offset` straight into `buf` (one pread per call where the OS
    has it; no Python-level buffering)."""
    done = 0
    while done < len(buf):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [buf[done:]], offset + done)
        else:  # pragma: no cover - Windows
            os.lseek(fd, offset + done, os.SEEK_SET)
            n = os.readv(fd, [buf[done:]])
        if n <= 0:
            break
        done += n
    return done


# -- reading --------------------------------------------------------------------------------------

def read_caffemodel(path: str | os.PathLike) -> CaffeModel:
    """Scan a .caffemodel (current, V1 or V0 layout, any size). Errors name the file and the
    byte offset where it stops making sense."""
    from ..fileio import open_input
    name = str(path)
    f = open_input(path, "weights file")
    try:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise NetError(f"{name}: the file is empty")
        mm = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
        if mm[:4] == b"PK\x03\x04":  # torch.save writes zip archives
            raise CorruptFile(f"{name}: a zip archive (a PyTorch .pth/.pt file?), not a "
                              "Caffe model")
        scanner = _Scanner(mm, name)
        header, blobs = scanner.net()
        try:
            proto = caffe_pb2.NetParameter.FromString(bytes(header))
        except Exception:
            raise CorruptFile(f"{name}: not a Caffe model (its layer definitions do not "
                              "decode)") from None
        if not len(proto.layer) and not len(proto.layers):
            raise CorruptFile(f"{name}: not a Caffe model (no layers found)")
    except BaseException:
        f.close()
        raise
    return CaffeModel(name, proto, blobs, f, mm)


class _Scanner:
    def __init__(self, buf, name: str):
        self.buf = buf
        self.name = name

    def fail(self, pos: int, what: str):
        hint = ""
        if pos < 64 and _looks_like_text(self.buf[:256]):
            hint = " (it looks like text: a prototxt given as weights?)"
        raise CorruptFile(f"{self.name}: truncated or corrupt at byte {pos}: {what}{hint}")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        try:
            return decode_varint(self.buf, pos, end)
        except ValueError as exc:
            self.fail(pos, str(exc))

    def fields(self, pos: int, end: int):
        """(field number, wire type, value or payload start, payload end, field start)."""
        try:
            yield from wire_fields(self.buf, pos, end)
        except WireError as exc:
            self.fail(exc.pos, str(exc))

    def net(self):
        header = bytearray()
        blobs: dict[tuple[str, int], list[BlobRef]] = {}
        counters = {NET_LAYER: 0, NET_LAYERS: 0}
        for number, wire, a, b, start in self.fields(0, len(self.buf)):
            if number in counters and wire == _LEN:
                index = counters[number]
                counters[number] += 1
                container = "layer" if number == NET_LAYER else "layers"
                body, refs = self.layer(a, b, LAYER_BLOBS if number == NET_LAYER else V1_BLOBS,
                                        v1=number == NET_LAYERS)
                blobs[(container, index)] = refs
                header += _tag(number, _LEN) + _varint(len(body)) + body
            else:
                header += self.buf[start:b]
        return header, blobs

    def layer(self, pos: int, end: int, blob_field: int, v1: bool):
        body = bytearray()
        refs: list[BlobRef] = []
        for number, wire, a, b, start in self.fields(pos, end):
            if number == blob_field and wire == _LEN:
                refs.append(self.blob(a, b))
            elif v1 and number == V1_V0LAYER and wire == _LEN:
                inner, inner_refs = self.layer(a, b, V0_BLOBS, v1=False)
                refs.extend(inner_refs)
                body += _tag(number, _LEN) + _varint(len(inner)) + inner
            else:
                body += self.buf[start:b]
        return bytes(body), refs

    def blob(self, pos: int, end: int) -> BlobRef:
        legacy = {}
        dims: list[int] | None = None
        runs: dict[str, list[tuple[int, int, bool]]] = {"<f4": [], "<f8": []}
        for number, wire, a, b, start in self.fields(pos, end):
            if number in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH) and wire == _VARINT:
                legacy[number] = _signed(a)
            elif number == BLOB_SHAPE and wire == _LEN:
                dims = dims or []
                for n, w, x, y, s in self.fields(a, b):
                    if n != SHAPE_DIM:
                        continue
                    if w == _LEN:  # packed
                        p = x
                        while p < y:
                            d, p = self.varint(p, y)
                            dims.append(_signed(d))
                    elif w == _VARINT:
                        dims.append(_signed(x))
            elif number in (BLOB_DATA, BLOB_DOUBLE_DATA):
                dtype = "<f4" if number == BLOB_DATA else "<f8"
                width = 4 if number == BLOB_DATA else 8
                if wire == _LEN:
                    if (b - a) % width:
                        self.fail(start, f"blob data of {b - a} bytes is not a whole number "
                                         "of values")
                    runs[dtype].append((a, (b - a) // width, True))
                elif wire == (_FIXED32 if width == 4 else _FIXED64):
                    # Unpacked repeated values; extend the previous run when contiguous.
                    run = runs[dtype]
                    if run and not run[-1][2] and run[-1][0] + run[-1][1] * (width + 1) == start:
                        run[-1] = (run[-1][0], run[-1][1] + 1, False)
                    else:
                        run.append((start, 1, False))
                else:
                    self.fail(start, f"blob data field has wire type {wire}")
        if runs["<f4"] and runs["<f8"]:
            self.fail(pos, "a blob has both float and double data")
        dtype = "<f8" if runs["<f8"] else "<f4"
        segments = runs[dtype]
        count = sum(c for _, c, _ in segments)
        if legacy:
            shape = tuple(legacy.get(k, 0) for k in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT,
                                                     BLOB_WIDTH))
        elif dims is not None:
            shape = tuple(dims)
        else:
            shape = (count,)
        if math.prod(shape) != count:
            self.fail(pos, f"a blob of shape {shape_text(shape)} holds {count} values")
        return BlobRef(shape, bool(legacy), dtype, segments, count)


def _looks_like_text(head: bytes) -> bool:
    return bool(head) and all(32 <= c < 127 or c in (9, 10, 13) for c in head)


def _signed(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


def shape_text(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape)) if len(shape) else "scalar"
