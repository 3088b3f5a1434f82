"""Every block, stem and head kind a spec may name. The tables live in blocks.py with the
ResNet family; other families' modules register theirs into them, and importing this module
is what has them all registered (so no family module imports another)."""
from . import inception_blocks  # noqa: F401  (registers the Inception-ResNet kinds)
from .blocks import BLOCKS, HEADS, STEMS, Builder, Kind

__all__ = ["BLOCKS", "HEADS", "STEMS", "Builder", "Kind"]
