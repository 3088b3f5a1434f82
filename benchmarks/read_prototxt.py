"""Reading a prototxt with prototxt_gen (tolerant parse, upgrades, graph checks) against
protobuf's own text parser alone (google.protobuf.text_format.Parse), same files, same run.

    python benchmarks/read_prototxt.py [--repeat 20]

Files: the reference ResNet-101 deploy file (4,548 lines) and the zoo's largest, DenseNet-121
(which protobuf's strict parser rejects for its fork field, so it is timed with the field
renamed to BVLC's round_mode). Reported: medians and ours / protobuf.
"""
import argparse
import sys
from pathlib import Path

from google.protobuf import text_format

from prototxt_gen.proto import caffe_pb2
from prototxt_gen.caffe.reader import read_prototxt
from timing import timed

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    args = parser.parse_args()
    for path in (args.reference / "kaiming" / "ResNet-101-deploy.prototxt",
                 args.reference / "zoo" / "densenet_121.prototxt"):
        text = path.read_text()
        strict = text.replace("ceil_mode: false", "round_mode: FLOOR")
        ours = timed(lambda: read_prototxt(path), args.repeat)[0]
        theirs = timed(lambda: text_format.Parse(strict, caffe_pb2.NetParameter()),
                       args.repeat)[0]
        print(f"{path.name} ({len(text.splitlines())} lines): ours {ours * 1e3:.1f} ms, "
              f"protobuf text_format {theirs * 1e3:.1f} ms, ratio {ours / theirs:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
