"""The `prototxt-gen` command.

Generating a network must stay fast and light: nothing here imports torch, onnx or numpy.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
import warnings
from typing import Callable, Sequence

from . import __version__
from .errors import NetError, PrototxtGenError, one_line
from .build.schema import INT_MAX

PROG = "prototxt-gen"

USAGE = f"""\
{PROG} MODEL [options]          write a built-in model's prototxt
       {PROG} --spec FILE [options]    write the network a TOML spec describes
       {PROG} list                     list the built-in models
       {PROG} info NET [options]       analyze a network (and check its weights)
       {PROG} convert NET --to FORMAT -o OUT [options]
                                       translate a network (and its weights) to PyTorch
                                       or ONNX
       {PROG} render NET -o OUT.svg|png|pdf|dot|html [options]
                                       draw a network (Graphviz)
       {PROG} solver [options]         write a solver.prototxt for a train_val net"""

EXAMPLES = f"""\
examples:
  {PROG} resnet50 > deploy.prototxt
      the original ResNet-50 deploy file, byte for byte
  {PROG} resnet101 --input-shape 8,3,448,448 --num-classes 10 -o r101.prototxt
      batch 8, 448x448 input (pooling adapts), a 10-way classifier named fc10
  {PROG} resnet18 --layout modern
      BVLC's current layout: 2-space indent, an Input layer
  {PROG} resnet101_v2 --output-stride 16 --features-only
      a DeepLab-style backbone: res5/block4 dilated instead of strided, no classifier
  {PROG} --spec my_resnet.toml -o my_resnet.prototxt
      your own network; start from a file in templates/

exit status: 0 success, 2 bad input or usage, 1 output could not be written, 70 internal
error (a bug: please report it)"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage dump
        self.exit(2, f"{PROG}: error: {message} (see '{PROG} --help')\n")


def _dims(text: str) -> tuple[int, ...]:
    """'1,3,224,224' (or 1x3x224x224) as integers; () if it is not that."""
    try:
        return tuple(int(p) for p in re.split(r"[,x×]", text.strip()))
    except ValueError:
        return ()


