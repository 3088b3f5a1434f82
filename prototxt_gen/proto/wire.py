"""Small shims over protobuf's descriptor API, which changed between protobuf 4 and 7, and the
wire-format pieces our writers use to stream large arrays into messages without copying them."""
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


LEN = 2  # wire type of length-delimited fields (bytes, strings, messages, packed arrays)


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


def varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
