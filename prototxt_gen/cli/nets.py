"""Commands that read a net: `info` and `render`, and how a net is loaded for any command
(prototxt, caffemodel or template; --phase, --input-shape, --weights)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import NetError, PrototxtGenError
from .args import PROG, Parser, file_output, emit, net_argument, net_options, install_hint


INFO_EXAMPLES = f"""\
examples:
  {PROG} info deploy.prototxt
      per layer: type, output shape, parameters, MACs, activation memory; totals
  {PROG} info deploy.prototxt --weights model.caffemodel
      also check the weights: layers missing or extra, blobs of the wrong shape
  {PROG} info train_val.prototxt --phase TRAIN --format json
      Data layers sized by their batch_size and crop_size (a note says what was assumed)
  {PROG} info mnist_train_val.prototxt --input-shape data=64,1,28,28
      a data layer's top that the file does not size (no crop_size; HDF5Data; Python)
  {PROG} info resnet50 --input-shape 1,3,448,448
      a built-in model (or a --spec TOML file) works too
  {PROG} info model.caffemodel
      the net a .caffemodel embeds, when its prototxt is lost (a training snapshot's TRAIN
      net: give the deploy prototxt with --weights for the deploy view)

exit status: 0 success, 2 bad input (unreadable net, weights that do not fit or of another
net), 1 output could not be written, 70 internal error"""


def cmd_info(argv: Sequence[str]) -> int:
    p = Parser(prog=f"{PROG} info", epilog=INFO_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Analyze a Caffe network: what Netscope's analyzer showed.")
    net_argument(p)
    p.add_argument("--weights", metavar="W.caffemodel", help="check these weights against the net")
    p.add_argument("--format", choices=("table", "json"), default="table")
    net_options(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    args = p.parse_args(argv)
    from ..view.info import analyze
    net = load_for(args)
    from ..errors import NetError
    try:
        analysis = analyze(net)
    except NetError as exc:
        raise NetError(f"{args.net}: {exc}") from None
    report = None
    if args.weights:
        from ..caffe.weights import load_weights
        report = load_weights(net, args.weights, check_only=True)
        analysis.warnings += report.lines(args.weights) + report.mismatched
    if report is not None:
        analysis.weights = {"file": args.weights, "loaded": report.loaded,
                            "missing": report.missing, "extra": report.extra,
                            "mismatched": report.mismatched}
    emit(analysis.to_json() if args.format == "json" else analysis.to_table(), args.output)
    if report is not None and report.mismatched:
        more = len(report.mismatched) - 1
        raise PrototxtGenError(report.mismatched[0]
                               + (f" (and {more} more layer(s))" if more else ""))
    if report is not None and report.missing and not report.loaded:
        raise PrototxtGenError(
            f"{args.weights}: no layer of the net has weights in the file ("
            f"{len(report.missing)} need them; the file's {len(report.extra)} other layer(s) "
            "match none by name): the weights of another net?")
    return 0


def load_for(args):
    """The net named by args.net, in args.phase, with each --input-shape applied."""
    def reshape(net):
        for name, shape in args.input_shape:
            if name is None:
                name = _first_input(net)
                if name is None:
                    raise PrototxtGenError(f"{args.net}: the net declares no input to reshape")
            try:
                net.set_shape(name, shape)
            except NetError as exc:
                raise PrototxtGenError(f"--input-shape: {exc}") from None

    return load_net(args.net, args.phase, reshape)


def _first_input(net) -> str | None:
    """The blob a bare --input-shape sets: the first input, else a data layer's first top."""
    from ..graph.net import net_inputs
    found = net_inputs(net)
    if found:
        return found[0][0]
    from ..graph.shapes import DATA_READERS
    return next((layer.top[0] for layer in net.layers if not layer.bottom and layer.top
                 and layer.type in DATA_READERS), None)


def load_net(name: str, phase: str | None = None, prepare=None):
    """A net from a prototxt path, a .caffemodel, a TOML spec or a built-in model's name;
    `prepare(net)` (shapes the user gives) runs on it before anything needs its shapes."""
    from pathlib import Path
    path = Path(name)
    if path.suffix == ".caffemodel":
        from ..caffe.weights import read_caffemodel_net
        return read_caffemodel_net(path, phase, prepare=prepare)
    net = _net_from(name, path, phase)
    if prepare is not None:
        prepare(net)
    return net


def _net_from(name, path, phase):
    if path.suffix == ".toml":
        from ..build.generator import generate
        return generate(path)
    if path.exists() or len(path.parts) > 1 or path.suffix:
        from ..caffe.reader import read_prototxt
        return read_prototxt(path, phase)
    from ..build.catalog import template_names
    if name in template_names():
        from ..build.generator import generate
        return generate(name)
    from ..caffe.reader import read_prototxt
    return read_prototxt(path, phase)  # reports the missing file


RENDER_EXAMPLES = f"""\
examples:
  {PROG} render deploy.prototxt -o net.svg
      one node per layer (in-place layers listed in their producer's node), blob shapes on
      the edges, colours by layer family
  {PROG} render resnet152 -o r152.png --collapse
      one node per residual unit / inception module (by layer-name prefix)
  {PROG} render train_val.prototxt --phase TRAIN --rankdir LR -o train.pdf
  {PROG} render deploy.prototxt -o report.html
      one self-contained page: the graph (hover a node for its parameters and shapes) and the
      analysis table per layer and per block, sortable by any column
  {PROG} render deploy.prototxt -o net.dot
      the DOT source; the only format that does not need Graphviz's dot program

exit status: 0 success, 2 bad input or usage, 1 output could not be written (or dot is
missing), 70 internal error"""


def cmd_render(argv: Sequence[str]) -> int:
    p = Parser(prog=f"{PROG} render", epilog=RENDER_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Draw a Caffe network the way Netscope did, with Graphviz.")
    net_argument(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the file to write; its extension gives the format")
    p.add_argument("--format", choices=("svg", "png", "pdf", "dot", "html"),
                   help="the format, whatever the extension")
    p.add_argument("--rankdir", choices=("TB", "LR"), type=str.upper, default="TB",
                   help="top to bottom (default) or left to right")
    p.add_argument("--collapse", nargs="?", const=True, default=False, metavar="REGEX",
                   help="one node per block: by the name's first '/' component or MSRA's "
                        "ResNet unit names, or by REGEX's first group")
    net_options(p)
    args = p.parse_args(argv)
    file_output(args.output, "render")
    if isinstance(args.collapse, str):
        import re
        try:
            if re.compile(args.collapse).groups < 1:
                raise PrototxtGenError(f"--collapse {args.collapse!r}: the expression needs a "
                                       "group, (...), naming the block")
        except re.error as exc:
            raise PrototxtGenError(f"--collapse {args.collapse!r}: {exc}") from None
    import importlib.util
    if importlib.util.find_spec("graphviz") is None:
        raise PrototxtGenError(f"render needs the graphviz package: {install_hint('render')}")
    net = load_for(args)
    from ..errors import NetError
    from ..view.drawing import render
    from ..layers.data import data_layer_note
    note = data_layer_note(net)
    if note:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    try:
        render(net, args.output, fmt=args.format, rankdir=args.rankdir, collapse=args.collapse)
    except NetError as exc:
        raise NetError(f"{args.net}: {exc}") from None
    return 0
