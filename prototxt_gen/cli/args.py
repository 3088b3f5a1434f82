"""The command line's shared parts: the parser (one-line errors), option value types, and how
output is written."""
from __future__ import annotations

import argparse
import math
import re
import shlex
import sys

from ..errors import PrototxtGenError
from ..build.schema import INT_MAX


PROG = "prototxt-gen"


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage dump
        self.exit(2, f"{PROG}: error: {message} (see '{PROG} --help')\n")


def parse_dims(text: str) -> tuple[int, ...]:
    """'1,3,224,224' (or 1x3x224x224) as integers; () if it is not that."""
    try:
        return tuple(int(p) for p in re.split(r"[,x×]", text.strip()))
    except ValueError:
        return ()


def shape_arg(text: str) -> tuple[int, ...]:
    dims = parse_dims(text)
    if len(dims) != 4 or any(not 1 <= d <= INT_MAX for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected N,C,H,W (four positive integers), got '{text}'")
    return dims


def named_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """NAME=D1,D2,... (any blob, 1 to 8 dimensions) or N,C,H,W (the first input)."""
    name, eq, dims_text = text.rpartition("=")
    if not eq:
        return None, shape_arg(text)
    dims = parse_dims(dims_text)
    if not name or not 1 <= len(dims) <= 8 or any(not 1 <= d <= INT_MAX for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected NAME=N,C,H,W (a blob and up to 8 positive integers), got '{text}'")
    return name, dims


def iterations(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not 1 <= v <= INT_MAX for v in values):
        raise argparse.ArgumentTypeError(f"expected iterations like 150000,300000, got '{text}'")
    return values


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= INT_MAX:
        raise argparse.ArgumentTypeError(f"expected a positive integer (at most {INT_MAX}), "
                                         f"got '{text}'")
    return value


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return value


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def file_output(output: str, command: str) -> None:
    """`-o -` means standard output for the text commands (generate, info, solver); the ones
    that write binary files, or several, need a file name."""
    if output == "-":
        raise PrototxtGenError(f"-o -: {command} writes files, not standard output; give a "
                               "file name")


def emit(text: str, output: str | None) -> None:
    if output and output != "-":
        from ..fileio import atomic_write
        atomic_write(output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def net_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="NET",
                   help="a prototxt file (any Caffe syntax), a .caffemodel, a TOML spec or a "
                        "built-in model")


def net_options(p: argparse.ArgumentParser) -> None:
    """--phase and --input-shape, shared by the commands that read a net."""
    p.add_argument("--phase", choices=("TRAIN", "TEST"), type=str.upper,
                   help="which layers of a train_val file (default: the file's state, else TEST)")
    p.add_argument("--input-shape", type=named_shape, action="append", default=[],
                   metavar="[NAME=]N,C,H,W",
                   help="the shape of input NAME (default: the first), or of a data layer's "
                        "top the file does not size; repeatable")


def require(module: str, extra: str, needed_by: str, what: str | None = None) -> None:
    """A one-line error, with the command that installs the extra, when `module` (an optional
    package) does not import."""
    try:
        __import__(module)
    except ImportError:
        raise PrototxtGenError(f"{needed_by} needs {what or module}: {install_hint(extra)}") \
            from None


def install_hint(extra: str) -> str:
    """A command that installs an extra's packages into the running Python, whether
    prototxt-gen came from a clone, a wheel or an index: its own pip, with the versions the
    installed package declares for that extra."""
    from importlib import metadata
    try:
        declared = metadata.requires("prototxt-gen") or []
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        declared = []
    wanted = []
    for req in declared:
        spec, _, marker = req.partition(";")
        if re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", marker):
            wanted.append(spec.strip().replace(" ", ""))
    if not wanted:
        wanted = {"torch": ["torch"], "onnx": ["onnx", "onnxruntime"],
                  "render": ["graphviz"]}.get(extra, [extra])
    python = sys.executable or "python3"
    return f"{shlex.quote(python)} -m pip install " + " ".join(shlex.quote(w) for w in wanted)
