"""From a spec to a Net: stem, then every stage's units, then the head, through the builders."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .kinds import BLOCKS, HEADS, STEMS, Builder
from ..errors import SpecError
from ..graph.net import Net
from ..graph.shapes import infer
from .spec import Spec, load_spec


def generate(spec: Spec | str | Path, input_shape: Sequence[int] | None = None,
             num_classes: int | None = None, *, output_stride: int | None = None,
             global_pool: bool = True, features_only: bool = False) -> Net:
    """Build the network a spec describes. `spec` is a Spec, a path to a TOML file or the name
    of a built-in template ("resnet50"). Shapes are checked on the way out, so an input too small
    for the network fails here, naming the layer.

    output_stride: the feature map's stride relative to the input; once it is reached, strides
    become dilation (atrous convolution, as TF-slim's resnets do it: the unit that would have
    strided keeps the current rate, the rate multiplies after it). global_pool=False: no
    pooling in the head, the classifier a 1x1 convolution (dense predictions).
    features_only: no head; the net ends with the last stage."""
    if not isinstance(spec, Spec):
        spec = resolve_spec(spec)
    shape = tuple(input_shape) if input_shape is not None else spec.input_shape
    if len(shape) != 4 or any(not isinstance(d, int) or d < 1 for d in shape):
        raise SpecError(f"input shape {shape}: expected 4 positive integers N, C, H, W")
    head = _head_params(spec, num_classes, global_pool)

    net = Net(spec.name)
    net.add_input(spec.input_name, shape)
    b = Builder(net, spec.naming, channels=shape[1],
                conv_relu_top_first=spec.conv_relu_top_first)
    x = STEMS[spec.stem.kind].build(b, spec.input_name, **spec.stem.params)
    stage_no = spec.first_stage
    current, rate = _stem_stride(spec), 1
    if output_stride is not None:
        _check_output_stride(spec, output_stride, current)
    for stage_no, stage in enumerate(spec.stages, start=spec.first_stage):
        kind = BLOCKS[stage.block]
        strided = 0 if stage.stride_unit == "first" else stage.units - 1
        for k in range(stage.units):
            params = dict(stage.params)
            if k != strided and "stride" in params:
                params["stride"] = 1  # one unit of a stage changes resolution
            stride = params.get("stride", 1)
            if output_stride is not None and current == output_stride:
                if "dilation" not in kind.keys:
                    raise SpecError(f"{spec.source}: block kind '{stage.block}' cannot dilate "
                                    f"(for output stride {output_stride})")
                params["stride"] = 1
                params["dilation"] = params.get("dilation", 1) * rate
                rate *= stride
            else:
                current *= stride
            x = kind.build(b, spec.naming.unit_id(stage_no, k, stage.suffix), x, k == 0, **params)
    if output_stride is not None and current != output_stride:
        raise SpecError(f"output stride {output_stride} cannot be reached (the network's is "
                        f"{current})")
    if not features_only:
        HEADS[spec.head.kind].build(b, x, last_stage=stage_no, **head)
    infer(net)
    return net


def _head_params(spec: Spec, num_classes: int | None, global_pool: bool) -> dict:
    """The head's parameters with --num-classes and --no-global-pool applied."""
    head = dict(spec.head.params)
    if num_classes is not None:
        if "num_classes" not in head:
            raise SpecError(f"{spec.source}: head kind '{spec.head.kind}' has no num_classes")
        head["num_classes"] = num_classes
    if not global_pool:
        if "pool" not in head:
            raise SpecError(f"{spec.source}: head kind '{spec.head.kind}' has no pooling")
        head.update(pool="none", logits="conv")
    return head


def _check_output_stride(spec: Spec, output_stride: int, stem_stride: int) -> None:
    if "stride" not in STEMS[spec.stem.kind].keys or \
            not any("stride" in BLOCKS[st.block].keys for st in spec.stages):
        raise SpecError(f"{spec.source}: output stride: the stem or blocks of this network "
                        "fix their strides (it works for the ResNet families)")
    if output_stride < stem_stride or output_stride % stem_stride:
        raise SpecError(f"output stride {output_stride}: the stem alone has stride "
                        f"{stem_stride}")


def _stem_stride(spec: Spec) -> int:
    """The stem's total stride (its conv's and its pooling's)."""
    p = spec.stem.params
    return p.get("stride", 1) * (p.get("pool_stride", 1) if p.get("pool", "none") != "none"
                                 else 1)


def resolve_spec(spec: str | Path) -> Spec:
    """A built-in template by name ("resnet50"), or a spec file (a .toml name or a path)."""
    from .catalog import find_template
    path = Path(spec)
    if path.suffix == ".toml" or len(path.parts) > 1:
        return load_spec(path)
    return load_spec(find_template(str(spec)))
