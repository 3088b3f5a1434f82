"""Caffe network → ONNX, built node by node with onnx.helper (no torch involved).

Every layer type has one lowering (in its family's module of prototxt_gen.layers, or a fork's,
registered with @converter): it gets a `LayerBuilder` (the layer, its inferred shapes, the ONNX
values its bottoms hold) and adds the nodes that compute the layer's tops. ONNX values are
written once, so a blob that in-place layers rewrite becomes a new value at each write; its
first version keeps the blob's name (the final version, for the net's outputs), the others are
named `blob@layer`.

Caffe's arithmetic is kept exactly and portably: pooling never relies on a runtime's ceil mode
(Caffe's output size is computed here and reached with explicit, possibly asymmetric, padding in
floor mode, the padding chosen so that the average divisor is Caffe's), BatchNorm's statistics
are divided by its scale-factor blob, and a BatchNorm followed by its Scale is one
BatchNormalization.
"""
from ...errors import Unsupported
from .builder import (CONVERTERS, DEFAULT_OPSET, IR_VERSION, OPSETS, LayerBuilder,
                      converter)
from .translate import Translation, check_model, to_onnx, translate
from .write import EXTERNAL_DATA_THRESHOLD, save_onnx

__all__ = ["CONVERTERS", "DEFAULT_OPSET", "EXTERNAL_DATA_THRESHOLD", "IR_VERSION", "OPSETS",
           "LayerBuilder", "Translation", "Unsupported", "check_model", "converter",
           "save_onnx", "to_onnx", "translate"]
