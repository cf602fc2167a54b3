"""Priors ``log p(W)`` over WHOLE parameter pytrees (a scalar), and the penalties.

Weight decay is a Gaussian prior and the L1 penalty a Laplace prior:

* ``-log N(W; 0, s^2 I) = l2_penalty(W) / s^2 + gaussian_log_normaliser(P, s)``
  with ``l2_penalty = 0.5 * sum w^2`` and normaliser ``(P / 2) log(2 pi s^2)``.
* ``-log Laplace(W; 0, b) = l1_penalty(W) / b + laplace_log_normaliser(P, b)``
  with ``l1_penalty = sum |w|`` and normaliser ``P log(2 b)``.

``P`` is the number of scalar parameters (:func:`num_params`). Every leaf of the
pytree is included (biases too); to leave some out, pass the sub-tree.

Sums accumulate in float32 (or the leaves' dtype if wider).

References:
  Bishop (2006), Eq. 3.55 (Gaussian prior -> quadratic regulariser);
  Tibshirani (1996) (Laplace prior -> lasso); MacKay (1992).
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def _check_scale(scale) -> None:
  if isinstance(scale, (int, float)) and not scale > 0:
    raise ValueError(f"prior scale must be > 0, got {scale!r}")


def _leaves(params: PyTree) -> list[jax.Array]:
  leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(params)]
  return [x.astype(jnp.promote_types(x.dtype, jnp.float32)) for x in leaves]


def num_params(params: PyTree) -> int:
  """Number of scalar entries ``P`` in ``params``."""
  return int(sum(math.prod(jnp.shape(x)) for x in jax.tree_util.tree_leaves(params)))


def l2_penalty(params: PyTree) -> jax.Array:
  """``0.5 * sum_i w_i^2`` over all leaves (scalar)."""
  return 0.5 * sum((jnp.sum(x * x) for x in _leaves(params)), jnp.float32(0.0))


def l1_penalty(params: PyTree) -> jax.Array:
  """``sum_i |w_i|`` over all leaves (scalar)."""
  return sum((jnp.sum(jnp.abs(x)) for x in _leaves(params)), jnp.float32(0.0))


def gaussian_log_normaliser(num_params: int, scale) -> jax.Array:
  """``(P / 2) log(2 pi scale^2)``: the constant in ``-log N(W; 0, scale^2 I)``."""
  _check_scale(scale)
  return 0.5 * num_params * jnp.log(2.0 * jnp.pi * jnp.square(jnp.asarray(scale, jnp.float32)))


def laplace_log_normaliser(num_params: int, scale) -> jax.Array:
  """``P log(2 b)``: the constant in ``-log Laplace(W; 0, b)``, ``b = scale``."""
  _check_scale(scale)
  return num_params * jnp.log(2.0 * jnp.asarray(scale, jnp.float32))


def gaussian(params: PyTree, scale=1.0) -> jax.Array:
  """``sum_i log N(w_i; 0, scale^2)`` over all leaves (scalar).

  Args:
    params: parameter pytree.
    scale: prior STANDARD DEVIATION ``s > 0`` (scalar; a Python float is
      validated, a traced value is not, so it can be learned or vmapped).
  """
  _check_scale(scale)
  s = jnp.asarray(scale, jnp.float32)
  return -l2_penalty(params) / (s * s) - gaussian_log_normaliser(num_params(params), s)


def laplace(params: PyTree, scale=1.0) -> jax.Array:
  """``sum_i log Laplace(w_i; 0, b)`` with ``b = scale`` (scalar).

  ``Laplace(w; 0, b) = exp(-|w| / b) / (2 b)``, variance ``2 b^2``.
  """
  _check_scale(scale)
  b = jnp.asarray(scale, jnp.float32)
  return -l1_penalty(params) / b - laplace_log_normaliser(num_params(params), b)


def flat(params: PyTree) -> jax.Array:
  """The improper flat prior ``log p(W) = 0``: MAP reduces to maximum likelihood."""
  del params
  return jnp.float32(0.0)
