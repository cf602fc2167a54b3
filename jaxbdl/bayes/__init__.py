"""Bayesian inference: one protocol per concept.

``likelihoods`` (observation models), ``priors``, ``elbo`` (the one ELBO),
``families`` (its variational families: mean field, full rank, low rank),
``posterior`` (the interface of a posterior approximation), one module per
method (``map_estimate``, ``mfvi``, ``mc_dropout``, ``ensembles``, ...) and
``registry`` (the list of methods).
Submodules load on first use: ``from jaxbdl.bayes import registry``.
"""
import importlib

__all__ = ["likelihoods", "priors", "elbo", "families", "posterior", "registry",
           "map_estimate", "mfvi", "mc_dropout", "ensembles"]


def __getattr__(name):
  if name in __all__:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
