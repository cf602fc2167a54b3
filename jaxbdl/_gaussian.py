"""The Gaussian log density, written once.

Rank 0 of the layout (no jaxbdl imports), so every package uses it: the
distributions' ``Normal``, the priors, the likelihoods, the metrics, the GPs
and the Laplace evidence.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

__all__ = ["LOG_2PI", "HALF_LOG_2PI", "normal_log_density",
           "normal_log_density_var"]

LOG_2PI = math.log(2.0 * math.pi)
HALF_LOG_2PI = 0.5 * LOG_2PI


def normal_log_density(x, loc, scale):
  """Elementwise ``log N(x; loc, scale^2)`` (``scale`` a standard deviation;
  broadcasting)."""
  z = (x - loc) / scale
  return -0.5 * z * z - jnp.log(scale) - HALF_LOG_2PI


def normal_log_density_var(x, mean, variance):
  """Elementwise ``log N(x; mean, variance)`` from a variance."""
  return -0.5 * (LOG_2PI + jnp.log(variance) + jnp.square(x - mean) / variance)
