"""Netscope-style pictures of a network through Graphviz: a top-to-bottom DAG with one node per
layer, in-place layers (BatchNorm, Scale, ReLU...) merged into the node of the layer whose output
they rewrite, colours by layer family with a legend, the key parameters in each node and the blob
shapes on the edges. With `collapse`, one node per block (residual unit, inception module),
chosen by layer-name prefix.

Building the DOT text needs only the `graphviz` Python package; turning it into SVG, PNG or PDF
needs Graphviz's `dot` program.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import OutputError, escape_controls
from ..graph.net import Layer, Net, net_inputs
from ..graph.shapes import LayerShapes, ShapeMismatch, infer
from ..registry import FAMILIES, LABELS

# family -> fill colour, in legend order: Netscope's palette, extended. Each layer type names its
# family where it is declared (prototxt_gen/layers, registry.draw).
PALETTE: dict[str, str] = {
    "convolution": "#8ec7ee", "pooling": "#f6b26b", "inner product": "#b4a7d6",
    "normalization": "#b6d7a8", "activation": "#ea9999", "elementwise / concat": "#ffe599",
    "data": "#cccccc", "loss / output": "#d5a6bd", "detection": "#f4cccc", "resize": "#a2c4c9",
}
OTHER = ("other", "#ffffff")
FORMATS = ("svg", "png", "pdf", "dot", "html")


def family(layer_type: str) -> tuple[str, str]:
    """(family name, colour) of a layer type."""
    name = FAMILIES.get(layer_type)
    return (name, PALETTE[name]) if name in PALETTE else OTHER


@dataclass
class Node:
    id: str
    name: str
    type: str
    params: list[str] = field(default_factory=list)     # key parameters, one per line
    merged: list[tuple[str, str]] = field(default_factory=list)  # in-place (name, type)
    layers: list[str] = field(default_factory=list)     # every Caffe layer it stands for
    block: bool = False                                  # a collapsed block of layers
    outputs: list[tuple[str, tuple | None]] = field(default_factory=list)  # (blob, shape)
    members: list["Node"] = field(default_factory=list)  # a block's layer nodes

    @property
    def family(self) -> tuple[str, str]:
        return family(self.type)


@dataclass
class Edge:
    src: str
    dst: str
    blob: str
    shape: tuple[int, ...] | None  # None where shape inference cannot know it (Data layers)


@dataclass
class Picture:
    """The graph as drawn: nodes and edges (between node ids)."""
    name: str
    nodes: list[Node]
    edges: list[Edge]


def picture(net: Net, collapse: bool | str = False) -> Picture:
    """The drawn graph of `net`. collapse=True groups layers into blocks by name (see
    block_of); a string is a regular expression whose first group names a layer's block."""
    shapes = infer(net, partial=True)
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    producer: dict[str, str] = {}  # blob -> node holding its current value
    for name, shape in net_inputs(net):
        if any(layer.type == "Input" and name in layer.top for layer in net.layers):
            continue
        nodes[_id("input", name)] = Node(_id("input", name), name, "Input",
                                         [_dims(shape)], layers=[])
        producer[name] = _id("input", name)
    for s in shapes:
        layer = s.layer
        if layer.in_place and layer.bottom[0] in producer:
            node = nodes[producer[layer.bottom[0]]]
            node.merged.append((layer.name, layer.type))
            node.layers.append(layer.name)
            continue
        node = Node(_id("layer", layer.name), layer.name, layer.type, key_params(layer, s),
                    layers=[layer.name])
        if layer.type == "Input":
            node.params = [_dims(t) for t in s.tops]
        node.outputs = [(t, shape) for t, shape in zip(layer.top, s.tops)]
        nodes[node.id] = node
        for blob, shape in zip(layer.bottom, s.bottoms):
            if blob in producer:
                edges.append(Edge(producer[blob], node.id, blob,
                                  None if shape is None else tuple(shape)))
        for blob in layer.top:
            producer[blob] = node.id
    pic = Picture(net.name, list(nodes.values()), edges)
    if collapse:
        pic = _collapse(pic, collapse if isinstance(collapse, str) else None)
    return pic


