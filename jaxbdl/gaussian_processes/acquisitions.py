"""Acquisition functions of Bayesian optimisation (minimisation), as data.

An :class:`Acquisition` is a pure ``score(mean [M], var [M], best, key) ->
[M]`` (larger = more promising) and a flag saying whether it may be maximised
by gradients (Thompson sampling draws one joint posterior sample on a random
candidate set instead). With incumbent ``best = min_i y_i`` and
``z = (best - m) / s``:

- expected improvement  EI = (best - m) Phi(z) + s phi(z)   (Jones et al. 1998,
  Eq. 15; Snoek et al. 2012, Eq. 2),
- lower confidence bound -(m - sqrt(beta) s)   (Srinivas et al. 2010, Eq. 6),
- Thompson sampling: argmin of one sample of f on the candidates.

Used by :func:`jaxbdl.gaussian_processes.bo.minimize` (re-exported there).

References:
  Jones, Schonlau & Welch (1998), "Efficient Global Optimization of Expensive
    Black-Box Functions", J. Global Optimization 13, Eq. (15).
  Snoek, Larochelle & Adams (2012), "Practical Bayesian Optimization of
    Machine Learning Algorithms", NeurIPS, Eq. (2) and Sec. 3.
  Srinivas, Krause, Kakade & Seeger (2010), "Gaussian Process Optimization in
    the Bandit Setting", ICML, Eq. (6).
  Thompson (1933); Kandasamy et al. (2018), "Parallelised Bayesian
    Optimisation via Thompson Sampling", AISTATS.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["Acquisition", "ei", "mc_expected_improvement",
           "expected_improvement", "lower_confidence_bound",
           "thompson_sampling"]


class Acquisition(NamedTuple):
  """``score(mean [M], var [M], best, key) -> [M]``; larger is better.

  Attributes:
    score: pure function of the GP predictive of the latent f.
    differentiable: the score may be maximised by gradient refinement
      (False for Thompson sampling, scored once on the candidates with a
      joint posterior sample; ``score`` is then unused).
    name: label for results.
  """
  score: Callable[[Array, Array, Array, Array], Array]
  differentiable: bool
  name: str


def ei(mean: Array, var: Array, best: Array) -> Array:
  """Closed-form expected improvement below ``best`` (Jones et al. Eq. 15), ``[M]``."""
  s = jnp.sqrt(jnp.maximum(var, 1e-30))
  z = (best - mean) / s
  return (best - mean) * jax.scipy.stats.norm.cdf(z) + s * jax.scipy.stats.norm.pdf(z)


def mc_expected_improvement(key: Array, mean: Array, var: Array, best: Array,
                            num_samples: int) -> tuple[Array, Array]:
  """Monte Carlo EI ``E[max(best - f, 0)]``, ``f ~ N(mean, var)``: (estimate, SE), ``[M]`` each."""
  eps = jax.random.normal(key, (num_samples,) + jnp.shape(mean), jnp.result_type(mean))
  imp = jnp.maximum(best - (mean[None] + jnp.sqrt(var)[None] * eps), 0.0)
  return imp.mean(0), imp.std(0) / math.sqrt(num_samples)


def expected_improvement() -> Acquisition:
  """EI (the default)."""
  return Acquisition(lambda m, v, best, key: ei(m, v, best), True, "ei")


def lower_confidence_bound(beta: float = 4.0) -> Acquisition:
  """Score ``-(m - sqrt(beta) s)`` (GP-UCB for minimisation, Srinivas et al. Eq. 6)."""
  if not float(beta) >= 0:
    raise ValueError(f"bo.lower_confidence_bound: beta must be >= 0, got {beta}")
  root = math.sqrt(float(beta))
  return Acquisition(
      lambda m, v, best, key: -(m - root * jnp.sqrt(jnp.maximum(v, 0.0))),
      True, f"lcb(beta={float(beta):g})")


def thompson_sampling() -> Acquisition:
  """Argmin of one joint posterior sample on the random candidate set."""
  return Acquisition(lambda m, v, best, key: -m, False, "thompson")
