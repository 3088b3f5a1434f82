"""The analysis table (what Netscope's analyzer showed): per layer its type, output shape,
parameters, multiply-accumulates and activation memory, with totals and the reader's warnings.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from ..errors import one_line
from ..limits import format_bytes
from ..graph.net import Net
from ..graph.shapes import DATA_READERS, infer, macs
from ..layers.data import data_layer_note

BYTES_PER_VALUE = 4  # Caffe's float blobs


@dataclass
class LayerRow:
    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    output_shapes: list[list[int]]
    params: int            # learnable values (weights, biases, Scale/Bias/PReLU)
    batchnorm: int         # BatchNorm statistics (mean, variance, scale factor)
    macs: int
    memory: int            # bytes of new activations (0 for in-place layers)
    in_place: bool


@dataclass
class Analysis:
    name: str
    inputs: list[dict]
    layers: list[LayerRow]
    totals: dict
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    weights: dict | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def inputs_text(self) -> str:
        return ", ".join(f"{i['name']} {_shape(i['shape'])}" for i in self.inputs) or "none"

    def totals_text(self) -> str:
        t = self.totals
        return (f"learnable parameters {t['params']:,} ({format_bytes(t['params'] * 4)}), "
                f"BatchNorm statistics {t['batchnorm']:,}; {format_si(t['macs'])} MACs; "
                f"activations {format_bytes(t['memory'])}")

    def to_table(self) -> str:
        header = ("layer", "type", "output", "params", "MACs", "memory")
        # Names and types as one line each (a newline in a name would break the table).
        rows = [(one_line(r.name, 200) + (" *" if r.in_place else ""), one_line(r.type, 100),
                 ", ".join(_shape(s) for s in r.output_shapes),
                 format_count(r.params + r.batchnorm), format_count(r.macs),
                 format_bytes(r.memory) if r.memory else "-") for r in self.layers]
        t = self.totals
        rows.append(("total", f"{t['layers']} layers", "", format_count(t["params"] + t["batchnorm"]),
                     format_count(t["macs"]), format_bytes(t["memory"])))
        widths = [max(len(row[k]) for row in [header] + rows) for k in range(len(header))]
        right = {3, 4, 5}

        def line(row):
            cells = [c.rjust(w) if k in right else c.ljust(w)
                     for k, (c, w) in enumerate(zip(row, widths))]
            return "  ".join(cells).rstrip()

        out = [f"{one_line(self.name, 200) or '(unnamed net)'}: input {self.inputs_text()}", "", line(header),
               line(["-" * w for w in widths])]
        out += [line(r) for r in rows[:-1]]
        out += [line(["-" * w for w in widths]), line(rows[-1]), ""]
        out.append(self.totals_text()
                   + ("; * = in place" if any(r.in_place for r in self.layers) else ""))
        if self.weights is not None:
            w = self.weights
            out.append(f"weights {w['file']}: {len(w['loaded'])} layer(s) match"
                       + (f", {len(w['missing'])} missing" if w["missing"] else "")
                       + (f", {len(w['extra'])} extra" if w["extra"] else ""))
        for note in self.notes:
            out.append(f"note: {one_line(note)}")
        for warning in self.warnings:
            out.append(f"warning: {one_line(warning)}")
        return "\n".join(out) + "\n"


def analyze(net: Net, partial: bool = False) -> Analysis:
    """The analysis; with partial=True, layers whose shapes cannot be known (after a Data
    layer) get no output shape and count nothing, instead of stopping it."""
    rows = []
    for s in infer(net, partial=partial):
        layer = s.layer
        n = sum(math.prod(b) for b in s.blobs)
        bn = layer.type == "BatchNorm"
        known = all(t is not None for t in s.tops)
        rows.append(LayerRow(
            layer.name, layer.type, list(layer.bottom), list(layer.top),
            [list(t) for t in s.tops] if known else [], 0 if bn else n, n if bn else 0,
            macs(s) if known else 0,
            0 if layer.in_place or not known
            else sum(math.prod(t) for t in s.tops) * BYTES_PER_VALUE,
            layer.in_place))
    totals = {
        "layers": len(rows),
        "params": sum(r.params for r in rows),
        "batchnorm": sum(r.batchnorm for r in rows),
        "macs": sum(r.macs for r in rows),
        "memory": sum(r.memory for r in rows)
                  + sum(math.prod(i.shape) for i in net.inputs) * BYTES_PER_VALUE,
    }
    inputs = [{"name": i.name, "shape": list(i.shape)} for i in net.inputs]
    inputs += [{"name": top, "shape": shape, "layer": r.name} for r in rows
               if r.type in DATA_READERS and not r.bottoms
               for top, shape in zip(r.tops, r.output_shapes)]
    notes = list(net.notes)
    data = data_layer_note(net)
    if data:
        notes.append(data)
    return Analysis(net.name, inputs, rows, totals, list(net.warnings), notes)


def _shape(shape) -> str:
    return "×".join(map(str, shape)) if len(shape) else "scalar"


def format_count(n: int) -> str:
    return f"{n:,}" if n else "-"


def format_si(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(int(n))


