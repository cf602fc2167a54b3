"""Priors ``p(W | theta)`` over whole parameter pytrees: the ONE prior protocol.

A :class:`Prior` is a NamedTuple of pure functions used by MAP (``-log p(W)``
is the regulariser: weight decay is :func:`gaussian`, the L1 penalty is
:func:`laplace`), by the ELBO (closed-form ``KL(q || p)`` where it exists), by
Laplace (``precision``) and by the samplers (``log_prob``):

* ``init(W) -> theta``: the prior's own TRAINABLE parameters (``{}`` for a
  fixed prior; :func:`learned_gaussian` learns one scale per leaf);
* ``log_prob(theta, W) -> scalar``, summed over every leaf (biases too);
* ``kl(theta, loc, scale) -> scalar``: ``KL(prod N(loc, scale^2) || p)`` for
  mean-field Gaussians given as two pytrees, or ``None``;
* ``precision(theta, W) -> pytree``: per-weight prior precision of a Gaussian
  prior (``None`` otherwise).

A fixed scale may be a traced value, so a vmapped grid over it is one program.
Sums accumulate in float32 (or the leaves' dtype if wider).

References:
  Bishop (2006), Eq. 3.55 (Gaussian prior = quadratic regulariser);
  Tibshirani (1996) (Laplace prior = lasso); MacKay (1992);
  Blundell et al. (2015), Eq. 7 (scale mixture).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jaxbdl._gaussian import HALF_LOG_2PI, normal_log_density
from jaxbdl._checks import check_positive

PyTree = Any
Array = jax.Array

__all__ = ["Prior", "gaussian", "learned_gaussian", "laplace",
           "scale_mixture", "flat", "num_params", "l2_penalty", "l1_penalty",
           "tree_sum"]

_tmap = jax.tree_util.tree_map


class Prior(NamedTuple):
  """A prior over a weight pytree (see the module docstring)."""
  name: str
  init: Callable[[PyTree], PyTree]
  log_prob: Callable[[PyTree, PyTree], Array]
  kl: Optional[Callable[[PyTree, PyTree, PyTree], Array]]
  precision: Optional[Callable[[PyTree, PyTree], PyTree]] = None


def _f32(x: Array) -> Array:
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def tree_sum(tree: PyTree) -> Array:
  """Sum of every entry of every leaf (float32 or wider)."""
  return sum((jnp.sum(_f32(x)) for x in jax.tree_util.tree_leaves(tree)),
             jnp.float32(0.0))


def num_params(params: PyTree) -> int:
  """Number of scalar entries ``P`` in ``params``."""
  return int(sum(math.prod(jnp.shape(x))
                 for x in jax.tree_util.tree_leaves(params)))


def l2_penalty(params: PyTree) -> Array:
  """``0.5 * sum_i w_i^2`` (weight decay; ``-log N(W; 0, s^2) = l2 / s^2 +
  const``)."""
  return 0.5 * tree_sum(_tmap(jnp.square, params))


def l1_penalty(params: PyTree) -> Array:
  """``sum_i |w_i|`` (``-log Laplace(W; 0, b) = l1 / b + const``)."""
  return tree_sum(_tmap(jnp.abs, params))


def _normal_log_prob_sum(w: Array, scale: Array) -> Array:
  return jnp.sum(normal_log_density(_f32(w), 0.0, scale))


def _normal_kl_sum(m: Array, s: Array, prior_scale: Array) -> Array:
  """``sum KL(N(m, s^2) || N(0, p^2)) = log(p/s) + (s^2 + m^2)/(2 p^2) - 1/2``."""
  r = jnp.square(s / prior_scale)
  return jnp.sum(0.5 * (r + jnp.square(m / prior_scale) - 1.0 - jnp.log(r)))


def gaussian(scale: Any = 1.0) -> Prior:
  """``p(w_i) = N(0, scale^2)``, ``scale`` a STANDARD DEVIATION (may be traced).

  ``-log p(W) = l2_penalty(W) / scale^2 + (P / 2) log(2 pi scale^2)``.
  """
  check_positive("gaussian prior scale", scale)
  s = lambda: jnp.asarray(scale, jnp.float32)

  def log_prob(theta, w):
    del theta
    return sum((_normal_log_prob_sum(x, s()) for x in
                jax.tree_util.tree_leaves(w)), jnp.float32(0.0))

  def kl(theta, loc, sc):
    del theta
    return tree_sum(_tmap(lambda m, v: _normal_kl_sum(m, v, s()), loc, sc))

  def precision(theta, w):
    del theta
    return _tmap(lambda x: jnp.full(jnp.shape(x), 1.0 / jnp.square(s()),
                                    jnp.float32), w)

  return Prior("gaussian", lambda params: {}, log_prob, kl, precision)


def learned_gaussian(init_scale: float = 1.0) -> Prior:
  """``p(w_i) = N(0, s_l^2)`` with one LEARNED scale per leaf (empirical Bayes).

  ``theta = {"log_scale": pytree of scalars}`` initialised at
  ``log(init_scale)``; trained with the rest (type-II ML: at the ELBO's
  optimum ``s_l^2 = mean_i (mu_i^2 + sigma_i^2)`` over the leaf).
  """
  check_positive("learned_gaussian init_scale", init_scale)

  def init(params):
    return {"log_scale": _tmap(
        lambda p: jnp.full((), math.log(init_scale), jnp.float32), params)}

  def log_prob(theta, w):
    return tree_sum(_tmap(lambda x, ls: _normal_log_prob_sum(x, jnp.exp(ls)),
                          w, theta["log_scale"]))

  def kl(theta, loc, sc):
    return tree_sum(_tmap(lambda m, v, ls: _normal_kl_sum(m, v, jnp.exp(ls)),
                          loc, sc, theta["log_scale"]))

  def precision(theta, w):
    return _tmap(lambda x, ls: jnp.full(jnp.shape(x), jnp.exp(-2.0 * ls)),
                 w, theta["log_scale"])

  return Prior("learned_gaussian", init, log_prob, kl, precision)


def laplace(scale: Any = 1.0) -> Prior:
  """``p(w_i) = exp(-|w| / b) / (2 b)``, ``b = scale`` (variance ``2 b^2``).

  Closed-form KL from ``q = N(mu, sigma^2)``: ``-H[q] + log(2 b) + E_q|w| / b``
  with the folded-normal mean ``E_q|w| = sigma sqrt(2/pi) exp(-mu^2 / (2
  sigma^2)) + mu erf(mu / (sigma sqrt 2))``.
  """
  check_positive("laplace prior scale", scale)
  b = lambda: jnp.asarray(scale, jnp.float32)

  def log_prob(theta, w):
    del theta
    return -l1_penalty(w) / b() - num_params(w) * jnp.log(2.0 * b())

  def kl_leaf(m, s):
    abs_mean = (s * math.sqrt(2.0 / math.pi) * jnp.exp(-0.5 * jnp.square(m / s))
                + m * jax.scipy.special.erf(m / (s * math.sqrt(2.0))))
    neg_entropy = -(0.5 + HALF_LOG_2PI + jnp.log(s))
    return jnp.sum(neg_entropy + jnp.log(2.0 * b()) + abs_mean / b())

  def kl(theta, loc, sc):
    del theta
    return tree_sum(_tmap(kl_leaf, loc, sc))

  return Prior("laplace", lambda params: {}, log_prob, kl)


def scale_mixture(pi: float = 0.5, scale1: float = 1.0,
                  scale2: float = math.exp(-6.0)) -> Prior:
  """``pi N(0, s1^2) + (1 - pi) N(0, s2^2)`` per weight (Blundell et al. 2015,
  Eq. 7). No closed-form KL: the ELBO uses a Monte Carlo KL."""
  if not 0.0 < pi < 1.0:
    raise ValueError(f"scale_mixture pi must be in (0, 1), got {pi!r}")
  check_positive("scale_mixture scale1", scale1)
  check_positive("scale_mixture scale2", scale2)
  log_w = jnp.array([math.log(pi), math.log1p(-pi)], jnp.float32)
  scales = jnp.array([scale1, scale2], jnp.float32)

  def leaf(x):
    x = _f32(x)
    shape = (1,) * x.ndim + (2,)
    sc, lw = scales.reshape(shape), log_w.reshape(shape)
    comp = normal_log_density(x[..., None], 0.0, sc) + lw  # [..., 2]
    return jnp.sum(jax.nn.logsumexp(comp, axis=-1))

  def log_prob(theta, w):
    del theta
    return tree_sum(_tmap(leaf, w))

  return Prior("scale_mixture", lambda params: {}, log_prob, None)


def flat() -> Prior:
  """The improper flat prior ``log p(W) = 0``: MAP is maximum likelihood."""
  return Prior("flat", lambda params: {}, lambda theta, w: jnp.float32(0.0),
               None)
