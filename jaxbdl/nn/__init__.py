"""Networks and learning as MAP: Flax networks, backprop checks, gradient
diagnostics, MAP objectives, linear models, transfer learning, MAML.

Submodules load on first use (see jaxbdl/_lazy.py)."""
from jaxbdl import _lazy

__all__ = ["networks", "backprop", "diagnostics", "objectives", "linear_models",
           "transfer", "maml"]
__getattr__, __dir__ = _lazy.attach(__name__, __all__)
