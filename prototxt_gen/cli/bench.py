"""`prototxt-gen bench`: a net's forward pass timed in a back end, reported as the seed's
`time_tensorflow_run` does (mean ± sd per batch), plus images/s and, with --per-layer, each
layer's time and share as `caffe time` lists them."""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import warnings
from typing import Sequence

from ..errors import PrototxtGenError, one_line
from .args import PROG, Parser, emit, net_argument, net_options, require
from .nets import load_for

BENCH_EXAMPLES = f"""\
examples:
  {PROG} bench resnet152 --batch 32 --iterations 100
      the seed's benchmark: ResNet-152's forward pass, batch 32, mean ± sd over 100 batches
  {PROG} bench deploy.prototxt --weights model.caffemodel --backend onnxruntime --per-layer
      each layer's time and share of the total (onnxruntime's profiler)
  {PROG} bench resnet50 --fuse --compile --channels-last --threads 8 --format json
      the fastest PyTorch path, as JSON for scripts
  {PROG} bench resnet50 --device cuda --batch 64

exit status: 0 success, 2 bad input (unreadable net, weights that do not fit, an option this
machine cannot honour), 70 internal error"""


def _whole(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be {least} or more, not {value}")
        return value
    return parse


_positive, _count = _whole(1), _whole(0)


def cmd_bench(argv: Sequence[str]) -> int:
    p = Parser(prog=f"{PROG} bench", epilog=BENCH_EXAMPLES,
               formatter_class=argparse.RawDescriptionHelpFormatter,
               description="Time a network's forward pass in PyTorch or onnxruntime.")
    net_argument(p)
    p.add_argument("--weights", metavar="W.caffemodel",
                   help="the trained weights (default: placeholders; the timing is the same)")
    p.add_argument("--backend", choices=("pytorch", "onnxruntime"), default="pytorch")
    p.add_argument("--fuse", action="store_true",
                   help="fold BatchNorm/Scale into the convolutions first")
    p.add_argument("--compile", action="store_true",
                   help="pytorch: run the module through torch.compile")
    p.add_argument("--channels-last", action="store_true",
                   help="pytorch: the module and inputs in channels_last memory format")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="pytorch: compute in this type (bfloat16/float16 trade Caffe's "
                        "float32 results for speed: compare outputs before deploying)")
    p.add_argument("--batch", type=_positive, default=32, help="images per batch (32)")
    p.add_argument("--iterations", type=_positive, default=100, help="timed batches (100)")
    p.add_argument("--warmup", type=_count, default=10, help="untimed batches first (10)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--threads", type=_positive, metavar="N",
                   help="CPU threads for the back end (default: its own choice)")
    p.add_argument("--keep-memory", action="store_true",
                   help="have the C library keep freed memory for the next batch instead of "
                        "returning it to the system (glibc; large batches run much faster)")
    p.add_argument("--per-layer", action="store_true",
                   help="also each layer's mean time and share of the total")
    p.add_argument("--format", choices=("text", "json"), default="text")
    net_options(p)
    args = p.parse_args(argv)
    if args.backend != "pytorch" and (args.compile or args.channels_last
                                      or args.dtype != "float32"):
        raise PrototxtGenError("--compile, --channels-last and --dtype apply to --backend "
                               "pytorch")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise PrototxtGenError(f"--device must be cpu, cuda or cuda:N, not {args.device!r}")
    net = load_for(args)
    if args.weights:
        from ..caffe.weights import load_weights
        load_weights(net, args.weights, strict=True)
    result = _run(net, args)
    emit(json.dumps({"net": net.name, **result.as_dict()}, indent=1) + "\n"
         if args.format == "json" else _text(net, args, result), None)
    return 0


def _run(net, args):
    if args.backend == "pytorch":
        require("torch", "torch", "--backend pytorch")
    else:
        require("onnxruntime", "onnx", "--backend onnxruntime")
    from ..backends import bench
    if args.keep_memory and not bench.keep_freed_memory():
        raise PrototxtGenError("--keep-memory needs glibc's mallopt, which this system lacks")
    if args.backend == "pytorch":
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise PrototxtGenError("--device cuda: this PyTorch sees no CUDA device")
    progress = _progress(args.warmup + args.iterations)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a training net's inference view, said by info
            if args.backend == "pytorch":
                return bench.bench_pytorch(
                    net, batch=args.batch, iterations=args.iterations, warmup=args.warmup,
                    device=args.device, fuse=args.fuse, compile=args.compile,
                    channels_last=args.channels_last, dtype=args.dtype,
                    per_layer=args.per_layer, progress=progress)
            return bench.bench_onnxruntime(
                net, batch=args.batch, iterations=args.iterations, warmup=args.warmup,
                device=args.device, fuse=args.fuse, threads=args.threads,
                per_layer=args.per_layer, progress=progress)
    except PrototxtGenError as exc:
        raise type(exc)(f"{args.net}: {exc}") from None
    finally:
        if progress is not None:
            progress.close()


def _progress(total: int):
    """A progress bar on stderr when it is a terminal (and tqdm is installed); else None."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="batches", unit="batch", file=sys.stderr, leave=False)


def _text(net, args, r) -> str:
    path = "+".join([args.backend] + [o for o, v in (
        ("fused", args.fuse), ("compiled", args.compile),
        ("channels_last", args.channels_last), (args.dtype, args.dtype != "float32")) if v])
    threads = r.options.get("threads") or "default"
    memory = ", freed memory kept" if args.keep_memory else ""
    lines = [f"{one_line(net.name or str(args.net), 200)}: {path} on {args.device}, "
             f"{threads} threads, "
             f"batch {r.batch}, {r.warmup} warm-up batches{memory}",
             f"{datetime.datetime.now()}: Forward across {len(r.times)} steps, "
             f"{r.mean:.3f} +/- {r.sd:.3f} sec / batch",
             f"{r.images_per_s:.1f} images/s, {r.mean * 1000:.3f} ms / batch"]
    if r.per_layer:
        total = r.layer_total
        # the file's names, which may hold anything, printed as the info table prints them
        rows = [(one_line(n, 200), one_line(t, 100), s) for n, t, s in r.per_layer]
        width = max(len("layer"), *(len(n) for n, _, _ in rows))
        kinds = max(len("type"), *(len(t) for _, t, _ in rows))
        lines += ["", f"{'layer':<{width}}  {'type':<{kinds}}  {'forward ms':>10}  {'share':>6}"]
        lines += [f"{n:<{width}}  {t:<{kinds}}  {s * 1000:10.3f}  {s / total:6.1%}"
                  for n, t, s in rows]
        lines.append(f"{'total':<{width}}  {'':<{kinds}}  {total * 1000:10.3f}  {1:6.1%}")
        if args.backend == "onnxruntime":
            lines.append("(onnxruntime fuses BatchNorm, Scale and ReLU into the convolution "
                         "before them: their time is that layer's)")
    return "\n".join(lines) + "\n"
