"""Gaussian processes: kernels, exact GP regression, NNGP kernels, Bayesian
optimisation.

Submodules load on first use (see jaxbdl/_lazy.py)."""
from jaxbdl import _lazy

__all__ = ["kernels", "gp", "exact_gp", "minimisers", "nngp",
           "dual_activations", "empirical_kernels", "bo", "acquisitions"]
__getattr__, __dir__ = _lazy.attach(__name__, __all__)
