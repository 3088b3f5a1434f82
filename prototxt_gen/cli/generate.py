"""`prototxt-gen MODEL` (generation from a template or spec), `solver` and `list`."""
from __future__ import annotations

import argparse
from typing import Sequence

from .. import __version__
from ..errors import PrototxtGenError
from .args import PROG, Parser, shape_arg, iterations, positive, number, natural_key, emit


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
       {PROG} bench NET [options]      time its forward pass (PyTorch or onnxruntime)
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


def _generate_parser() -> argparse.ArgumentParser:
    from ..graph.net import INPUT_STYLES
    from ..proto.prototxt import LAYOUTS
    p = Parser(prog=PROG, usage=USAGE, epilog=EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Generate Caffe network definitions (prototxt) from declarative "
                            "block specs.")
    p.add_argument("model", nargs="?", help="built-in model name (see 'list')")
    p.add_argument("--spec", metavar="FILE", help="build from this TOML spec instead")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write here (atomically) instead of standard output")
    p.add_argument("--input-shape", type=shape_arg, metavar="N,C,H,W",
                   help="input blob shape (default: the spec's, 1,3,224,224 for ResNets)")
    p.add_argument("--num-classes", type=positive, metavar="K",
                   help="classifier outputs (default: the spec's, 1000)")
    p.add_argument("--output-stride", type=positive, metavar="S",
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
    p.add_argument("--batch-size", type=positive, metavar="N",
                   help="with --phase train: TRAIN batch (default 32)")
    p.add_argument("--test-batch-size", type=positive, metavar="N",
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
    from ..build.generator import generate, resolve_spec
    from ..build.spec import load_spec
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
        from ..build.training import DataOptions, options, train_val
        data = options(DataOptions, spec.train, {k: getattr(args, k) for k in (
            "train_source", "test_source", "batch_size", "test_batch_size")})
        net = train_val(net, data)
        text = net.to_prototxt(args.layout or "modern")
    elif train_only:
        raise PrototxtGenError(f"{train_only[0]} only applies to --phase train")
    else:
        text = net.to_prototxt(args.layout or spec.layout,
                               args.input_style or (None if args.layout else spec.input_style))
    emit(text, args.output)
    return 0


SOLVER_EXAMPLES = f"""\
examples:
  {PROG} resnet50 --phase train -o train_val.prototxt
  {PROG} solver --net train_val.prototxt -o solver.prototxt
      SGD, momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 150k, 300k, 450k
  {PROG} solver --lr-policy poly --power 1 --max-iter 300000 --base-lr 0.05"""


def cmd_solver(argv: Sequence[str]) -> int:
    from ..build.training import SolverOptions
    d = SolverOptions()
    p = Parser(prog=f"{PROG} solver", epilog=SOLVER_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Write a Caffe solver.prototxt (SGD with momentum) for a train_val "
                            "net. Values come from the options, else the model's [solver] "
                            "table, else the defaults shown.")
    p.add_argument("model", nargs="?", help="a built-in model whose spec's [solver] to use")
    p.add_argument("--spec", metavar="FILE", help="... or a spec file's")
    p.add_argument("--net", help=f"the train_val prototxt (default {d.net})")
    p.add_argument("--base-lr", type=number, help=f"default {d.base_lr}")
    p.add_argument("--lr-policy", choices=("multistep", "poly"),
                   help=f"default {d.lr_policy}")
    p.add_argument("--stepvalue", type=iterations, metavar="I,J,...",
                   help="multistep: iterations that divide the rate (default "
                        f"{','.join(map(str, d.stepvalue))})")
    p.add_argument("--gamma", type=number, help=f"multistep: the factor (default {d.gamma})")
    p.add_argument("--power", type=number, help=f"poly: the exponent (default {d.power})")
    p.add_argument("--max-iter", type=positive, help=f"default {d.max_iter}")
    p.add_argument("--momentum", type=number, help=f"default {d.momentum}")
    p.add_argument("--weight-decay", type=number, help=f"default {d.weight_decay}")
    p.add_argument("--test-iter", type=positive, help=f"default {d.test_iter}")
    p.add_argument("--test-interval", type=positive, help=f"default {d.test_interval}")
    p.add_argument("--snapshot", type=positive, help=f"default {d.snapshot}")
    p.add_argument("--snapshot-prefix", help=f"default {d.snapshot_prefix}")
    p.add_argument("--solver-mode", choices=("GPU", "CPU"), type=str.upper,
                   help=f"default {d.solver_mode}")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    args = p.parse_args(argv)
    from ..proto.prototxt import format_message
    from ..build.training import options, solver
    spec_values = {}
    if args.spec or args.model:
        from ..build.generator import resolve_spec
        from ..build.spec import load_spec
        if args.spec and args.model:
            raise PrototxtGenError("give a model name or --spec FILE, not both")
        spec_values = (load_spec(args.spec) if args.spec else resolve_spec(args.model)).solver
    given = {k: v for k, v in vars(args).items() if k not in ("output", "model", "spec")}
    emit(format_message(solver(options(SolverOptions, spec_values, given))), args.output)
    return 0


def cmd_list(argv: Sequence[str]) -> int:
    p = Parser(prog=f"{PROG} list", description="List the built-in models.")
    p.parse_args(argv)
    from ..build.catalog import describe_templates
    rows = sorted(describe_templates(), key=lambda r: natural_key(r[0]))
    width = max((len(name) for name, _ in rows), default=0)
    emit("".join(f"{name:<{width}}  {desc}\n" for name, desc in rows), None)
    return 0
