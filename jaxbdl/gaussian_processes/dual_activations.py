"""Dual activations: the Gaussian expectations behind NNGP and NTK kernels.

For ``(u, v) ~ N(0, [[K11, K12], [K12, K22]])`` the layer recursions of
:mod:`jaxbdl.gaussian_processes.nngp` need ``E[phi(u) phi(v)]`` and
``E[phi'(u) phi'(v)]``; :data:`EXPECTATIONS` and :data:`NTK_LAYERS` hold them
per activation in closed form, with c = K12 / sqrt(K11 K22) = cos(theta):

- ``"relu"`` (arc-cosine kernel of degree 1, Cho & Saul 2009, Eq. 6):
  sqrt(K11 K22) / (2 pi) * (sin theta + (pi - theta) cos theta).
- ``"erf"`` (Williams 1997, Eq. 11):
  (2 / pi) arcsin(2 K12 / sqrt((1 + 2 K11) (1 + 2 K22))).
- ``"identity"``: K12.

Numerics: for ReLU, J(c) = sqrt(1 - c^2) + (pi - arccos c) c has the finite
derivative dJ/dc = pi - arccos(c) everywhere on [-1, 1], but autodiff of the
formula produces inf - inf = NaN at c = +-1 (the diagonal, theta = 0). J is
therefore a ``jax.custom_jvp`` with that derivative and c is clipped to
[-1, 1], so gradients w.r.t. ``sigma_w2``/``sigma_b2`` are finite everywhere.


References:
  Cho & Saul (2009), "Kernel Methods for Deep Learning", NeurIPS.
  Williams (1997), "Computing with Infinite Networks", NeurIPS.
  Jacot, Gabriel & Hongler (2018), "Neural Tangent Kernel: Convergence and
    Generalization in Neural Networks", NeurIPS, Theorem 1.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["ACTIVATIONS", "ACTIVATION_FNS", "EXPECTATIONS", "NTK_LAYERS",
           "validate_structure", "validate_variances"]

ACTIVATIONS = ("relu", "erf", "identity")


# ----------------------------------------------------------------------------
# E[phi(u) phi(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]]).
# ----------------------------------------------------------------------------


def _arccos_parts(c: Array) -> tuple[Array, Array]:
  """(sin theta, theta) for theta = arccos(c), c in [-1, 1], via one atan2."""
  sin = jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0))
  return sin, jnp.arctan2(sin, c)


@jax.custom_jvp
def _arccos_j1(c: Array) -> Array:
  """J(c) = sin(theta) + (pi - theta) cos(theta), theta = arccos(c), c in [-1, 1]."""
  sin, theta = _arccos_parts(c)
  return sin + (jnp.pi - theta) * c


@_arccos_j1.defjvp
def _arccos_j1_jvp(primals, tangents):
  # dJ/dc = pi - theta: finite on [-1, 1] (autodiff of J gives inf - inf).
  (c,), (dc,) = primals, tangents
  sin, theta = _arccos_parts(c)
  return sin + (jnp.pi - theta) * c, (jnp.pi - theta) * dc


def _relu_expectation(k11: Array, k22: Array, k12: Array) -> Array:
  """Arc-cosine expectation; k11 [N, 1], k22 [1, M], k12 [N, M] -> [N, M]."""
  prod = k11 * k22
  positive = prod > 0
  norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, prod, 1.0)), 0.0)
  safe_norm = jnp.where(positive, norm, 1.0)
  cos = jnp.clip(jnp.where(positive, k12 / safe_norm, 1.0), -1.0, 1.0)
  return norm / (2.0 * jnp.pi) * _arccos_j1(cos)


def _relu_expectation_diag(k11: Array) -> Array:
  return 0.5 * k11


def _arcsin(a: Array) -> Array:
  """arcsin for |a| < 1 as one atan2 (compiles much smaller than jnp.arcsin on CPU)."""
  return jnp.arctan2(a, jnp.sqrt(jnp.maximum(1.0 - a * a, 0.0)))


def _erf_expectation(k11: Array, k22: Array, k12: Array) -> Array:
  arg = 2.0 * k12 / jnp.sqrt((1.0 + 2.0 * k11) * (1.0 + 2.0 * k22))
  return (2.0 / jnp.pi) * _arcsin(jnp.clip(arg, -1.0, 1.0))


def _erf_expectation_diag(k11: Array) -> Array:
  return (2.0 / jnp.pi) * _arcsin(2.0 * k11 / (1.0 + 2.0 * k11))


def _identity_expectation(k11: Array, k22: Array, k12: Array) -> Array:
  del k11, k22
  return k12


def _identity_expectation_diag(k11: Array) -> Array:
  return k11


def _relu_derivative_expectation(k11, k22, k12):
  """E[step(u) step(v)] = (pi - theta) / (2 pi), [N, M]."""
  prod = k11 * k22
  positive = prod > 0
  safe_norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, prod, 1.0)), 1.0)
  cos = jnp.clip(jnp.where(positive, k12 / safe_norm, 1.0), -1.0, 1.0)
  _, theta = _arccos_parts(cos)
  return (jnp.pi - theta) / (2.0 * jnp.pi)


def _erf_derivative_expectation(k11, k22, k12):
  """E[erf'(u) erf'(v)] = (4 / pi) / sqrt((1 + 2 K11)(1 + 2 K22) - 4 K12^2)."""
  det = (1.0 + 2.0 * k11) * (1.0 + 2.0 * k22) - 4.0 * k12 * k12
  return (4.0 / jnp.pi) / jnp.sqrt(jnp.maximum(det, 1e-30))


def _identity_derivative_expectation(k11, k22, k12):
  return jnp.ones_like(k12)


def _relu_ntk_layer(k11, k22, k12, theta, sigma_w2, sigma_b2):
  """Fused ReLU layer: one arccos for both E[phi phi] and E[phi' phi']."""
  prod = k11 * k22
  positive = prod > 0
  norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, prod, 1.0)), 0.0)
  cos = jnp.clip(jnp.where(positive, k12 / jnp.where(positive, norm, 1.0),
                           1.0), -1.0, 1.0)
  sin, angle = _arccos_parts(cos)
  rest = jnp.pi - angle
  scale = sigma_w2 / (2.0 * jnp.pi)
  k_next = sigma_b2 + scale * norm * (sin + rest * cos)
  return k_next, k_next + scale * rest * theta


def _generic_ntk_layer(activation):
  expectation, _ = EXPECTATIONS[activation]
  derivative = _DERIVATIVE_EXPECTATIONS[activation]

  def layer(k11, k22, k12, theta, sigma_w2, sigma_b2):
    k_next = sigma_b2 + sigma_w2 * expectation(k11, k22, k12)
    return k_next, k_next + sigma_w2 * derivative(k11, k22, k12) * theta

  return layer


_DERIVATIVE_EXPECTATIONS: Mapping[str, Callable[..., Array]] = {
    "relu": _relu_derivative_expectation,
    "erf": _erf_derivative_expectation,
    "identity": _identity_derivative_expectation,
}

EXPECTATIONS: Mapping[str, tuple[Callable[..., Array], Callable[..., Array]]] = {
    "relu": (_relu_expectation, _relu_expectation_diag),
    "erf": (_erf_expectation, _erf_expectation_diag),
    "identity": (_identity_expectation, _identity_expectation_diag),
}

# One NTK layer (K, Theta) -> (K', Theta') per activation (fused for ReLU).
NTK_LAYERS: Mapping[str, Callable[..., tuple[Array, Array]]] = {
    "relu": _relu_ntk_layer,
    "erf": _generic_ntk_layer("erf"),
    "identity": _generic_ntk_layer("identity"),
}

ACTIVATION_FNS: Mapping[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "erf": jax.scipy.special.erf,
    "identity": lambda h: h,
}


# ----------------------------------------------------------------------------
# Validation (at the boundary; value checks only for concrete arguments).
# ----------------------------------------------------------------------------


def validate_structure(depth: Any, activation: str) -> None:
  if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)):
    raise ValueError(f"nngp: depth must be a Python int, got {depth!r}")
  if depth < 0:
    raise ValueError(f"nngp: depth (number of hidden layers) must be >= 0, "
                     f"got {depth}")
  if activation not in EXPECTATIONS:
    raise ValueError(f"nngp: unknown activation {activation!r}; known: "
                     f"{list(ACTIVATIONS)}")


def validate_variances(sigma_w2: Any, sigma_b2: Any) -> None:
  for name, value in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
    if np.ndim(value) != 0:
      raise ValueError(f"nngp: {name} must be a scalar, got shape "
                       f"{np.shape(value)}")
    if isinstance(value, jax.core.Tracer):
      continue
    v = float(value)
    if not math.isfinite(v):
      raise ValueError(f"nngp: {name} must be finite, got {v}")
    if v < 0:
      raise ValueError(f"nngp: {name} is a variance and must be >= 0, got {v}")
