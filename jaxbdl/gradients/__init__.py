"""Monte Carlo gradients: distributions, estimators, control variates,
relaxations of discrete variables, multi-sample bounds, quadrature references.

Submodules load on first use (see jaxbdl/_lazy.py)."""
from jaxbdl import _lazy

__all__ = ["distributions", "estimators", "control_variates", "relaxations",
           "multisample", "quadrature"]
__getattr__, __dir__ = _lazy.attach(__name__, __all__)
