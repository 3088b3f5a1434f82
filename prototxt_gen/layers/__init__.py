"""Caffe's layer types, one module per family. Each module declares, for each of its types,
everything the rest of the package needs to know about it: the parameter readers, the shape
rule (Caffe's own arithmetic), the drawing family, placeholder weights where zeros would not
be harmless, and the PyTorch and ONNX lowerings (written against the back ends' builders, so
that no module here imports torch or onnx). Adding a layer type touches one of these files.
"""
from . import (activation, combine, convolution, data, detection,  # noqa: F401
               normalization, pooling, reduction, reshape, resize, roi)
