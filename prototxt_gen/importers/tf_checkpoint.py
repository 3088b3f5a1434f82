"""TensorFlow checkpoints read without TensorFlow: the V2 tensor bundle that `tf.train.Saver`
(and `tf.train.Checkpoint`) writes, PREFIX.index plus PREFIX.data-NNNNN-of-MMMMM.

The index is a LevelDB-format table (tensorflow/core/lib/io/table): data blocks of
prefix-compressed (key, value) entries with a restart array, an index block of block handles,
and a 48-byte footer ending in the table magic. The key "" holds the BundleHeaderProto (number
of shards, endianness); every other key is a variable's name and its value a BundleEntryProto
(dtype, shape, shard, offset, size). A tensor is `size` raw bytes at `offset` in its shard.
Every length, offset and shape is checked against the files before anything is allocated: a
checkpoint may be hostile.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import NetError
from ..fileio import open_input
from ..limits import check_memory
from ..proto.wire import LEN, VARINT, decode_varint, fields as wire_fields

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER = 48
MAX_INDEX = 1 << 30  # an index of a billion bytes describes no real model
# TensorFlow's DataType numbers (types.proto) that hold weights
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
          9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32,
          23: np.uint64}


class CheckpointError(NetError):
    """A checkpoint that cannot be read: missing, truncated, corrupt, or of a kind not
    supported."""


@dataclass(frozen=True)
class Entry:
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


def _fields(buf: bytes, pos: int = 0, end: int | None = None):
    """(field number, wire type, value) of a protobuf message: ints for varints and fixed
    values, (start, end) spans for length-delimited ones."""
    for number, wire, a, b, _ in wire_fields(buf, pos, len(buf) if end is None else end):
        if wire == LEN:
            yield number, wire, (a, b)
        elif wire == VARINT:
            yield number, wire, a
        else:
            yield number, wire, int.from_bytes(buf[a:b], "little")


def _shape(buf: bytes, span: tuple[int, int]) -> tuple[int, ...]:
    dims = []
    for number, wire, value in _fields(buf, *span):
        if number == 3 and wire == 0 and value:
            raise ValueError("a tensor of unknown rank")
        if number == 2 and wire == 2:
            size = 0
            for n, w, v in _fields(buf, *value):
                if n == 1 and w == 0:
                    size = v - (1 << 64) if v >= 1 << 63 else v
            if size < 0:
                raise ValueError("a dimension of unknown size")
            dims.append(size)
    return tuple(dims)


def _entry(buf: bytes) -> Entry:
    dtype = shard = offset = size = 0
    shape: tuple[int, ...] = ()
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 2 and wire == 2:
            shape = _shape(buf, value)
        elif number == 3 and wire == 0:
            shard = value
        elif number == 4 and wire == 0:
            offset = value
        elif number == 5 and wire == 0:
            size = value
        elif number == 7:
            raise ValueError("a partitioned variable (saved in slices)")
    return Entry(dtype, shape, shard, offset, size)


def _block(data: bytes, handle: tuple[int, int], what: str) -> bytes:
    """A table block's contents, its 5-byte trailer (compression type, CRC) checked for type."""
    offset, size = handle
    if offset + size + 5 > len(data):
        raise ValueError(f"the {what} block lies past the end of the index")
    if data[offset + size] != 0:
        raise ValueError(f"the {what} block is compressed (type {data[offset + size]}); "
                         "TensorFlow writes bundle indexes uncompressed")
    return data[offset:offset + size]


def _entries(block: bytes):
    """(key, value) of a block, undoing the prefix compression of the keys."""
    if len(block) < 4:
        raise ValueError("a block too short for its restart count")
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 * (restarts + 1)
    if limit < 0:
        raise ValueError("a block's restart array is longer than the block")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = decode_varint(block, pos, limit)
        unshared, pos = decode_varint(block, pos, limit)
        length, pos = decode_varint(block, pos, limit)
        if shared > len(key) or pos + unshared + length > limit:
            raise ValueError("an entry runs past its block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + length]
        pos += length


def _handle(buf: bytes, pos: int = 0) -> tuple[tuple[int, int], int]:
    offset, pos = decode_varint(buf, pos, len(buf))
    size, pos = decode_varint(buf, pos, len(buf))
    return (offset, size), pos


class Checkpoint:
    """A checkpoint's variables: `names`, `shape(name)` and `read(name)` (a NumPy array)."""

    def __init__(self, prefix: str | os.PathLike):
        prefix = os.fspath(prefix)
        for suffix in (".index", ".meta"):  # the name of either file works as the prefix
            if prefix.endswith(suffix):
                prefix = prefix[:-len(suffix)]
        if ".data-" in os.path.basename(prefix):
            prefix = prefix[:prefix.rindex(".data-")]
        self.prefix = prefix
        index = prefix + ".index"
        with open_input(index, "checkpoint index", error=CheckpointError,
                        missing="checkpoint (PREFIX.index)") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_INDEX:
                raise CheckpointError(f"{index}: {size} bytes, too large for a checkpoint index")
            data = f.read()
        try:
            self.entries, self.shards, big = self._parse(data)
        except ValueError as exc:
            raise CheckpointError(f"{index}: not a TensorFlow checkpoint index ({exc})") from None
        self.byteorder = ">" if big else "<"

    @staticmethod
    def _parse(data: bytes) -> tuple[dict[str, Entry], int, bool]:
        if len(data) < FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != \
                TABLE_MAGIC:
            raise ValueError("no table footer")
        footer = data[-FOOTER:]
        _, pos = _handle(footer)          # the metaindex: empty in bundles
        index_handle, _ = _handle(footer, pos)
        entries, shards, big = {}, 1, False
        for _, value in _entries(_block(data, index_handle, "index")):
            handle, _ = _handle(value)
            for key, record in _entries(_block(data, handle, "data")):
                if key == b"":
                    for number, wire, v in _fields(record):
                        if number == 1 and wire == 0:
                            shards = v
                        elif number == 2 and wire == 0:
                            big = v == 1
                    continue
                entries[key.decode("utf-8", "replace")] = _entry(record)
        if not 1 <= shards <= 100000:
            raise ValueError(f"{shards} shards")
        return entries, shards, big

    @property
    def names(self) -> list[str]:
        return sorted(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name].shape

    def read(self, name: str) -> np.ndarray:
        e = self.entries[name]
        where = f"{self.prefix}: variable '{name}'"
        if e.dtype not in DTYPES:
            raise CheckpointError(f"{where} has TensorFlow dtype {e.dtype}, not a number type "
                                  "that weights use")
        dtype = np.dtype(DTYPES[e.dtype]).newbyteorder(self.byteorder)
        count = math.prod(e.shape)
        if count * dtype.itemsize != e.size or e.shard >= self.shards:
            raise CheckpointError(f"{where}: its record ({e.size} bytes in shard {e.shard}) "
                                  f"does not fit its shape {list(e.shape)}")
        shard = f"{self.prefix}.data-{e.shard:05d}-of-{self.shards:05d}"
        with open_input(shard, "checkpoint data file", error=CheckpointError,
                        missing="checkpoint data file") as f:
            if e.offset + e.size > os.fstat(f.fileno()).st_size:
                raise CheckpointError(f"{where} lies past the end of {shard} (truncated?)")
            check_memory(e.size, f"variable '{name}' of {self.prefix}")
            f.seek(e.offset)
            arr = np.frombuffer(f.read(e.size), dtype).reshape(e.shape)
        return arr.astype(arr.dtype.newbyteorder("=")) if self.byteorder == ">" else arr
