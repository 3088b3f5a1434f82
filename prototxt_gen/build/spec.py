"""Model specs: TOML files describing a network as input, stem, stages of blocks and head.

    name = "ResNet-50"
    description = "one line for `prototxt-gen list`"
    [input]   name = "data", shape = [1, 3, 224, 224]
    [output]  layout = "original" | "modern", input_style = "input_dim" | "input_shape" | "layer"
    [naming]  scheme = "kaiming", first_stage = 2, plus per-template overrides
    [stem]    kind = "resnet", then that kind's keys
    [[stage]] block = "bottleneck", units = 3, suffix = "letters" | "numbered" | "slim",
              stride_unit = "first" | "last", then the block's keys
    [head]    kind = "classifier", then that kind's keys
    [train]   train_val options (train_source, batch_size, mean_value...; see training.py)
    [solver]  solver options (base_lr, lr_policy, stepvalue, max_iter...)

Every table is checked against the keys its builder declares (blocks.py); a mistake stops with
one line naming the file, the key path and what was expected.
"""
from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kinds import BLOCKS, HEADS, STEMS, Kind
from ..errors import SpecError
from .naming import FIELDS, SCHEMES, Naming, make_naming
from ..graph.net import INPUT_STYLES
from ..proto.prototxt import LAYOUTS
from .schema import Key, boolean, check_table, choice, non_negative_int, positive_int, shape, show
from .schema import string as string_key

TABLES = ("input", "output", "naming", "stem", "stage", "head", "train", "solver")


@dataclass
class Part:
    """A stem or head: the builder kind and its checked keys."""

    kind: str
    params: dict[str, Any]


@dataclass
class Stage:
    block: str
    units: int
    suffix: str
    params: dict[str, Any]
    stride_unit: str = "first"  # which unit takes the stage's stride: "first" or "last"


@dataclass
class Spec:
    source: str
    name: str
    description: str
    input_name: str
    input_shape: tuple[int, ...]
    layout: str
    input_style: str
    conv_relu_top_first: bool
    naming: Naming
    first_stage: int
    stem: Part
    stages: list[Stage]
    head: Part
    train: dict[str, Any] = field(default_factory=dict)   # [train]: train_val options
    solver: dict[str, Any] = field(default_factory=dict)  # [solver]: solver options


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file."""
    from ..fileio import open_input
    path = Path(path)
    with open_input(path, "spec file", SpecError, missing="file") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_spec(text, str(path))


_TOML_POS = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$")


def _toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise SpecError(f"{source}: invalid TOML: arrays or tables nested too deep") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = _TOML_POS.match(message)
        if m:
            line, column, what = m.group(2), m.group(3), m.group(1)
            raise SpecError(f"{source}:{line}:{column}: invalid TOML: {what}") from None
        raise SpecError(f"{source}: invalid TOML: {message}") from None


def parse_spec(text: str, source: str = "<spec>") -> Spec:
    doc = _toml(text, source)
    top = check_table(doc, {"name": string_key(), "description": string_key("")}, source, "",
                      ignore=TABLES)
    for table in ("input", "stem", "stage", "head"):
        if table not in doc:
            header = "[[stage]]" if table == "stage" else f"[{table}]"
            raise SpecError(f"{source}: missing required table {header}")

    inp = check_table(doc["input"], {"name": string_key("data"), "shape": shape()}, source, "input")
    if len(inp["shape"]) != 4:
        raise SpecError(f"{source}: input.shape: expected 4 dimensions (N, C, H, W), "
                        f"got {show(list(inp['shape']))}")

    out = check_table(doc.get("output", {}), {
        "layout": choice(*LAYOUTS, default="modern"),
        "input_style": choice(*INPUT_STYLES, default=None),
        "conv_relu_top_first": boolean(False, "ReLUs after convs write top before bottom "
                                              "(the ResNet-101/152 release)"),
    }, source, "output")

    nam = check_table(doc.get("naming", {}), {
        "scheme": choice(*SCHEMES, default="kaiming"),
        "first_stage": non_negative_int(2),
        **{kind: string_key(None, "overrides the scheme's template") for kind in FIELDS},
    }, source, "naming")
    naming = make_naming(nam["scheme"], {k: nam[k] for k in FIELDS if nam[k] is not None},
                         source)

    stem = _part(doc["stem"], STEMS, source, "stem")
    head = _part(doc["head"], HEADS, source, "head")

    stage_list = doc["stage"]
    if not isinstance(stage_list, list) or not stage_list:
        raise SpecError(f"{source}: stage: expected one or more [[stage]] tables, "
                        f"got {show(stage_list)}")
    stages = [_stage(table, source, f"stage[{k}]") for k, table in enumerate(stage_list)]

    from .training import SOLVER_KEYS, TRAIN_KEYS
    train = check_table(doc.get("train", {}), TRAIN_KEYS, source, "train")
    solver = check_table(doc.get("solver", {}), SOLVER_KEYS, source, "solver")
    return Spec(source=source, name=top["name"], description=top["description"],
                input_name=inp["name"], input_shape=inp["shape"], layout=out["layout"],
                input_style=out["input_style"] or LAYOUTS[out["layout"]].input_style,
                conv_relu_top_first=out["conv_relu_top_first"], naming=naming,
                first_stage=nam["first_stage"], stem=stem, stages=stages, head=head,
                train=train, solver=solver)


def _stage(table: Any, source: str, path: str) -> Stage:
    kind = _kind(table, BLOCKS, "block", source, path)
    values = check_table(table, {
        "block": Key(lambda v: v, ""),
        "units": positive_int(),
        "suffix": choice("letters", "numbered", "slim", "number", default="letters"),
        "stride_unit": choice("first", "last", default="first",
                              doc='the unit that takes the stride: "first" (ResNet v1, '
                                  'torchvision) or "last" (TF-slim\'s ResNet v2)'),
        **kind.keys}, source, path)
    units, suffix = values.pop("units"), values.pop("suffix")
    stride_unit = values.pop("stride_unit")
    values.pop("block")
    if suffix == "letters" and units > len(string.ascii_lowercase):
        raise SpecError(f"{source}: {path}.units: {units} units cannot be named a-z; "
                        'use suffix = "numbered"')
    return Stage(kind.name, units, suffix, values, stride_unit)


def _kind(table: Any, registry: dict[str, Kind], key: str, source: str, path: str) -> Kind:
    if not isinstance(table, dict):
        raise SpecError(f"{source}: {path}: expected a table, got {show(table)}")
    if key not in table:
        raise SpecError(f"{source}: {path}: missing required key '{key}' "
                        f"(one of: {', '.join(registry)})")
    name = table[key]
    if not isinstance(name, str) or name not in registry:
        kind_word = "block kind" if key == "block" else f"{path} kind"
        raise SpecError(f"{source}: {path}.{key}: unknown {kind_word} {show(name)} "
                        f"(known: {', '.join(registry)})")
    return registry[name]


def _part(table: Any, registry: dict[str, Kind], source: str, path: str) -> Part:
    kind = _kind(table, registry, "kind", source, path)
    values = check_table(table, {"kind": Key(lambda v: v, ""), **kind.keys}, source, path)
    values.pop("kind")
    return Part(kind.name, values)
