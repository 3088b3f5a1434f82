"""Small shims over protobuf's descriptor API, which changed between protobuf 4 and 7, and the
wire-format pieces our writers use to stream large arrays into messages without copying them
and our readers (caffemodels, TensorFlow checkpoint indexes) use to scan messages."""
from google.protobuf.descriptor import FieldDescriptor

if hasattr(FieldDescriptor, "is_repeated"):  # protobuf >= 6.30; `label` is gone in 7
    def is_repeated(fd: FieldDescriptor) -> bool:
        return fd.is_repeated
else:
    def is_repeated(fd: FieldDescriptor) -> bool:
        return fd.label == FieldDescriptor.LABEL_REPEATED


# The values each integer field type holds (textproto checks what it reads against these,
# net.set_fields what builders set).
INT_RANGES = {FieldDescriptor.CPPTYPE_INT32: (-2**31, 2**31 - 1),
              FieldDescriptor.CPPTYPE_INT64: (-2**63, 2**63 - 1),
              FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
              FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1)}


VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5  # wire types (LEN: bytes, strings, messages,
# packed arrays)


def tag(number: int, wire: int = LEN) -> bytes:
    return varint(number << 3 | wire)


def decode_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`; ValueError when it runs past `end`
    or past 10 bytes."""
    result = shift = 0
    while True:
        if pos >= end:
            raise ValueError("a number runs past the end")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("a number is longer than 10 bytes")


class WireError(ValueError):
    """Bytes that are not a protobuf message; `pos` is where the bad field or number starts."""

    def __init__(self, pos: int, what: str):
        super().__init__(what)
        self.pos = pos


def _number(buf, pos: int, end: int) -> tuple[int, int]:
    try:
        return decode_varint(buf, pos, end)
    except ValueError as exc:
        raise WireError(pos, str(exc)) from None


def fields(buf, pos: int, end: int):
    """The fields of the message in buf[pos:end], as (field number, wire type, value or
    payload start, payload end, field start): a varint's value and the position after it, a
    length-delimited or fixed-width field's payload span. WireError at the first bad field."""
    while pos < end:
        start = pos
        key, pos = _number(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(start, "field number 0")
        if wire == VARINT:
            value, pos = _number(buf, pos, end)
            yield number, wire, value, pos, start
        elif wire == LEN:
            length, pos = _number(buf, pos, end)
            if length > end - pos:
                raise WireError(start, f"field {number} needs {length} bytes, "
                                       f"{end - pos} are left")
            yield number, wire, pos, pos + length, start
            pos += length
        elif wire in (FIXED32, FIXED64):
            width = 4 if wire == FIXED32 else 8
            if width > end - pos:
                raise WireError(start, f"field {number} runs past the end")
            yield number, wire, pos, pos + width, start
            pos += width
        else:
            raise WireError(start, f"unexpected wire type {wire} (field {number})")


def varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
