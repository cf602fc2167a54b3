"""Training infrastructure: the training loop, progress, checkpoints,
resumable fits (run fingerprints, the directory lock, preemption),
data-parallel and multi-host execution.

Submodules load on first use (see jaxbdl/_lazy.py)."""
from jaxbdl import _lazy

__all__ = ["train", "steps", "progress", "checkpoint", "checkpoint_store",
           "fingerprint", "lock", "preemption", "resume", "parallel",
           "distributed"]
__getattr__, __dir__ = _lazy.attach(__name__, __all__)
