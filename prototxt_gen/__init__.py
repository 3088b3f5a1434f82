"""prototxt-gen: generate, read and translate Caffe network definitions without Caffe."""

__version__ = "0.1.0"

from .errors import NetError, PrototxtGenError, SpecError
from .graph.net import InputBlob, Layer, Net
from . import layers  # noqa: F401  (declares Caffe's layer types: shapes, lowerings...)

__all__ = ["Net", "Layer", "InputBlob", "PrototxtGenError", "SpecError", "NetError",
           "generate", "load_spec", "read_prototxt", "read_net", "load_weights",
           "write_caffemodel", "__version__"]

# Loaded on first use, so that `import prototxt_gen` stays light (no numpy, no builders).
_LAZY = {"generate": "build.generator", "load_spec": "build.spec",
         "read_prototxt": "caffe.reader", "read_net": "caffe.reader",
         "load_weights": "caffe.weights", "write_caffemodel": "caffe.weights"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'prototxt_gen' has no attribute {name!r}")
