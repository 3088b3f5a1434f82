"""Python code from a plan: the body of forward (and of the function that records every blob),
and the standalone .py file -- the net's class, with the Caffe-specific modules it uses and
any fork layer's own module class copied in."""
from __future__ import annotations

import builtins
import inspect
import keyword
import symtable
import textwrap

from ...errors import NetError, one_line, shown
from ...graph.net import Layer, Net
from .plan import Plan, Statement, plan, sanitize


def _statement_code(st: Statement) -> str:
    low = st.lowered
    expr = low.expr.format(*st.bottoms, m=f"self.{st.attr}" if st.attr else "")
    if not st.tops:
        return ""
    if len(st.tops) == 1:
        return f"{st.tops[0]} = {expr}"
    if low.tuple_out:
        return f"{', '.join(st.tops)} = {expr}"
    return " = ".join(st.tops) + f" = {expr}"


def _dead_after(p: Plan, steps: list[tuple[list[str], list[str]]]) -> list[list[str]]:
    """Variables to delete after each step (reads, writes): values nothing reads any more, so
    that activations are freed as in Caffe's memory reuse rather than held to the end."""
    live = {var for _, var in p.outputs}
    dead: list[list[str]] = [[] for _ in steps]
    for i in range(len(steps) - 1, -1, -1):
        bottoms, tops = steps[i]
        for var in tops:
            if var not in live:
                dead[i].append(var)
            live.discard(var)
        for var in dict.fromkeys(bottoms):
            if var not in live and var not in tops:
                dead[i].append(var)
            live.add(var)
    return dead


def forward_source(p: Plan, record: bool = False, timed: bool = False) -> str:
    """The body of forward (record=False) or of a function that returns every blob's final
    value by name (record=True); timed=True: forward calling `clock(layer name)` after each
    layer (per-layer timing, as `caffe time` reports it)."""
    args = ", ".join(["self"] + [var for _, var, _ in p.inputs])
    if timed:
        lines = [f"def _forward_timed({args}, clock):"]
        for st in p.statements:
            code = _statement_code(st)
            if code:
                lines.append(f"    {code}")
            lines.append(f"    clock({st.layer.name!r})")
        outs = [var for _, var in p.outputs]
        lines.append(f"    return ({''.join(v + ', ' for v in outs)})")
        return "\n".join(lines) + "\n"
    if record:
        lines = [f"def _forward_blobs({args}, names=None, by_layer=False):",
                 "    blobs, layers = {}, {}"]
        for b, var, _ in p.inputs:
            lines.append(f"    blobs[{b!r}] = {var}")
        for st in p.statements:
            code = _statement_code(st)
            if code:
                lines.append(f"    {code}")
            for name, var in zip(st.layer.top, st.tops):
                lines.append(f"    blobs[{name!r}] = {var}")
            lines.append(f"    layers[{st.layer.name!r}] = ({''.join(v + ', ' for v in st.tops)})")
        lines.append("    if by_layer:")
        lines.append("        return layers")
        lines.append("    return blobs if names is None else {n: blobs[n] for n in names}")
        return "\n".join(lines) + "\n"
    lines = [f"def forward({args}):"]
    codes, steps = [], []
    for k, st in enumerate(p.statements):
        if k in p.fast:  # its writes are the assignment's targets; none: the line is dropped
            fast = p.fast[k]
            code = fast.code()
            steps.append((st.bottoms, list(fast.targets)) if fast.targets else ([], []))
        else:
            code = _statement_code(st)
            steps.append((st.bottoms, st.tops))
        codes.append(code)
    for code, dead in zip(codes, _dead_after(p, steps)):
        if code:
            lines.append(f"    {code}")
        if dead:
            lines.append(f"    del {', '.join(dead)}")
    outs = [var for _, var in p.outputs]
    lines.append(f"    return {outs[0] if len(outs) == 1 else '(' + ', '.join(outs) + ')'}"
                 if outs else "    return None")
    return "\n".join(lines) + "\n"


def _class_for(net: Net, name: str | None) -> str:
    """The generated class's name: `name` if it is a Python identifier, else from the net's."""
    if name is None:
        return _class_name(net.name)
    if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise NetError(f"class name {shown(name)} is not a Python identifier")
    return name


