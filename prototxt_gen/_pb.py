"""Small shims over protobuf's descriptor API, which changed between protobuf 4 and 7."""
from google.protobuf.descriptor import FieldDescriptor

if hasattr(FieldDescriptor, "is_repeated"):  # protobuf >= 6.30; `label` is gone in 7
    def is_repeated(fd: FieldDescriptor) -> bool:
        return fd.is_repeated
else:
    def is_repeated(fd: FieldDescriptor) -> bool:
        return fd.label == FieldDescriptor.LABEL_REPEATED