def _shape(text: str) -> tuple[int, ...]:
    dims = _dims(text)
    if len(dims) != 4 or any(not 1 <= d <= INT_MAX for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected N,C,H,W (four positive integers), got '{text}'")
    return dims


def _named_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """NAME=D1,D2,... (any blob, 1 to 8 dimensions) or N,C,H,W (the first input)."""
    name, eq, dims_text = text.rpartition("=")
    if not eq:
        return None, _shape(text)
    dims = _dims(dims_text)
    if not name or not 1 <= len(dims) <= 8 or any(not 1 <= d <= INT_MAX for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected NAME=N,C,H,W (a blob and up to 8 positive integers), got '{text}'")
    return name, dims


def _iterations(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not 1 <= v <= INT_MAX for v in values):
        raise argparse.ArgumentTypeError(f"expected iterations like 150000,300000, got '{text}'")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= INT_MAX:
        raise argparse.ArgumentTypeError(f"expected a positive integer (at most {INT_MAX}), "
                                         f"got '{text}'")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return value


def _generate_parser() -> argparse.ArgumentParser:
    from .graph.net import INPUT_STYLES
    from .proto.prototxt import LAYOUTS
    p = _Parser(prog=PROG, usage=USAGE, epilog=EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Generate Caffe network definitions (prototxt) from declarative "
                            "block specs.")
    p.add_argument("model", nargs="?", help="built-in model name (see 'list')")
    p.add_argument("--spec", metavar="FILE", help="build from this TOML spec instead")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write here (atomically) instead of standard output")
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W",
                   help="input blob shape (default: the spec's, 1,3,224,224 for ResNets)")
    p.add_argument("--num-classes", type=_positive, metavar="K",
                   help="classifier outputs (default: the spec's, 1000)")
    p.add_argument("--output-stride", type=_positive, metavar="S",
                   help="8, 16 or 32: the last feature map's stride; later strides become "
                        "dilation (atrous, as TF-slim does it)")
    p.add_argument("--no-global-pool", action="store_true",
                   help="no pooling before the classifier: a 1x1 conv gives dense predictions")
    p.add_argument("--features-only", action="store_true",
                   help="no classifier: end with the last stage's features")
    p.add_argument("--phase", choices=("deploy", "train"), type=str.lower, default="deploy",
                   help="train: a train_val prototxt (Data layers per phase, fillers, lr/decay "
                        "multipliers, SoftmaxWithLoss, top-1/top-5 Accuracy in TEST)")
    p.add_argument("--train-source", metavar="DB", help="with --phase train: the TRAIN "
                   "database (default train_lmdb)")
    p.add_argument("--test-source", metavar="DB", help="... and the TEST one (default val_lmdb)")
    p.add_argument("--batch-size", type=_positive, metavar="N",
                   help="with --phase train: TRAIN batch (default 32)")
    p.add_argument("--test-batch-size", type=_positive, metavar="N",
                   help="with --phase train: TEST batch (default 25)")
    p.add_argument("--input-style", choices=INPUT_STYLES,
                   help="how the input is declared: input_dim (input + 4 input_dim), "
                        "input_shape, or an Input layer (default: the layout's)")
    p.add_argument("--layout", choices=list(LAYOUTS),
                   help="; ".join(f"{k}: {v.description}" for k, v in LAYOUTS.items()))
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return p


def cmd_generate(argv: Sequence[str]) -> int:
    args = _generate_parser().parse_args(argv)
    from .build.generator import generate, resolve_spec
    from .build.spec import load_spec
    if args.spec and args.model:
        raise PrototxtGenError("give a model name or --spec FILE, not both")
    if not (args.spec or args.model):
        raise PrototxtGenError(f"no model given (try '{PROG} list' or '{PROG} --help')")
    spec = load_spec(args.spec) if args.spec else resolve_spec(args.model)
    if args.features_only and (args.no_global_pool or args.num_classes):
        raise PrototxtGenError("--features-only has no classifier: leave out "
                               + ("--no-global-pool" if args.no_global_pool else "--num-classes"))
    net = generate(spec, input_shape=args.input_shape, num_classes=args.num_classes,
                   output_stride=args.output_stride, global_pool=not args.no_global_pool,
                   features_only=args.features_only)
    train_only = [o for o, v in (("--train-source", args.train_source),
                                 ("--test-source", args.test_source),
                                 ("--batch-size", args.batch_size),
                                 ("--test-batch-size", args.test_batch_size)) if v]
    if args.phase == "train":
        from .build.training import DataOptions, options, train_val
        data = options(DataOptions, spec.train, {k: getattr(args, k) for k in (
            "train_source", "test_source", "batch_size", "test_batch_size")})
        net = train_val(net, data)
        text = net.to_prototxt(args.layout or "modern")
    elif train_only:
        raise PrototxtGenError(f"{train_only[0]} only applies to --phase train")
    else:
        text = net.to_prototxt(args.layout or spec.layout,
                               args.input_style or (None if args.layout else spec.input_style))
    _emit(text, args.output)
    return 0


SOLVER_EXAMPLES = f"""\
examples:
  {PROG} resnet50 --phase train -o train_val.prototxt
  {PROG} solver --net train_val.prototxt -o solver.prototxt
      SGD, momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 150k, 300k, 450k
  {PROG} solver --lr-policy poly --power 1 --max-iter 300000 --base-lr 0.05"""


def cmd_solver(argv: Sequence[str]) -> int:
    from .build.training import SolverOptions
    d = SolverOptions()
    p = _Parser(prog=f"{PROG} solver", epilog=SOLVER_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Write a Caffe solver.prototxt (SGD with momentum) for a train_val "
                            "net. Values come from the options, else the model's [solver] "
                            "table, else the defaults shown.")
    p.add_argument("model", nargs="?", help="a built-in model whose spec's [solver] to use")
    p.add_argument("--spec", metavar="FILE", help="... or a spec file's")
    p.add_argument("--net", help=f"the train_val prototxt (default {d.net})")
    p.add_argument("--base-lr", type=_number, help=f"default {d.base_lr}")
    p.add_argument("--lr-policy", choices=("multistep", "poly"),
                   help=f"default {d.lr_policy}")
    p.add_argument("--stepvalue", type=_iterations, metavar="I,J,...",
                   help="multistep: iterations that divide the rate (default "
                        f"{','.join(map(str, d.stepvalue))})")
    p.add_argument("--gamma", type=_number, help=f"multistep: the factor (default {d.gamma})")
    p.add_argument("--power", type=_number, help=f"poly: the exponent (default {d.power})")
    p.add_argument("--max-iter", type=_positive, help=f"default {d.max_iter}")
    p.add_argument("--momentum", type=_number, help=f"default {d.momentum}")
    p.add_argument("--weight-decay", type=_number, help=f"default {d.weight_decay}")
    p.add_argument("--test-iter", type=_positive, help=f"default {d.test_iter}")
    p.add_argument("--test-interval", type=_positive, help=f"default {d.test_interval}")
    p.add_argument("--snapshot", type=_positive, help=f"default {d.snapshot}")
    p.add_argument("--snapshot-prefix", help=f"default {d.snapshot_prefix}")
    p.add_argument("--solver-mode", choices=("GPU", "CPU"), type=str.upper,
                   help=f"default {d.solver_mode}")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    args = p.parse_args(argv)
    from .proto.prototxt import format_message
    from .build.training import options, solver
    spec_values = {}
    if args.spec or args.model:
        from .build.generator import resolve_spec
        from .build.spec import load_spec
        if args.spec and args.model:
            raise PrototxtGenError("give a model name or --spec FILE, not both")
        spec_values = (load_spec(args.spec) if args.spec else resolve_spec(args.model)).solver
    given = {k: v for k, v in vars(args).items() if k not in ("output", "model", "spec")}
    _emit(format_message(solver(options(SolverOptions, spec_values, given))), args.output)
    return 0


def cmd_list(argv: Sequence[str]) -> int:
    p = _Parser(prog=f"{PROG} list", description="List the built-in models.")
    p.parse_args(argv)
    from .build.catalog import describe_templates
    rows = sorted(describe_templates(), key=lambda r: _natural(r[0]))
    width = max((len(name) for name, _ in rows), default=0)
    _emit("".join(f"{name:<{width}}  {desc}\n" for name, desc in rows), None)
    return 0


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _file_output(output: str, command: str) -> None:
    """`-o -` means standard output for the text commands (generate, info, solver); the ones
    that write binary files, or several, need a file name."""
    if output == "-":
        raise PrototxtGenError(f"-o -: {command} writes files, not standard output; give a "
                               "file name")


def _emit(text: str, output: str | None) -> None:
    if output and output != "-":
        from .fileio import atomic_write
        atomic_write(output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


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
    p = _Parser(prog=f"{PROG} info", epilog=INFO_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Analyze a Caffe network: what Netscope's analyzer showed.")
    _net_argument(p)
    p.add_argument("--weights", metavar="W.caffemodel", help="check these weights against the net")
    p.add_argument("--format", choices=("table", "json"), default="table")
    _net_options(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    args = p.parse_args(argv)
    from .view.info import analyze
    net = _load_for(args)
    from .errors import NetError
    try:
        analysis = analyze(net)
    except NetError as exc:
        raise NetError(f"{args.net}: {exc}") from None
    report = None
    if args.weights:
        from .caffe.caffemodel import load_weights
        report = load_weights(net, args.weights, check_only=True)
        analysis.warnings += report.lines(args.weights) + report.mismatched
    if report is not None:
        analysis.weights = {"file": args.weights, "loaded": report.loaded,
                            "missing": report.missing, "extra": report.extra,
                            "mismatched": report.mismatched}
    _emit(analysis.to_json() if args.format == "json" else analysis.to_table(), args.output)
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


def _net_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="NET",
                   help="a prototxt file (any Caffe syntax), a .caffemodel, a TOML spec or a "
                        "built-in model")


def _net_options(p: argparse.ArgumentParser) -> None:
    """--phase and --input-shape, shared by the commands that read a net."""
    p.add_argument("--phase", choices=("TRAIN", "TEST"), type=str.upper,
                   help="which layers of a train_val file (default: the file's state, else TEST)")
    p.add_argument("--input-shape", type=_named_shape, action="append", default=[],
                   metavar="[NAME=]N,C,H,W",
                   help="the shape of input NAME (default: the first), or of a data layer's "
                        "top the file does not size; repeatable")


def _load_for(args):
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
    from .graph.net import net_inputs
    found = net_inputs(net)
    if found:
        return found[0][0]
    from .graph.shapes import DATA_READERS
    return next((layer.top[0] for layer in net.layers if not layer.bottom and layer.top
                 and layer.type in DATA_READERS), None)


def load_net(name: str, phase: str | None = None, prepare=None):
    """A net from a prototxt path, a .caffemodel, a TOML spec or a built-in model's name;
    `prepare(net)` (shapes the user gives) runs on it before anything needs its shapes."""
    from pathlib import Path
    path = Path(name)
    if path.suffix == ".caffemodel":
        from .caffe.caffemodel import read_caffemodel_net
        return read_caffemodel_net(path, phase, prepare=prepare)
    net = _net_from(name, path, phase)
    if prepare is not None:
        prepare(net)
    return net


def _net_from(name, path, phase):
    if path.suffix == ".toml":
        from .build.generator import generate
        return generate(path)
    if path.exists() or len(path.parts) > 1 or path.suffix:
        from .caffe.reader import read_prototxt
        return read_prototxt(path, phase)
    from .build.catalog import template_names
    if name in template_names():
        from .build.generator import generate
        return generate(name)
    from .caffe.reader import read_prototxt
    return read_prototxt(path, phase)  # reports the missing file


CONVERT_EXAMPLES = f"""\
examples:
  {PROG} convert deploy.prototxt --weights model.caffemodel --to python -o model.py
      model.py: a plain nn.Module class needing only torch; model.pth: its state_dict
  {PROG} convert deploy.prototxt --weights model.caffemodel --to pytorch -o model.pt2 --fuse
      a torch.export program (dynamic batch): torch.export.load("model.pt2").module()
  {PROG} convert deploy.prototxt --state-dict tuned.pth --to caffemodel -o tuned.caffemodel
      PyTorch weights (from model.pth, or any state_dict of that structure) back to Caffe
  {PROG} convert old_v1.prototxt --weights old_v1.caffemodel --to caffemodel -o new.caffemodel
      rewrite old (V1/V0) weights in today's layout
  {PROG} convert deploy.prototxt --weights model.caffemodel --to onnx -o model.onnx --verify
      ONNX (opset 17, dynamic batch), checked, and compared with the PyTorch translation
      by running onnxruntime on random input

exit status: 0 success, 2 bad input (unreadable net, weights that do not fit, layers with no
translation, over a resource limit), 1 output could not be written or failed --verify, 70
internal error"""

FORMATS = ("pytorch", "python", "onnx", "caffemodel")
OPSETS = range(13, 21)  # prototxt_gen.backends.onnx.OPSETS, without importing onnx to parse options


def _opset(text: str) -> int:
    if not text.isdigit() or int(text) not in OPSETS:
        raise argparse.ArgumentTypeError(f"must be {OPSETS[0]}-{OPSETS[-1]}, not {text!r}")
    return int(text)


def cmd_convert(argv: Sequence[str]) -> int:
    p = _Parser(prog=f"{PROG} convert", epilog=CONVERT_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Translate a Caffe network, with its weights, to PyTorch or "
                            "ONNX, or PyTorch weights back to a .caffemodel.")
    _net_argument(p)
    p.add_argument("--to", required=True, choices=FORMATS,
                   help="pytorch: a torch.export program (.pt2); python: a standalone .py "
                        "module + its state_dict (.pth); onnx: an ONNX model; caffemodel: "
                        "Caffe weights")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write")
    p.add_argument("--weights", metavar="W.caffemodel", help="the trained weights")
    p.add_argument("--state-dict", metavar="FILE.pth",
                   help="with --to caffemodel: PyTorch weights to write (a state_dict saved "
                        "from a converted module)")
    p.add_argument("--fuse", action="store_true",
                   help="fold BatchNorm/Scale into the convolution before them (inference)")
    p.add_argument("--class-name", metavar="NAME", help="the generated module's class name")
    p.add_argument("--opset", type=_opset, metavar="N",
                   help="with --to onnx: the ONNX opset, 13-20 (default 17)")
    p.add_argument("--static-batch", action="store_true",
                   help="with --to onnx: fix the batch size to the net's (default: dynamic)")
    p.add_argument("--verify", action="store_true",
                   help="with --to onnx: run the model with onnxruntime on random input and "
                        "compare it with the PyTorch translation before writing it")
    _net_options(p)
    args = p.parse_args(argv)
    _file_output(args.output, "convert")
    _check_convert_options(args)
    net = _load_for(args)
    if args.weights:
        from .caffe.caffemodel import load_weights
        load_weights(net, args.weights, strict=True)
    elif args.to == "caffemodel" and not args.state_dict:
        raise PrototxtGenError("--to caffemodel needs --weights or --state-dict")
    _require(args)
    state = None
    if args.state_dict:
        from .backends.pytorch import load_state_dict
        state = load_state_dict(args.state_dict)
    from .errors import OutputError
    had_weights = any(layer.blobs for layer in net.layers)  # a .caffemodel given as NET has
    try:
        _convert(net, args, state)
    except PrototxtGenError as exc:
        if isinstance(exc, OutputError):  # names the output already
            raise
        raise type(exc)(f"{args.net}: {exc}") from None
    if not args.weights and not args.state_dict and not had_weights:
        kept = ("the model has placeholder weights (zeros; BatchNorm and Scale as identity)"
                if args.to == "onnx" else "the module keeps PyTorch's initial weights")
        print(f"{PROG}: warning: no --weights given: {kept}", file=sys.stderr)
    return 0


def _check_convert_options(args) -> None:
    """Options that the chosen --to cannot use, refused before anything is read."""
    onnx_only = [o for o, v in (("--opset", args.opset), ("--static-batch", args.static_batch),
                                ("--verify", args.verify)) if v]
    if onnx_only and args.to != "onnx":
        raise PrototxtGenError(f"{onnx_only[0]} only applies to --to onnx")
    if args.state_dict and args.to != "caffemodel":
        raise PrototxtGenError("--state-dict only applies to --to caffemodel")
    if args.fuse and args.to == "caffemodel":
        raise PrototxtGenError("--fuse changes the layers, so it cannot write weights for the "
                               "prototxt; leave it out with --to caffemodel")


def _require(args) -> None:
    """The optional packages this conversion needs, or a one-line hint."""
    needs = []
    if args.to in ("pytorch", "python") or args.state_dict or args.verify:
        needs.append(("torch", "torch", "PyTorch"))
    if args.to == "onnx":
        needs.append(("onnx", "onnx", "onnx"))
    if args.verify:
        needs.append(("onnxruntime", "onnx", "onnxruntime"))
    for module, extra, what in needs:
        try:
            __import__(module)
        except ImportError:
            option = "--verify" if args.verify and module != "onnx" else f"--to {args.to}"
            raise PrototxtGenError(f"{option} needs {what}: {install_hint(extra)}") from None


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


def _convert(net, args, state) -> None:
    if args.to == "onnx":
        _convert_onnx(net, args)
    elif args.to == "caffemodel":
        from .caffe.caffemodel import write_caffemodel
        if state is not None:
            from .backends.pytorch import state_to_blobs
            state_to_blobs(net, state)
        write_caffemodel(net, args.output)
    elif args.to == "python":
        from .backends.pytorch import save_python
        save_python(net, args.output, fuse=args.fuse, class_name=args.class_name)
    else:
        from .backends.pytorch import save_exported
        save_exported(net, args.output, fuse=args.fuse, class_name=args.class_name)


def _convert_onnx(net, args) -> None:
    from .graph.placeholders import fill_placeholders
    from .backends.onnx import DEFAULT_OPSET, save_onnx, to_onnx
    opset = args.opset or DEFAULT_OPSET
    # Without weights, --verify checks the translation on random weights of realistic scale
    # (the placeholders make every output a constant); with them, the file itself.
    trial = net.copy() if args.verify else None  # before the placeholders go in
    bare = bool(fill_placeholders(net)) and args.verify
    report = []

    def translate(trial_net):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # said once, for the file
            return to_onnx(trial_net, opset=opset, fuse=args.fuse,
                           dynamic_batch=not args.static_batch).SerializeToString()

    def verify(model_path):  # before the file is renamed into place: a mismatch writes nothing
        from .backends.verify import verify_onnx
        batch = None if args.static_batch else 2  # a dynamic batch is checked as one
        report.append(verify_onnx(trial if bare else net, translate if bare else model_path,
                                  fuse=args.fuse, batch=batch))

    save_onnx(net, args.output, opset=opset, fuse=args.fuse,
              dynamic_batch=not args.static_batch, check_with=verify if args.verify else None)
    if report:
        import onnxruntime
        print(f"{PROG}: verified: onnxruntime {onnxruntime.__version__} agrees with the PyTorch "
              f"translation{' run in float64' if report[0].float64 else ''} {report[0]}",
              file=sys.stderr)


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
    p = _Parser(prog=f"{PROG} render", epilog=RENDER_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Draw a Caffe network the way Netscope did, with Graphviz.")
    _net_argument(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the file to write; its extension gives the format")
    p.add_argument("--format", choices=("svg", "png", "pdf", "dot", "html"),
                   help="the format, whatever the extension")
    p.add_argument("--rankdir", choices=("TB", "LR"), type=str.upper, default="TB",
                   help="top to bottom (default) or left to right")
    p.add_argument("--collapse", nargs="?", const=True, default=False, metavar="REGEX",
                   help="one node per block: by the name's first '/' component or MSRA's "
                        "ResNet unit names, or by REGEX's first group")
    _net_options(p)
    args = p.parse_args(argv)
    _file_output(args.output, "render")
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
    net = _load_for(args)
    from .errors import NetError
    from .view.drawing import render
    from .layers.data import data_layer_note
    note = data_layer_note(net)
    if note:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    try:
        render(net, args.output, fmt=args.format, rankdir=args.rankdir, collapse=args.collapse)
    except NetError as exc:
        raise NetError(f"{args.net}: {exc}") from None
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "list": cmd_list,
    "info": cmd_info,
    "convert": cmd_convert,
    "render": cmd_render,
    "solver": cmd_solver,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0]) if argv else None
    previous = _install_handlers()
    try:
        if command:
            return command(argv[1:])
        return cmd_generate(argv)
    except PrototxtGenError as exc:
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Python's docs recommend.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except _Terminated:
        return 143
    except Exception as exc:  # noqa: BLE001 -- the last resort: one line, never a traceback
        return _internal_error(exc)
    finally:
        _restore_handlers(previous)


INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): a bug of ours, not the user's input
DEBUG_VARIABLE = "PROTOTXT_GEN_DEBUG"


def _internal_error(exc: BaseException) -> int:
    """An exception nothing expected: one line naming it and where it came from (the
    traceback with PROTOTXT_GEN_DEBUG=1), exit 70."""
    import traceback
    if os.environ.get(DEBUG_VARIABLE):
        traceback.print_exception(exc)
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError)
                                        and "can't allocate memory" in str(exc)):  # torch's
        print(f"{PROG}: error: out of memory: the input asks for more than this machine has",
              file=sys.stderr)
        return 1
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:  # where it was raised and, if that is another library, the last place of ours
        where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} " \
                f"({frames[-1].name})"
        ours = [f for f in frames if os.sep + "prototxt_gen" + os.sep in f.filename]
        if ours and ours[-1] is not frames[-1]:
            where += f", from {os.path.basename(ours[-1].filename)}:{ours[-1].lineno} " \
                     f"({ours[-1].name})"
    detail = one_line(str(exc), 200)
    print(f"{PROG}: internal error: {type(exc).__name__}{': ' + detail if detail else ''}{where}"
          f" -- please report it (set {DEBUG_VARIABLE}=1 for the traceback)", file=sys.stderr)
    return INTERNAL_ERROR


class _Terminated(BaseException):
    """SIGTERM, raised where the program is, so that files being written are cleaned up as on
    Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {one_line(str(message))}", file=sys.stderr)


def _install_handlers():
    import signal
    import warnings
    previous = (warnings.showwarning, None)
    warnings.showwarning = _show_warning  # a library's warning is one line like ours
    try:
        previous = (previous[0], signal.signal(signal.SIGTERM, _on_sigterm))
    except ValueError:  # not the main thread: leave signals alone
        pass
    return previous


def _restore_handlers(previous) -> None:
    import signal
    import warnings
    warnings.showwarning = previous[0]
    if previous[1] is not None:
        signal.signal(signal.SIGTERM, previous[1])


if __name__ == "__main__":
    sys.exit(main())
