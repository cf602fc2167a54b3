"""Training infrastructure: the training loop, progress, checkpoints,
resumable fits, data-parallel and multi-host execution.

Submodules load on first use (see jaxbdl/_lazy.py)."""
from jaxbdl import _lazy

__all__ = ["train", "progress", "checkpoint", "resume", "parallel",
           "distributed"]
__getattr__, __dir__ = _lazy.attach(__name__, __all__)
