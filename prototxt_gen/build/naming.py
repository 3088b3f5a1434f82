"""Layer naming: a scheme is a set of format strings, one per kind of layer a builder emits.

The "kaiming" scheme reproduces the 2016 ResNet release (conv1, bn_conv1, res2a_branch2a,
bn2a_branch2a, scale2a_branch2a, res2a_branch2a_relu, res2a, res2a_relu, pool5, fc1000, prob).
The "slim" scheme uses TF-slim's scopes (block1/unit_1/bottleneck_v2/conv1, .../conv1/BatchNorm,
postnorm, logits). A spec picks a scheme and may override single templates in its [naming]
table.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

from ..errors import SpecError, one_line, shown

# Placeholders each template may use.
FIELDS = {
    "stem_conv": (),
    "stem_bn": ("conv",),
    "stem_scale": ("conv",),
    "stem_pool": (),
    "conv": ("unit", "branch"),
    "bn": ("unit", "branch", "conv"),
    "scale": ("unit", "branch", "conv"),
    "relu": ("unit", "branch", "conv"),
    "add": ("unit",),
    "add_relu": ("unit",),
    "head_pool": ("stage",),
    "fc": ("num_classes",),
    "prob": (),
}

SCHEMES = {
    "kaiming": {
        "stem_conv": "conv1",
        "stem_bn": "bn_{conv}",
        "stem_scale": "scale_{conv}",
        "stem_pool": "pool1",
        "conv": "res{unit}_branch{branch}",
        "bn": "bn{unit}_branch{branch}",
        "scale": "scale{unit}_branch{branch}",
        "relu": "{conv}_relu",
        "add": "res{unit}",
        "add_relu": "res{unit}_relu",
        "head_pool": "pool{stage}",
        "fc": "fc{num_classes}",
        "prob": "prob",
    },
    # TF-slim's variable scopes (resnet_v2: block1/unit_1/bottleneck_v2/conv1/BatchNorm...),
    # without the model's own prefix, so that a checkpoint's variables map onto layers by name.
    "slim": {
        "stem_conv": "conv1",
        "stem_bn": "{conv}/BatchNorm",
        "stem_scale": "{conv}/BatchNorm/scale",
        "stem_pool": "pool1",
        "conv": "{unit}/bottleneck_v2/{branch}",
        "bn": "{conv}/BatchNorm",
        "scale": "{conv}/BatchNorm/scale",
        "relu": "{conv}/Relu",
        "add": "{unit}/bottleneck_v2/add",
        "add_relu": "{unit}/bottleneck_v2/Relu",
        "head_pool": "pool5",
        "fc": "logits",
        "prob": "predictions",
    },
}


@dataclass(frozen=True)
class Naming:
    templates: dict[str, str]

    def __call__(self, kind: str, **fields: object) -> str:
        return self.templates[kind].format(**fields)

    @staticmethod
    def unit_id(stage: int, index: int, suffix: str) -> str:
        """Block id within the net: stage number plus a letter ("3a", "3b", ...) or, for
        suffix "numbered", "a" then "b1", "b2", ... as the 101/152 release names its long stages;
        for "slim", TF-slim's scope ("block1/unit_1")."""
        if suffix == "numbered":
            return f"{stage}a" if index == 0 else f"{stage}b{index}"
        if suffix == "slim":  # TF-slim's scopes
            return f"block{stage}/unit_{index + 1}"
        if suffix == "number":  # 1, 2, ...: for blocks that name their own scopes
            return str(index + 1)
        return f"{stage}{string.ascii_lowercase[index]}"


def make_naming(scheme: str, overrides: dict[str, str], source: str) -> Naming:
    """The scheme's templates with `overrides` (template kind -> format string) checked and
    applied."""
    templates = dict(SCHEMES[scheme])
    for kind, template in overrides.items():
        try:
            parts = [p for p in string.Formatter().parse(template) if p[1] is not None]
        except ValueError as exc:
            raise SpecError(f"{source}: naming.{kind}: bad template {shown(template)}: {exc}") \
                from None
        allowed = ", ".join("{" + f + "}" for f in FIELDS[kind]) or "none"
        for _, name, spec, conversion in parts:
            # Only plain {field}: a format spec or conversion ({unit:d}, {unit!z}) would fail
            # when names are made, and {unit.attr} would reach into Python objects.
            written = "{" + name + (f"!{conversion}" if conversion else "") \
                + (f":{spec}" if spec else "") + "}"
            if name not in FIELDS[kind]:
                raise SpecError(f"{source}: naming.{kind}: unknown placeholder "
                                f"{one_line(written, 100)} (allowed: {allowed})")
            if spec or conversion:
                raise SpecError(f"{source}: naming.{kind}: placeholder "
                                f"{one_line(written, 100)} takes no format or conversion "
                                f"(write {{{name}}})")
        templates[kind] = template
    return Naming(templates)