def _id(kind: str, name: str) -> str:
    return f"{kind}:{name}"


_RESNET = re.compile(r"^(?:res|bn|scale)(\d+[a-z]+\d*)(?:_|$)")


def block_of(layer_name: str, pattern: str | None = None) -> str | None:
    """The block a layer belongs to, or None: with `pattern`, its first group; else the
    name's first path component ("inception_3a/1x1" -> "inception_3a") or, for MSRA's ResNet
    names, the unit ("res2a_branch2a", "bn2a_branch1", "res2a_relu" -> "res2a")."""
    if pattern is not None:
        m = re.search(pattern, layer_name)
        return m.group(1) if m and m.groups() and m.group(1) else None
    if "/" in layer_name:
        return layer_name.split("/", 1)[0]
    m = _RESNET.match(layer_name)
    return f"res{m.group(1)}" if m else None


def _collapse(pic: Picture, pattern: str | None) -> Picture:
    def block(node: Node) -> str | None:
        blocks = {block_of(name, pattern) for name in node.layers} - {None}
        return next(iter(blocks)) if len(blocks) == 1 and node.layers else None

    size: dict[str, int] = {}
    for node in pic.nodes:
        size[block(node)] = size.get(block(node), 0) + 1
    nodes: dict[str, Node] = {}
    where: dict[str, str] = {}
    for node in pic.nodes:
        key = block(node)
        if key is None or size[key] == 1:  # a block of one node stays that node
            nodes[node.id] = node
            where[node.id] = node.id
            continue
        bid = _id("block", key)
        if bid not in nodes:
            nodes[bid] = Node(bid, key, "", layers=[], block=True)
        nodes[bid].layers += node.layers
        where[node.id] = bid
    for node in nodes.values():
        if not node.block:
            continue
        members = node.members = [orig for orig in pic.nodes if where[orig.id] == node.id]
        types: dict[str, int] = {}
        for orig in members:
            types[orig.type] = types.get(orig.type, 0) + 1
        in_place = sum(len(orig.merged) for orig in members)
        # Coloured as its most frequent layer type (a residual unit: convolution).
        node.type = max(types, key=lambda t: (t != "Split", types[t]))
        node.params = [f"block of {len(node.layers)} layers",
                       ", ".join(f"{n} {t}" for t, n in sorted(types.items(),
                                                             key=lambda kv: -kv[1]))
                       + (f" + {in_place} in place" if in_place else "")]
    edges, seen = [], set()
    for e in pic.edges:
        src, dst = where[e.src], where[e.dst]
        if src == dst or (src, dst, e.blob) in seen:
            continue
        seen.add((src, dst, e.blob))
        edges.append(Edge(src, dst, e.blob, e.shape))
    return Picture(pic.name, list(nodes.values()), edges)


def key_params(layer: Layer, s: LayerShapes) -> list[str]:
    """What Netscope shows inside a node (kernel/stride/pad/group, the output count...), as
    the layer type labels itself."""
    lines = LABELS.get(layer.type)
    try:
        return lines(layer, s) if lines else []
    except ShapeMismatch:  # parameters the layer's shape rule refuses too: no label
        return []


def _dims(shape) -> str:
    """A blob's shape as Netscope labels it: without the batch (256×56×56); "" if unknown."""
    if shape is None:
        return ""
    shape = tuple(shape)
    shown = shape[1:] if len(shape) >= 2 else shape
    return "×".join(map(str, shown)) if shown else "scalar"


# -- DOT ------------------------------------------------------------------------------------------

