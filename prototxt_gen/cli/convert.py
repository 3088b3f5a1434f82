"""`prototxt-gen convert`: to PyTorch (program or .py), ONNX or .caffemodel."""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

from ..errors import PrototxtGenError
from .args import PROG, Parser, file_output, net_argument, net_options, require
from .nets import load_for


CONVERT_EXAMPLES = f"""\
examples:
  {PROG} convert deploy.prototxt --weights model.caffemodel --to python -o model.py
      model.py: a plain nn.Module class needing only torch; model.pth: its state_dict
  {PROG} convert deploy.prototxt --weights model.caffemodel --to pytorch -o model.pt2 --fuse
      a torch.export program (dynamic batch): torch.export.load("model.pt2").module()
      (SSD's DetectionOutput, ROIPooling: import prototxt_gen.backends.pytorch first)
  {PROG} convert deploy.prototxt --state-dict tuned.pth --to caffemodel -o tuned.caffemodel
      PyTorch weights (from model.pth, or any state_dict of that structure) back to Caffe
  {PROG} convert resnet50_v2 --checkpoint resnet_v2_50.ckpt --to caffemodel -o v2.caffemodel
      TF-slim's resnet_v2_50 checkpoint (or FaceNet's, into inception_resnet_v1), no
      TensorFlow needed
  {PROG} convert resnet50_tv --state-dict resnet50.pth --to caffemodel -o resnet50.caffemodel
      a torchvision ResNet/ResNeXt/Wide ResNet state_dict into the built-in model of its
      layout (resnet18_tv ... resnet152_tv, resnext50_32x4d, wide_resnet50_2, ...)
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
    p = Parser(prog=f"{PROG} convert", epilog=CONVERT_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Translate a Caffe network, with its weights, to PyTorch or "
                            "ONNX, or PyTorch weights back to a .caffemodel.")
    net_argument(p)
    p.add_argument("--to", required=True, choices=FORMATS,
                   help="pytorch: a torch.export program (.pt2); python: a standalone .py "
                        "module + its state_dict (.pth); onnx: an ONNX model; caffemodel: "
                        "Caffe weights")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write")
    p.add_argument("--weights", metavar="W.caffemodel", help="the trained weights")
    p.add_argument("--state-dict", metavar="FILE.pth",
                   help="PyTorch weights (a state_dict saved from a converted module, or "
                        "torchvision's for its ResNet family) instead of --weights")
    p.add_argument("--checkpoint", metavar="PREFIX",
                   help="weights from a TensorFlow checkpoint (PREFIX.index + PREFIX.data-*, "
                        "read without TensorFlow) into a net with TF-slim's scope names: "
                        "resnet50_v2 ... resnet200_v2 (slim's resnet_v2), inception_resnet_v1 "
                        "(FaceNet)")
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
    net_options(p)
    args = p.parse_args(argv)
    file_output(args.output, "convert")
    _check_convert_options(args)
    net = load_for(args)
    _load_weights(net, args)
    _require(args)
    state = None
    if args.state_dict:
        from ..backends.pytorch import load_state_dict
        state = load_state_dict(args.state_dict)
    from ..errors import OutputError
    had_weights = any(layer.blobs for layer in net.layers)  # a .caffemodel given as NET has
    try:
        _convert(net, args, state)
    except PrototxtGenError as exc:
        if isinstance(exc, OutputError):  # names the output already
            raise
        raise type(exc)(f"{args.net}: {exc}") from None
    if not args.weights and not args.state_dict and not args.checkpoint and not had_weights:
        kept = ("the model has placeholder weights (zeros; BatchNorm and Scale as identity)"
                if args.to == "onnx" else "the module keeps PyTorch's initial weights")
        print(f"{PROG}: warning: no --weights given: {kept}", file=sys.stderr)
    return 0


def _load_weights(net, args) -> None:
    """--weights (a caffemodel) or --checkpoint (TF-slim's, FaceNet's) into the net; a
    --state-dict is read after the optional packages are checked."""
    if args.weights:
        from ..caffe.weights import load_weights
        load_weights(net, args.weights, strict=True)
    elif args.checkpoint:
        from ..importers import Checkpoint, slim_blobs
        try:
            slim_blobs(net, Checkpoint(args.checkpoint), args.checkpoint)
        except PrototxtGenError as exc:
            raise type(exc)(f"{args.net}: {exc}") from None
    elif args.to == "caffemodel" and not args.state_dict:
        raise PrototxtGenError("--to caffemodel needs --weights, --state-dict or --checkpoint")


def _check_convert_options(args) -> None:
    """Options that the chosen --to cannot use, refused before anything is read."""
    onnx_only = [o for o, v in (("--opset", args.opset), ("--static-batch", args.static_batch),
                                ("--verify", args.verify)) if v]
    if onnx_only and args.to != "onnx":
        raise PrototxtGenError(f"{onnx_only[0]} only applies to --to onnx")
    given = [o for o, v in (("--weights", args.weights), ("--state-dict", args.state_dict),
                            ("--checkpoint", args.checkpoint)) if v]
    if len(given) > 1:
        raise PrototxtGenError(f"{given[0]} and {given[1]} both give the weights: choose one")
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
        require(module, extra, "--verify" if args.verify and module != "onnx"
                else f"--to {args.to}", what)


def _convert(net, args, state) -> None:
    if state is not None:  # PyTorch weights, for any format
        _blobs_from_state(net, state, args.state_dict)
    if args.to == "onnx":
        _convert_onnx(net, args)
    elif args.to == "caffemodel":
        from ..caffe.weights import write_caffemodel
        write_caffemodel(net, args.output)
    elif args.to == "python":
        from ..backends.pytorch import save_python
        save_python(net, args.output, fuse=args.fuse, class_name=args.class_name)
    else:
        from ..backends.pytorch import save_exported
        save_exported(net, args.output, fuse=args.fuse, class_name=args.class_name)


def _blobs_from_state(net, state, source) -> None:
    """A state_dict's weights into the net's layers: torchvision's names (a torchvision ResNet,
    ResNeXt or Wide ResNet into the built-in model of its layout), or our own modules'."""
    from ..importers import is_torchvision_state, torchvision_blobs
    if is_torchvision_state(state):
        import torch
        torchvision_blobs(net, {k: v.detach().to("cpu", torch.float32).numpy()
                                for k, v in state.items()}, source)
        return
    from ..backends.pytorch import state_to_blobs
    state_to_blobs(net, state)


def _convert_onnx(net, args) -> None:
    from ..graph.placeholders import fill_placeholders
    from ..backends.onnx import DEFAULT_OPSET, save_onnx, to_onnx
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
        from ..backends.verify import verify_onnx
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
