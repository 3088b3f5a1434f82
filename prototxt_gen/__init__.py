"""prototxt-gen: generate, read and translate Caffe network definitions without Caffe."""

__version__ = "0.1.0"

from .errors import NetError, PrototxtGenError, SpecError
from .net import InputBlob, Layer, Net

__all__ = ["Net", "Layer", "InputBlob", "PrototxtGenError", "SpecError", "NetError",
           "generate", "load_spec", "__version__"]


def __getattr__(name):
    # generate/load_spec pull in the block builders; keep `import prototxt_gen` light.
    if name == "generate":
        from .generator import generate
        return generate
    if name == "load_spec":
        from .spec import load_spec
        return load_spec
    raise AttributeError(f"module 'prototxt_gen' has no attribute {name!r}")
