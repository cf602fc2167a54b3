"""Bayesian inference: one protocol per concept.

``likelihoods`` (observation models), ``priors``, ``elbo`` (the one ELBO),
``families`` (its variational families: mean field, full rank, low rank),
``bayesian_layers`` / ``conv_layers`` (variational layers), ``posterior``
(the interface of a posterior approximation), one module per method
(``map_estimate``, ``mfvi``, ``mc_dropout``, ``ensembles``, ``hmc``,
``sgmcmc``, ``gaussian_vi``, ``swag``, ``laplace``, ``temperature_scaling``)
and ``registry`` (the list of methods).
Submodules load on first use: ``from jaxbdl.bayes import registry``.
"""
from jaxbdl import _lazy

__all__ = ["likelihoods", "priors", "elbo", "families", "bayesian_layers",
           "conv_layers", "posterior", "registry", "map_estimate", "mfvi",
           "mc_dropout", "ensembles", "hmc", "sgmcmc", "gaussian_vi", "swag",
           "laplace", "temperature_scaling"]
__getattr__, __dir__ = _lazy.attach(__name__, __all__)
