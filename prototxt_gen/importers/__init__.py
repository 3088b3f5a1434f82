"""Weights from the systems the built-in families come from, into the generated Caffe nets:
torchvision state_dicts (`torchvision.py`). Each importer maps the source's names onto the
net's layers and gives them blobs in Caffe's layouts; anything that does not fit is refused in
one line."""
from .torchvision import is_torchvision_state, torchvision_blobs

__all__ = ["is_torchvision_state", "torchvision_blobs"]
