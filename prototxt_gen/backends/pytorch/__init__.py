"""Caffe network → PyTorch: a runtime `nn.Module`, a standalone .py file, and back to .caffemodel.

Every layer type has one lowering (in its family's module of prototxt_gen.layers, or a fork's,
registered with @converter): given a `TorchBuilder`, it emits a `Lowered` -- the submodule to
create (if any, as class + arguments, so the same description builds the module here and
writes its constructor in an exported .py) and the Python expression that computes the
layer's tops from its bottoms. From these the translator writes
one `forward` in Caffe's execution order; a blob written by an in-place layer is simply the
same variable reassigned, so every layer sees exactly the value Caffe would give it. The
runtime module runs that generated code (like torch.fx's GraphModule); `to_source` writes the
same code as a file.

Weights go from the caffemodel's numpy buffers to `torch.from_numpy` without copies (BatchNorm's
statistics are divided by its scale-factor blob, so those are new, small arrays).
"""
from ...errors import Unsupported
from .builder import CONVERTERS, Ctor, Lowered, TorchBuilder, converter
from .codegen import forward_source, to_source
from .files import (_export_dynamic, load_state_dict, save_exported, save_python,
                    state_to_blobs)
from .module import CaffeNet, build_module, to_torch
from .plan import Plan, plan, sanitize

__all__ = ["CONVERTERS", "CaffeNet", "Ctor", "Lowered", "Plan", "TorchBuilder", "Unsupported",
           "build_module", "converter", "forward_source", "load_state_dict", "plan",
           "sanitize", "save_exported", "save_python", "state_to_blobs", "to_source",
           "to_torch", "_export_dynamic"]
