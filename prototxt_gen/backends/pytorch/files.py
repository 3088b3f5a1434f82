"""Files: the standalone .py with its state_dict, the torch.export program, reading a
state_dict safely, and a module's weights back into the net's Caffe blobs."""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch
from torch import nn

from ...errors import NetError, one_line
from ...graph.net import Net
from ...graph.shapes import infer
from ...limits import check_memory
from .codegen import _class_for, _source
from .exportable import TRACEABLE, make_traceable
from .module import _module
from .plan import plan


def save_python(net: Net, path: str | os.PathLike, *, fuse: bool = False,
                class_name: str | None = None) -> tuple[str, str]:
    """Write PATH (.py source) and its state_dict beside it (PATH with .pth); returns both
    paths. Both are written to temporary files first and renamed when complete."""
    from ...fileio import atomic_paths
    path = os.fspath(path)
    stem = path[:-3] if path.endswith(".py") else path
    weights = stem + ".pth"
    cls_name = _class_for(net, class_name)
    p = plan(net, fuse)
    model = _module(p, cls_name)
    source = _source(p, cls_name, os.path.basename(weights))
    with atomic_paths(path, weights) as (tmp_source, tmp_weights):
        with open(tmp_source, "w", encoding="utf-8") as f:
            f.write(source)
        torch.save(model.state_dict(), tmp_weights)
    return path, weights


def save_exported(net: Net, path: str | os.PathLike, *, fuse: bool = False,
                  class_name: str | None = None) -> None:
    """Write the module as a torch.export program whose batch (dimension 0 of every input) is
    free: loading it needs torch only (`torch.export.load(path).module()`). Where a layer
    ties the batch, the program is exported for the file's shapes, with a warning saying so."""
    from ...fileio import atomic_open
    cls_name = _class_for(net, class_name)
    p = plan(net, fuse)
    dynamic = [st.layer for st in p.statements if st.lowered.module is not None
               and getattr(st.lowered.module.cls, "data_dependent", False)
               and st.lowered.module.cls not in TRACEABLE]
    if dynamic:  # torch.export traces shapes; these layers' outputs depend on the values
        names = ", ".join(f"'{layer.name}' ({layer.type})" for layer in dynamic[:4])
        raise NetError(f"cannot export a .pt2 program: {names} take sizes or windows from "
                       "the values of the data, which torch.export cannot trace; use --to "
                       "python (the module runs eagerly) or --to onnx")
    # Export keeps the module's weights, and saving copies a tensor at a time (measured: 3x
    # one 400 MB layer; 1.2-1.25x the weights of a ResNet-152 or a Wide ResNet-101, beyond
    # the 340 MB torch.export itself takes). Tops are traced as fake tensors: only the example
    # inputs are real, at a batch of up to 3 where the file says 1 (_export_dynamic).
    grow = max((3 / max(s[0], 1) if len(s) else 1 for _, _, s in p.inputs), default=1)
    check_memory(5 * p.new_weights // 4 + 2 * p.largest_new
                 + 4 * max(grow, 1) * sum(math.prod(s) for _, _, s in p.inputs),
                 "exporting (initial weights and example inputs)")
    model = _module(p, cls_name)
    if not model.input_names:
        raise NetError("the net declares no input")
    operators = make_traceable(model)
    program, reason = _export_dynamic(model)
    if program is None:  # a layer ties the batch size (a Reshape naming it, say)
        shapes = ", ".join("x".join(map(str, s)) for s in model.input_shapes)
        warnings.warn(f"{os.fspath(path)}: exported for the file's input shapes only "
                      f"({shapes}): the batch cannot vary ({reason})", stacklevel=2)
        with torch.no_grad():
            program = torch.export.export(
                model, tuple(torch.zeros(s) for s in model.input_shapes))
    with atomic_open(path) as f:
        torch.export.save(program, f)
    if operators:
        warnings.warn(f"{os.fspath(path)} calls {', '.join(operators)}: import "
                      "prototxt_gen.backends.pytorch before torch.export.load, which "
                      "registers them", stacklevel=2)


def _export_dynamic(model: nn.Module):
    """(program, None) with dimension 0 of every input free, or (None, why not). The example
    batch is never 1: torch.export specializes a size of 1 (or of any input dimension equal to
    another) and the program would then refuse every other batch. Several inputs are first
    given sizes of their own (Faster R-CNN's regions are not as many as its images), then,
    where a layer joins them, one batch."""
    declared = {s[0] for s in model.input_shapes if len(s)}
    ranked = [len(s) > 0 for s in model.input_shapes]
    tried = []
    for batch in sorted({max(2, b) for b in declared} | {3}):
        for shared in ([False, True] if sum(ranked) > 1 else [True]):
            sizes = [batch if shared else batch + k for k in range(len(ranked))]
            example = tuple(torch.zeros((n, *s[1:]) if len(s) else s)
                            for n, s in zip(sizes, model.input_shapes))
            dims = [torch.export.Dim("batch" if shared else f"batch{k}", min=1)
                    for k in range(len(ranked))]
            dynamic = tuple({0: d} if r else None for d, r in zip(dims, ranked))
            try:
                with torch.no_grad():
                    return torch.export.export(model, example, dynamic_shapes=dynamic), None
            except Exception as exc:  # noqa: BLE001 - torch raises many kinds; reason kept
                if shared:  # the reason that matters: even one batch for all fails
                    tried.append(one_line(str(exc).strip().splitlines()[0] if str(exc).strip()
                                          else type(exc).__name__, 200))
    return None, tried[0]


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict file (torch.save), read without running pickled code."""
    from ...fileio import open_input
    with open_input(path, "state_dict file") as f:
        head = f.read(4)
        f.seek(0)
        if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save: zip, or a pickle
            raise NetError(f"{path}: not a file saved by torch.save")
        try:
            state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception:
            raise NetError(f"{path}: holds objects other than tensors (only a plain "
                           "state_dict loads safely)") from None
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise NetError(f"{path}: holds a {type(state).__name__}, not a state_dict of tensors")
    return state


def state_to_blobs(net: Net, state: dict[str, torch.Tensor] | nn.Module) -> Net:
    """Give each layer of `net` the blobs held in a module's state_dict (ours, or any with the
    same structure: keys are '<sanitized layer name>.<tensor>'), in Caffe's layouts; returns
    `net` for write_caffemodel."""
    if isinstance(state, nn.Module):
        if getattr(state, "fused", False):
            raise NetError("a fused module no longer matches the prototxt's layers; convert "
                           "without --fuse to write weights back")
        state = state.state_dict()
    p = plan(net)
    shapes = {s.layer.name: s.blobs for s in infer(net)}
    missing = []
    for st in p.statements:
        if not st.lowered.blob_keys:
            continue
        blobs = []
        for k, key in enumerate(st.lowered.blob_keys):
            if isinstance(key, np.ndarray):
                blobs.append(key)
                continue
            name, transform = key
            full = f"{st.attr}.{name}"
            if full not in state:
                missing.append(full)
                continue
            arr = state[full].detach().to("cpu", torch.float32).contiguous().numpy()
            arr = transform(arr) if transform else arr
            want = shapes[st.layer.name][k]
            if arr.size != math.prod(want):
                raise NetError(f"state_dict entry '{full}' has {arr.size} values, layer "
                               f"'{st.layer.name}' "
                               f"blob {k} needs shape {'×'.join(map(str, want))}")
            blobs.append(arr.reshape(want))
        st.layer.blobs = blobs
    if missing:
        raise NetError(f"the state_dict lacks {len(missing)} tensor(s) the net needs: "
                       + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    return net
