r"""Multi-sample (importance-weighted) bounds and their gradient estimators.

For a latent-variable model with joint ``log p_theta(x, z)`` (``x`` fixed,
closed over) and an approximate posterior ``q_phi(z)`` from
:mod:`jaxbdl.gradients.distributions`, draw ``z_1..z_K ~ q`` and set

  log w_k = log p_theta(x, z_k) - log q_phi(z_k),
  L_K = log (1/K sum_k w_k)      (Burda et al. 2016, eq. 8).

``E[L_K] <= log p(x)``, ``E[L_1]`` is the ELBO, ``E[L_K]`` increases with
``K`` and tends to ``log p(x)``; if ``q`` is the exact posterior every
``w_k = p(x)`` and ``L_K = log p(x)`` exactly.

Every function here is a factory ``(log_joint, dist) -> fn(theta, params,
key, num_samples) -> scalar`` where ``log_joint(theta, z) -> scalar`` for ONE
sample ``z`` (the event shape of ``dist``; ``theta`` the model parameters, any
pytree, ``None`` allowed) and ``params`` is ``dist``'s parameter dict. The
returned scalar's VALUE is the estimate of ``L_K`` and its ``jax.grad`` with
respect to ``(theta, params)`` is the named gradient estimator (surrogate
losses, like :mod:`jaxbdl.gradients.estimators`):

* :func:`iwae_bound`: ``L_K`` with reparameterised ``z_k`` (needs
  ``dist.reparameterized``); ``jax.grad`` is the IWAE gradient
  ``sum_k w~_k grad log w_k`` (``w~ = softmax(log w)``), including the score
  term ``-grad_phi log q`` evaluated at fixed ``z``.
* :func:`dreg` (Tucker, Lawson, Gu, Maddison 2019, eq. 6): for ``phi``,
  ``sum_k w~_k^2 (d log w_k / d z_k) (d z_k / d phi)`` with ``log q``'s
  parameters held fixed (the doubly reparameterised estimator: the score
  term, which has zero mean, is replaced by its reparameterised form); for
  ``theta`` the IWAE gradient ``sum_k w~_k grad_theta log p(x, z_k)``.
  Unbiased for ``grad E[L_K]``; its variance does not blow up with ``K`` as
  the IWAE inference-network gradient's signal-to-noise ratio does
  (Rainforth et al. 2018).
* :func:`vimco` (Mnih & Rezende 2016, eq. 10): any ``q`` (discrete too);
  ``sum_k L(z_k | z_-k) grad log q(z_k) + sum_k w~_k grad log w_k`` with the
  leave-one-out learning signal ``L(z_k | z_-k) = L_K - log (1/K (sum_{j != k}
  w_j + w^_-k))`` and ``w^_-k = exp(mean_{j != k} log w_j)``, the geometric
  mean of the other weights. Needs ``K >= 2``.

References:
  Y. Burda, R. Grosse, R. Salakhutdinov. Importance weighted autoencoders.
  ICLR 2016.
  A. Mnih, D. Rezende. Variational inference for Monte Carlo objectives.
  ICML 2016.
  G. Tucker, D. Lawson, S. Gu, C. Maddison. Doubly reparameterized gradient
  estimators for Monte Carlo objectives. ICLR 2019.
  T. Rainforth et al. Tighter variational bounds are not necessarily better.
  ICML 2018.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxbdl.gradients import distributions as dists
from jaxbdl.gradients import estimators as ests

__all__ = ["log_weights", "iwae_bound", "dreg", "vimco",
           "leave_one_out_signal"]

Array = jax.Array
LogJoint = Callable[[Any, Array], Array]
Objective = Callable[[Any, Any, Array, int], Array]

_sg = jax.lax.stop_gradient


def _check(dist: Any, what: str, needs_reparam: bool) -> None:
  if not isinstance(dist, dists.Distribution):
    raise ValueError(f"{what}: dist must be a jaxbdl.gradients.distributions."
                     f"Distribution, got {dist!r}")
  if needs_reparam and not dist.reparameterized:
    raise ValueError(f"{what} needs a reparameterised q; {dist.name} is not "
                     "(use multisample.vimco)")


def _scalar(log_joint, theta, z, what):
  y = jnp.asarray(log_joint(theta, z))
  if y.shape != ():
    raise ValueError(f"{what}: log_joint must return a scalar for one z of "
                     f"shape {jnp.shape(z)}, got shape {y.shape}")
  return y


def log_weights(log_joint: LogJoint, dist: dists.Distribution, theta: Any,
                params: Any, zs: Array) -> Array:
  """``log w_k = log p(x, z_k) - log q(z_k)``; ``zs [K, *event]`` -> ``[K]``.
  """
  log_p = jax.vmap(lambda z: _scalar(log_joint, theta, z, "log_weights"))(zs)
  return log_p - dist.log_prob(params, zs)


def _bound(lw: Array) -> Array:
  return jax.nn.logsumexp(lw) - math.log(lw.shape[0])


def iwae_bound(log_joint: LogJoint, dist: dists.Distribution) -> Objective:
  """``L_K`` with reparameterised samples; ``jax.grad`` = IWAE gradient.

  ``K = 1`` is the single-sample ELBO estimate ``log p(x, z) - log q(z)``.
  """
  _check(dist, "iwae_bound", True)

  def fn(theta, params, key, num_samples):
    k = ests.check_num_samples(num_samples)
    zs = dist.sample(params, key, (k,))
    return _bound(log_weights(log_joint, dist, theta, params, zs))

  return fn


def dreg(log_joint: LogJoint, dist: dists.Distribution) -> Objective:
  """Value ``L_K``; ``jax.grad``: DReG for ``params``, IWAE for ``theta``."""
  _check(dist, "dreg", True)

  def fn(theta, params, key, num_samples):
    k = ests.check_num_samples(num_samples)
    zs = dist.sample(params, key, (k,))            # z_k(phi), [K, *event]
    sg_params, sg_theta, sg_zs = _sg(params), _sg(theta), _sg(zs)
    # theta path: z fixed, q fixed.
    lw_model = log_weights(log_joint, dist, theta, sg_params, sg_zs)
    # phi path: only through z_k(phi); q's parameters and theta fixed.
    lw_path = log_weights(log_joint, dist, sg_theta, sg_params, zs)
    weights = _sg(jax.nn.softmax(lw_model))
    value = _bound(lw_model)
    return (_sg(value) + jnp.sum(weights * (lw_model - _sg(lw_model)))
            + jnp.sum(jnp.square(weights) * (lw_path - _sg(lw_path))))

  return fn


def leave_one_out_signal(lw: Array) -> Array:
  """VIMCO's ``L_K - L_K(w_k := geometric mean of the others)``: ``[K]``."""
  k = lw.shape[0]
  mean_others = (jnp.sum(lw) - lw) / (k - 1)        # [K]
  replaced = jnp.where(jnp.eye(k, dtype=bool), mean_others[:, None],
                       lw[None, :])                  # [K, K], row k
  return _bound(lw) - (jax.nn.logsumexp(replaced, axis=1) - math.log(k))


def vimco(log_joint: LogJoint, dist: dists.Distribution) -> Objective:
  """Value ``L_K``; ``jax.grad``: the VIMCO estimator (any ``q``, K >= 2)."""
  _check(dist, "vimco", False)

  def fn(theta, params, key, num_samples):
    k = ests.check_num_samples(num_samples, minimum=2)
    zs = _sg(dist.sample(_sg(params), key, (k,)))
    log_q = dist.log_prob(params, zs)                               # [K]
    log_p = jax.vmap(lambda z: _scalar(log_joint, theta, z, "vimco"))(zs)
    lw = log_p - log_q
    signal = _sg(leave_one_out_signal(lw))
    weights = _sg(jax.nn.softmax(lw))
    return (_sg(_bound(lw)) + jnp.sum(signal * (log_q - _sg(log_q)))
            + jnp.sum(weights * (lw - _sg(lw))))

  return fn
