"""Weights from the systems the built-in families come from, into the generated Caffe nets:
torchvision state_dicts (`torchvision.py`), TF-slim and FaceNet checkpoints (`slim.py`, read
by `tf_checkpoint.py` without TensorFlow). Each importer maps the source's names onto the
net's layers and gives them blobs in Caffe's layouts; anything that does not fit is refused in
one line."""
from .slim import slim_blobs
from .tf_checkpoint import Checkpoint, CheckpointError
from .torchvision import is_torchvision_state, torchvision_blobs

__all__ = ["Checkpoint", "CheckpointError", "is_torchvision_state", "slim_blobs",
           "torchvision_blobs"]
