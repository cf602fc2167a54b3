r"""The ``Estimator`` protocol and the helpers every estimator shares.

An :class:`Estimator` of ``grad_theta E_{q(x; theta)}[f(x)]`` is a
NamedTuple of two factories (the contract is described in full in
:mod:`jaxbdl.gradients.estimators`):

* ``samples(f, dist) -> samples_fn(params, key, S)``: ``S`` single-sample
  estimates, a pytree like ``params`` with a leading ``[S]`` axis;
* ``surrogate(f, dist) -> loss(params, key, S)``: a scalar whose
  ``jax.grad`` is the averaged estimate for the same key;
* calling it gives :func:`average` of ``samples``.

This module also holds what estimators and control variates share: the
check of ``num_samples``, :func:`draw_samples` (the points ``x_i`` where the
score-function and pathwise estimators evaluate ``f``),
:func:`linearized_surrogate` (a surrogate for any estimator) and
:func:`linear_term` (``<sg(g), theta - sg(theta)>``, whose gradient is
``g``).

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 2-3 (the estimation problem).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxbdl.gradients.distribution_protocol import Distribution

__all__ = ["Estimator", "check_num_samples", "draw_samples", "average",
           "linear_term", "linearized_surrogate", "per_sample", "surrogate"]

Array = jax.Array
Params = Any  # a parameter dict (pytree) of a Distribution
Fn = Callable[[Array], Array]
SamplesFn = Callable[[Params, Array, int], Params]
GradFn = Callable[[Params, Array, int], Params]
LossFn = Callable[[Params, Array, int], Array]


class Estimator(NamedTuple):
  """A Monte Carlo gradient estimator (see the module docstring).

  Attributes:
    name: short name, e.g. ``"score_function"``.
    samples: ``(f, dist) -> samples_fn(params, key, num_samples)`` returning
      per-sample estimates with a leading ``[num_samples]`` axis.
    surrogate: ``(f, dist) -> loss(params, key, num_samples) -> scalar`` with
      ``jax.grad(loss)`` equal to the averaged estimate for the same key.
    reparameterized: True if the estimate differentiates ``f`` along the
      sample path (pathwise, incl. implicit reparameterisation); such an
      estimator needs ``dist.reparameterized`` and a differentiable ``f``.
  """
  name: str
  samples: Callable[[Fn, Distribution], SamplesFn]
  surrogate: Callable[[Fn, Distribution], LossFn]
  reparameterized: bool = False

  def __call__(self, f: Fn, dist: Distribution) -> GradFn:
    """Returns ``grad_fn(params, key, num_samples)``: the averaged estimate."""
    return average(self.samples(f, dist))


# ---------------------------------------------------------------------------
# Helpers shared by estimators and control variates.


def check_num_samples(num_samples: Any, minimum: int = 1) -> int:
  """Checks ``num_samples`` is a static Python int >= ``minimum``.

  Raises:
    ValueError: naming the value, otherwise (also for traced values: pass it
      with ``static_argnums`` under ``jax.jit``).
  """
  if isinstance(num_samples, bool) or not isinstance(num_samples,
                                                     numbers.Integral):
    raise ValueError(
        f"num_samples must be a static Python int, got {num_samples!r} "
        "(under jax.jit pass it with static_argnums)")
  if num_samples < minimum:
    raise ValueError(f"num_samples must be >= {minimum}, got {num_samples}")
  return int(num_samples)


def draw_samples(dist: Distribution, params: Params, key: Array,
                 num_samples: int) -> Array:
  """The base samples ``dist.sample(params, key, (S,))``: ``[S, *event]``.

  These are the points where the score-function and pathwise estimators
  evaluate ``f`` for the same ``key``, so control variates can use
  ``f(x_i)`` (the measure-valued estimator draws its own points).
  """
  num_samples = check_num_samples(num_samples)
  return dist.sample(params, key, (num_samples,))


def average(samples_fn: SamplesFn) -> GradFn:
  """Turns per-sample estimates ``[S, ...]`` into their mean over samples."""

  def grad_fn(params, key, num_samples):
    per_sample = samples_fn(params, key, num_samples)
    return jax.tree.map(lambda g: jnp.mean(g, axis=0), per_sample)

  return grad_fn


def _scalar_f(f: Fn, x: Array) -> Array:
  y = jnp.asarray(f(x))
  if y.shape != ():
    raise ValueError(f"f must return a scalar for one sample of shape "
                     f"{jnp.shape(x)}, got shape {y.shape}")
  return y


def _check_dist(dist: Any) -> Distribution:
  if not isinstance(dist, Distribution):
    raise ValueError("dist must be a jaxbdl.gradients.distributions."
                     f"Distribution (e.g. distributions.Normal), got {dist!r}")
  return dist


def _prepare(dist: Distribution, params: Params, num_samples: Any,
             minimum: int = 1) -> int:
  dist.event_shape(params)  # validates the parameter dict
  return check_num_samples(num_samples, minimum)


def linear_term(grads: Params, params: Params) -> Array:
  """``sum <sg(g), theta - sg(theta)>`` over the leaves: 0 in value, ``g``
  in gradient (``grads`` and ``params`` have the same tree structure)."""
  return sum(jnp.sum(jax.lax.stop_gradient(g) *
                     (p - jax.lax.stop_gradient(p)))
             for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params)))


def linearized_surrogate(estimator_samples: Callable[[Fn, Distribution],
                                                     SamplesFn]):
  """A surrogate for any estimator, linear in the parameters.

  ``loss = sg(mean_i f(x_i)) + sum <sg(grad), theta - sg(theta)>``.

  The value is ``mean_i f(x_i)`` at the :func:`draw_samples` points (costs
  ``S`` extra evaluations of ``f``); the gradient is exactly the averaged
  estimate of ``estimator_samples`` for the same key.

  Args:
    estimator_samples: ``(f, dist) -> samples_fn``.

  Returns:
    ``(f, dist) -> loss(params, key, num_samples) -> scalar``.
  """

  def make(f: Fn, dist: Distribution) -> LossFn:
    grad_fn = average(estimator_samples(f, dist))

    def loss(params, key, num_samples):
      sg_params = jax.lax.stop_gradient(params)
      grads = jax.lax.stop_gradient(grad_fn(sg_params, key, num_samples))
      xs = jax.lax.stop_gradient(draw_samples(dist, sg_params, key,
                                              num_samples))
      value = jnp.mean(jax.vmap(lambda x: _scalar_f(f, x))(xs))
      return jax.lax.stop_gradient(value) + linear_term(grads, params)

    return loss

  return make


def _checked(estimator: Any) -> Estimator:
  if not isinstance(estimator, Estimator):
    raise ValueError(f"expected an estimators.Estimator, got {estimator!r}")
  return estimator


def per_sample(estimator: Estimator) -> Callable[[Fn, Distribution],
                                                 SamplesFn]:
  """``per_sample(est)(f, dist)(params, key, S)`` -> ``[S, ...]`` estimates."""
  return _checked(estimator).samples


def surrogate(estimator: Estimator) -> Callable[[Fn, Distribution], LossFn]:
  """``surrogate(est)(f, dist)(params, key, S)`` -> scalar; its grad = est's."""
  return _checked(estimator).surrogate
