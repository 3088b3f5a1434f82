"""proto/caffe.proto against Caffe's facts, and prototxt_gen/proto/caffe_pb2.py against the .proto."""
import re
import subprocess
import sys
import struct

import pytest
from google.protobuf import descriptor_pb2

from prototxt_gen.proto import caffe_pb2

from conftest import REFERENCE, ROOT

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {"string": F.TYPE_STRING, "bytes": F.TYPE_BYTES, "bool": F.TYPE_BOOL,
           "int32": F.TYPE_INT32, "uint32": F.TYPE_UINT32, "int64": F.TYPE_INT64,
           "uint64": F.TYPE_UINT64, "float": F.TYPE_FLOAT, "double": F.TYPE_DOUBLE}
LABELS = {"optional": F.LABEL_OPTIONAL, "repeated": F.LABEL_REPEATED,
          "required": F.LABEL_REQUIRED}


def facts_tables():
    """Messages and enums as caffe_facts.md lists them (from BVLC's caffe.proto)."""
    messages, enums, current = {}, {}, None
    for line in (REFERENCE / "caffe_facts.md").read_text().splitlines():
        if m := re.match(r"^#### (\w+)$", line):
            current = messages.setdefault(m.group(1), [])
        elif m := re.match(r"^enum ([\w.]+): (.*)$", line):
            enums[m.group(1)] = {k: int(v) for k, v in
                                 (item.strip().split("=") for item in m.group(2).split(","))}
            current = None
        elif current is not None and line.startswith("| ") and not line.startswith("| field"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif line.strip() and not line.startswith("|"):
            current = None
    return messages, enums


def our_file():
    proto = descriptor_pb2.FileDescriptorProto()
    proto.ParseFromString(caffe_pb2.DESCRIPTOR.serialized_pb)
    return proto


MESSAGES, ENUMS = facts_tables()


def test_facts_were_read():
    assert len(MESSAGES) == 63 and "LayerParameter" in MESSAGES and "V0LayerParameter" in MESSAGES
    assert sum(len(f) for f in MESSAGES.values()) == 423


def test_same_messages_as_caffe():
    ours = {m.name for m in our_file().message_type}
    assert ours == set(MESSAGES)


def _float32(text):
    return struct.unpack("<f", struct.pack("<f", float(text)))[0]


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_message_fields_match_caffe(name):
    msg = next(m for m in our_file().message_type if m.name == name)
    ours = {f.name: f for f in msg.field}
    assert set(ours) == {row[0] for row in MESSAGES[name]}, name
    for field, number, label, typ, default in MESSAGES[name]:
        f = ours[field]
        where = f"{name}.{field}"
        assert f.number == int(number), where
        assert f.label == LABELS[label.split()[0]], where
        assert f.options.packed == ("packed" in label), where
        if typ in SCALARS:
            assert f.type == SCALARS[typ], where
        else:  # a message or an enum, by its short name
            assert f.type in (F.TYPE_MESSAGE, F.TYPE_ENUM), where
            assert f.type_name.split(".")[-1] == typ, where
        if default == "":
            assert not f.HasField("default_value"), where
        elif f.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
            assert _float32(f.default_value) == _float32(default), where
        elif f.type == F.TYPE_STRING:
            assert f.default_value == default.strip("'\""), where
        else:
            assert f.default_value == default, where


def test_enums_match_caffe():
    proto = our_file()
    found = {e.name: e for e in proto.enum_type}
    for m in proto.message_type:
        found.update({f"{m.name}.{e.name}": e for e in m.enum_type})
    assert set(found) == set(ENUMS)
    for name, values in ENUMS.items():
        assert {v.name: v.number for v in found[name].value} == values, name


def test_package_and_syntax():
    proto = our_file()
    assert proto.package == "caffe"
    assert caffe_pb2.NetParameter.DESCRIPTOR.full_name == "caffe.NetParameter"
    assert proto.syntax in ("", "proto2")


def test_generated_module_matches_proto_source(tmp_path):
    """caffe_pb2.py must be regenerated (tools/gen_proto.py) whenever proto/caffe.proto changes."""
    from grpc_tools import protoc
    out = tmp_path / "caffe.pb"
    rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--descriptor_set_out={out}",
                      str(ROOT / "proto" / "caffe.proto")])
    assert rc == 0
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    assert _normalized(compiled) == _normalized(our_file())


def _normalized(proto):
    """Leave out what differs between protoc releases but not in meaning: json_name (gencode
    drops it) and the spelling of float defaults ("0.999" vs "0.999000013")."""
    for msg in proto.message_type:
        for f in msg.field:
            f.ClearField("json_name")
            if f.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE) and f.HasField("default_value"):
                f.default_value = repr(_float32(f.default_value))
    return proto


def test_module_imports_cleanly_with_upb():
    """No 'Descriptors cannot be created directly', no warning, no pure-python fallback."""
    code = ("import prototxt_gen.proto.caffe_pb2\n"
            "from google.protobuf.internal import api_implementation\n"
            "print(api_implementation.Type())")
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "upb"
    assert result.stderr == ""


def test_oldest_supported_protobuf(tmp_path):
    """setup.cfg promises protobuf>=4.21: generate ResNet-50 on protobuf 4.21 itself."""
    target = tmp_path / "pb421"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                              "--target", str(target), "protobuf==4.21.12"],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    code = ("import google.protobuf, sys\n"
            "from google.protobuf.internal import api_implementation\n"
            "assert google.protobuf.__version__ == '4.21.12', google.protobuf.__version__\n"
            "assert api_implementation.Type() == 'upb'\n"
            "from prototxt_gen.cli import main\n"
            "sys.exit(main(['resnet50']))\n")
    env = {"PYTHONPATH": f"{target}:{ROOT}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                            env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == (REFERENCE / "kaiming" / "ResNet-50-deploy.prototxt").read_bytes()
