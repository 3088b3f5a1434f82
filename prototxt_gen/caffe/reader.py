"""Reading Caffe network definitions as users have them: any year's syntax, any fork's fields.

read_prototxt: text → tolerant parse (textproto) → Caffe's upgrades (upgrade) → phase filter →
graph check → Net, with one warning per kind of fork field that was mapped or ignored.
read_net adds weights from a .caffemodel.
"""
from __future__ import annotations

import os

from ..errors import NetError
from ..fileio import read_input
from ..graph.net import Net
from ..proto.textproto import Unknown, parse_net_text
from ..proto.upgrade import make_state, upgrade_net


def read_prototxt(source: str | os.PathLike, phase: str | None = None, *,
                  text: str | None = None, level: int | None = None,
                  stages: tuple[str, ...] | None = None) -> Net:
    """Read a network definition from a file (or from `text`, with `source` naming it in
    messages). `phase` picks the layers of TRAIN or TEST (default: the file's `state`, else
    TEST, as Caffe's Net constructor does)."""
    name = str(source)
    if text is None:
        data = read_input(source, "prototxt file")
        text = _decode(data, name)
    if not text.strip():
        raise NetError(f"{name}: the file is empty")
    parsed = parse_net_text(text, name)
    proto = parsed.message
    if not len(proto.layer) and not len(proto.layers):
        raise NetError(f"{name}: defines no layers (is it a network definition?)")
    try:
        up = upgrade_net(proto)
        extras = _extras(parsed.unknown)
        net = Net._from_upgraded(up, make_state(up.state, phase, level, stages), extras)
        net.warnings.extend(_warnings(parsed.unknown, name))
        net.check()
    except NetError as exc:
        raise NetError(f"{name}: {exc}") from None
    return net


def read_net(prototxt: str | os.PathLike, weights: str | os.PathLike | None = None,
             phase: str | None = None) -> Net:
    """A network and, if given, its trained weights (see caffemodel.load_weights)."""
    net = read_prototxt(prototxt, phase)
    if weights is not None:
        from .weights import load_weights
        load_weights(net, weights)
    return net


def _decode(data: bytes, name: str) -> str:
    if b"\x00" in data[:4096]:
        raise NetError(f"{name}: is a binary file, not prototxt text (a .caffemodel? give it "
                       "as the weights)")
    if data.startswith(b"\xef\xbb\xbf"):  # a byte-order mark, as Windows editors write
        data = data[3:]
    # Caffe's parser reads bytes: comments in other encodings (GBK in many forks' files) are
    # fine there, so they are here; the odd bytes are carried through and only a string
    # value that is not UTF-8 is an error.
    return data.decode("utf-8", "surrogateescape")


def _extras(unknown: list[Unknown]) -> dict[tuple[str, int], dict[str, list]]:
    """Fork fields inside layers, by the layer's place in the text, path relative to it."""
    out: dict[tuple[str, int], dict[str, list]] = {}
    for u in unknown:
        if u.layer is None:
            continue
        rel = u.path.split(".", 1)[1]
        values = out.setdefault((u.container, u.layer), {}).setdefault(rel, [])
        values.extend(u.value if isinstance(u.value, list) else [u.value])
    return out


def _warnings(unknown: list[Unknown], name: str) -> list[str]:
    """One warning per unknown field (by message type and name), at its first place."""
    groups: dict[tuple[str, str], list[Unknown]] = {}
    for u in unknown:
        groups.setdefault((u.message, u.path.rsplit(".", 1)[-1]), []).append(u)
    out = []
    for items in groups.values():
        u = items[0]
        path = u.path.split(".", 1)[1] if u.layer is not None else u.path
        times = f" ({len(items)} places)" if len(items) > 1 else ""
        owner = u.message.split(".")[-1]
        if u.mapped_to:
            what = f"read as {u.mapped_to}"
        elif u.layer is not None and "." not in path:
            what = "kept for fork layer implementations (layer.extra)"
        else:
            what = "ignored"
        out.append(f"{name}:{u.line}:{u.column}: {path}: {owner} has no such field in BVLC "
                   f"Caffe (a fork's); {what}{times}")
    return out