def to_dot(net: Net, *, rankdir: str = "TB", collapse: bool | str = False) -> str:
    """The Graphviz DOT source of the picture (no `dot` program needed). Every name from the
    net is quoted by dot_string, so none can end a string, start an HTML label or expand
    Graphviz's \\N-style escapes."""
    pic = picture(net, collapse)
    out = [f"digraph {dot_string(pic.name or 'net')} {{"]

    def stmt(head: str, attrs: dict[str, str], indent: str = "\t") -> None:
        out.append(f"{indent}{head} [" + " ".join(f"{k}={dot_string(v)}"
                                                   for k, v in attrs.items()) + "]")

    stmt("graph", {"rankdir": rankdir, "fontname": "Helvetica", "nodesep": "0.25",
                   "ranksep": "0.35", "label": pic.name, "labelloc": "t"})
    stmt("node", {"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                  "fontsize": "11", "penwidth": "0.8"})
    stmt("edge", {"fontname": "Helvetica", "fontsize": "9", "color": "#555555",
                  "arrowsize": "0.6"})
    used: dict[str, str] = {}
    # DOT ids are plain (n0, n1...: Caffe names may hold ':' which DOT reads as a port); the
    # SVG element of each node gets our id (`input:data`, `layer:conv1`, `block:res2a`).
    dot_id = {node.id: f"n{k}" for k, node in enumerate(pic.nodes)}
    for node in pic.nodes:
        fam, colour = node.family
        used[fam] = colour
        lines = [node.name] + ([] if node.block else [node.type]) + node.params
        lines += [f"{name} ({t})" for name, t in node.merged]
        stmt(dot_id[node.id], {"label": lines, "class": _css(fam), "fillcolor": colour,
                               "id": node.id, "tooltip": _tooltip(node)})
    for e in pic.edges:
        stmt(f"{dot_id[e.src]} -> {dot_id[e.dst]}",
             {"label": _dims(e.shape), "tooltip": f"{e.blob}: {_dims(e.shape) or 'shape unknown'}"})
    out.append("\tsubgraph cluster_legend {")
    stmt("graph", {"color": "#999999", "fontsize": "10", "label": "legend", "style": "rounded"},
         "\t\t")
    order = [f for f in list(PALETTE) + [OTHER[0]] if f in used]
    for k, fam in enumerate(order):
        stmt(f"legend{k}", {"label": fam, "class": "legend", "fillcolor": used[fam],
                            "fontsize": "9", "id": f"legend:{fam}"}, "\t\t")
    for k in range(len(order) - 1):
        stmt(f"legend{k} -> legend{k + 1}", {"style": "invis"}, "\t\t")
    out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


_DOT_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|-?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)")
_DOT_KEYWORDS = {"node", "edge", "graph", "digraph", "subgraph", "strict"}


def dot_string(value: str | list[str]) -> str:
    """A DOT double-quoted string that shows `value` literally (a list: one line each).
    Backslashes and quotes are escaped, so Graphviz's escapes (\\N, \\l...) and HTML labels
    never apply; control and separator characters are shown as escapes."""
    if isinstance(value, str) and _DOT_ID.fullmatch(value) and value.lower() not in _DOT_KEYWORDS:
        return value
    lines = value if isinstance(value, list) else [value]
    body = "\\n".join(escape_controls(line).replace("\\", "\\\\").replace('"', '\\"')
                       for line in lines)
    return f'"{body}"'


def _css(name: str) -> str:
    return re.sub(r"[^a-z]+", "-", name)


def _tooltip(node: Node) -> list[str]:
    """What hovering a node shows: every layer it stands for, with its parameters, the
    in-place layers after it and its output shapes; one line each."""
    if node.block:
        return [f"{node.name}: {node.params[0]}"] + [_tooltip(m)[0] for m in node.members]
    return ["; ".join([f"{node.name} ({node.type})"] + node.params
                     + [f"{name} ({t})" for name, t in node.merged]
                     + [f"→ {blob} {_dims(shape) or '?'}" for blob, shape in node.outputs])]


def dot_pipe(source: str, fmt: str) -> bytes:
    """Run Graphviz's dot on DOT source."""
    import graphviz
    try:
        return graphviz.Source(source).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise OutputError(f"rendering {fmt} needs Graphviz's dot program (Debian/Ubuntu: "
                          "apt-get install graphviz); .dot output works without it") from None
    except graphviz.CalledProcessError as exc:
        first = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise OutputError(f"dot failed: {first[0] if first else exc}") from None
