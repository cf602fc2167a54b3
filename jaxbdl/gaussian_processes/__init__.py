"""Gaussian processes: kernels, exact GP regression, NNGP kernels, Bayesian
optimisation.

Submodules load on first use (see jaxbdl/_lazy.py)."""
from jaxbdl import _lazy

__all__ = ["kernels", "gp", "nngp", "bo"]
__getattr__, __dir__ = _lazy.attach(__name__, __all__)