def _class_name(name: str) -> str:
    parts = [p for p in sanitize(name or "CaffeNet").replace("-", "_").split("_") if p]
    ident = "".join(p[:1].upper() + p[1:] for p in parts) or "CaffeNet"
    return ident if not ident[0].isdigit() else "Net" + ident


def to_source(net: Net, *, fuse: bool = False, class_name: str | None = None,
              weights_file: str | None = None) -> str:
    """A self-contained Python file defining the network as a plain nn.Module (needs torch
    only). Load weights saved with save_python (or any state_dict of the same structure)."""
    cls_name = _class_for(net, class_name)
    return _source(plan(net, fuse), cls_name, weights_file)


def _copied_sources(p: Plan, cls_name: str) -> list[str]:
    """The source of every class the exported file defines besides the net's: the helpers of
    ops.py, and each class a registered converter brought (a fork layer's own module),
    copied when it needs nothing but torch and builtins -- else a NetError naming it."""
    sources = {h: inspect.getsource(h).rstrip() for h in p.helpers}
    foreign: dict[type, Layer] = {}
    for st in p.statements:
        for h in st.lowered.helpers + ((st.lowered.module.cls,) if st.lowered.module else ()):
            if h not in sources and not h.__module__.startswith("torch."):
                foreign.setdefault(h, st.layer)
    available = set(dir(builtins)) | {"torch", "nn", "F"} | {h.__name__ for h in sources} \
        | {h.__name__ for h in foreign}
    for cls, layer in foreign.items():
        where = f"layer '{layer.name}' ({layer.type}): class {cls.__qualname__} " \
                f"(from {cls.__module__})"
        try:
            source = textwrap.dedent(inspect.getsource(cls)).rstrip()
            missing = sorted(_global_names(source) - available)
        except (OSError, TypeError, SyntaxError):
            raise NetError(f"{where}: its source is not available to copy into the .py; use "
                           "--to pytorch, whose program needs no source") from None
        if missing or cls.__name__ == cls_name:
            why = (f"uses {', '.join(map(repr, missing))}, which the .py would lack" if missing
                   else "has the name of the exported class (give --class-name)")
            raise NetError(f"{where} {why}; use --to pytorch, whose program needs no source, "
                           "or make the class self-contained (torch, nn, F and builtins only)")
        sources[cls] = source
    return list(sources.values())


def _global_names(source: str) -> set[str]:
    """Names the source reads from its module's globals (not the ones it defines itself)."""
    table = symtable.symtable(source, "<class>", "exec")
    defined = {sym.get_name() for sym in table.get_symbols() if sym.is_assigned()
               or sym.is_imported()}
    used, todo = set(), [table]
    while todo:
        t = todo.pop()
        for sym in t.get_symbols():
            if sym.is_referenced() and (sym.is_global() or t is table):
                used.add(sym.get_name())
        todo.extend(t.get_children())
    return used - defined


def _source(p: Plan, cls_name: str, weights_file: str | None) -> str:
    from ... import __version__
    helpers = "".join("\n\n" + h + "\n" for h in _copied_sources(p, cls_name))
    init = [f"        self.{st.attr} = {st.lowered.module.source()}"
            for st in p.statements if st.attr]
    body = forward_source(p).replace("\n", "\n    ").rstrip() + "\n"
    load = _doc(weights_file or f"{cls_name.lower()}.pth")
    names = ", ".join(_doc(b) for b, _, _ in p.inputs)
    shape = ", ".join(map(str, p.inputs[0][2])) if p.inputs else ""
    return f'''"""{cls_name}: {_doc(p.name) or 'a Caffe network'} translated from Caffe by prototxt-gen {__version__}{' (BatchNorm/Scale fused)' if p.fused else ''}.

Needs only PyTorch. Inputs: {names or 'none'}; outputs: {', '.join(_doc(b) for b, _ in p.outputs)}.

    model = {cls_name}()
    model.load_state_dict(torch.load("{load}"))
    model.eval()
    out = model(torch.randn({shape}))
"""
import torch
import torch.nn.functional as F
from torch import nn
{helpers}


class {cls_name}(nn.Module):
    def __init__(self):
        super().__init__()
{chr(10).join(init) if init else "        pass"}

    {body}'''


def _doc(text: str) -> str:
    """A Caffe name as docstring text: it can neither end the docstring nor start an escape
    (backslashes and quotes escaped, line breaks and separators shown as escapes)."""
    return one_line(text, 200).replace("\\", "\\\\").replace('"', '\\"')
