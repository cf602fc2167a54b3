"""Laplace approximations for neural networks (issue 15).

``Laplace(apply_fn, params, likelihood, subset_of_weights, hessian_structure)``
returns pure ``fit -> optimize_prior_precision -> predict`` functions on an
explicit :class:`LaplaceState` (laplace-torch's workflow, JAX's idioms).

Modules: ``curvature`` (GGN / empirical Fisher in full, diag, KFAC, low-rank
structures; subsets of weights; it re-exports ``subsets``, ``factors``
(per-example square-root factors), ``structure`` and ``kron`` (KFAC / KFC)),
``marglik`` (the evidence and post-hoc
prior-precision / noise fitting), ``predictive`` (GLM with probit or MC link;
network sampling), ``approximation`` (the ``Laplace`` factory), ``online``
(online marginal-likelihood training, Immer et al. 2021) and ``method`` (the
Bayesian-core registry adapters).
"""
from jaxbdl.bayes.laplace import (approximation, curvature, marglik, online,
                                 predictive)
from jaxbdl.bayes.laplace.approximation import (Laplace, LaplaceApproximation,
                                                LaplaceSpec, LaplaceState)

__all__ = ["approximation", "curvature", "marglik", "online", "predictive",
           "Laplace", "LaplaceApproximation", "LaplaceSpec", "LaplaceState"]
