r"""Control variates for Monte Carlo gradient estimators, as combinators.

A control variate (CV) lowers the variance of a gradient estimator ``g(f)`` of
``grad_theta E_q[f]`` without changing its mean (Mohamed et al. 2020, sec. 7):

  g_cv = g(f) - beta * [ g(h) + b_i g(1) - grad_theta E_q[h] ],

where, for the same samples (same key),

* ``h(x)`` is a function with a closed-form expectation ``E_q[h]``, built at
  frozen (``stop_gradient``) parameters, so ``E[g(h)] = grad_theta E_q[h]``;
* ``b_i`` is a *baseline* for sample ``i``: a number independent of ``x_i``
  (it may depend on the other samples or on a running state), so
  ``E[b_i g_i(1)] = 0`` (``g(1)`` is the score for the score-function
  estimator and exactly 0 for the pathwise and measure-valued estimators:
  baselines only help the score function);
* ``beta`` is the coefficient: a number, or a rule estimating the optimal
  ``Cov(g(f), c) / Var(c)`` per parameter element from the samples
  (:func:`cross_fitted_coefficient`, unbiased; :func:`same_sample_coefficient`,
  O(1/S) biased).

Estimators are linear in ``f``, so ``g(f) - beta b_i g(1) = g(f - beta b_i)``:
this is the classic baseline ``(f(x_i) - b_i) grad log q(x_i)``.

A :class:`ControlVariate` is a NamedTuple of pure functions (``init``,
``function``, ``expected_value``, ``baseline``, ``update``; unused ones are
``None``). :func:`with_control_variate` pairs ANY
:class:`jaxbdl.gradients.estimators.Estimator` with ANY control variate and
returns a new estimator with the same contract:

* stateless CV (``init is None``): an ``Estimator`` again:
  ``est(f, dist)(params, key, num_samples) -> grads``, plus ``.samples`` and
  ``.surrogate``;
* stateful CV: a :class:`StatefulEstimator`:
  ``est(f, dist)(params, key, num_samples, cv_state) -> (grads, new_cv_state)``
  with ``cv_state = est.init(params)``; the state is a NamedTuple; its
  ``.surrogate(f, dist)(params, key, num_samples, cv_state) -> (loss,
  new_cv_state)`` trains with ``jax.grad(loss_fn, has_aux=True)``.

Both keep the wrapped estimator's ``reparameterized`` flag. Surrogates are
linear in the parameters: ``loss = sg(mean_i f(x_i)) + <sg(g_cv), theta -
sg(theta)>``, where ``g_cv`` is the CV-corrected estimate of THIS call (same
key, so the baseline is the one applied to the samples that were used) and
``f(x_i)`` are the values the baseline was computed from (no extra
evaluations when the CV has a baseline).

Provided CVs:

* :func:`moving_average_baseline` (stateful): ``b`` = bias-corrected
  exponential moving average of ``f`` over past calls, optionally with the
  early-training decay ``decay_i = min(decay, (1 + i) / (10 + i))`` of
  optax's former ``moving_avg_baseline``. The baseline used in a
  call comes from the state BEFORE this call's samples are folded in, so it is
  independent of them and the estimator stays exactly unbiased.
* :func:`leave_one_out_baseline` (Kool, van Hoof & Welling 2019):
  ``b_i = mean_{j != i} f(x_j)``; unbiased; needs ``num_samples >= 2``.
* :func:`delta_method` (sec. 7.1 there; Paisley, Blei & Jordan 2012), any
  distribution with ``mean`` and ``covariance`` (Normal, Laplace, Gamma,
  Beta, Dirichlet, multivariate Normals, ...): the second-order Taylor
  expansion of ``f`` at ``m = stop_gradient(mu)``, ``mu = dist.mean``,
  ``h(x) = f(m) + grad f(m)^T (x - m) + 0.5 (x - m)^T H(m) (x - m)``,
  with ``E_q[h] = f(m) + grad f(m)^T (mu - m)
  + 0.5 [(mu - m)^T H (mu - m) + tr(H Sigma)]``, ``Sigma = dist.covariance``
  (for a diagonal Gaussian ``tr(H Sigma) = sum_d H_dd sigma_d^2``, so
  ``grad_mu E[h] = grad f(m)`` and ``grad_sigma E[h] = diag(H) * sigma``).
  Cost per call: one gradient and one Hessian of ``f`` at the mean
  (``D`` Hessian-vector products, ``[D, D]`` memory for ``D = loc.size``),
  plus running the estimator a second time on ``h``. Exact (zero variance)
  for quadratic ``f``; where ``f`` is far from quadratic over the bulk of
  ``q`` (e.g. ``exp(-x^2/2)`` with ``sigma ~ 1``) it can RAISE the variance
  with ``beta = 1``; a fitted ``beta`` (:func:`cross_fitted_coefficient`)
  limits the damage.

Where they live (every name is importable from here): the
:class:`ControlVariate` and :class:`StatefulEstimator` types in
:mod:`jaxbdl.gradients.control_variate_protocol`; the baselines in
:mod:`jaxbdl.gradients.baselines`; :func:`delta_method` in
:mod:`jaxbdl.gradients.delta_method`; the coefficients and
:func:`with_control_variate` here.

Cost of the combinator: the estimator runs on ``f`` and, if used, on ``h``
and on the constant 1; baselines need ``f`` at the
:func:`jaxbdl.gradients.estimators.draw_samples` points (``S`` extra
evaluations).

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 7.
  W. Kool, H. van Hoof, M. Welling. Buy 4 REINFORCE samples, get a baseline
  for free! ICLR Deep RL meets Structured Prediction workshop, 2019.
  J. Paisley, D. Blei, M. Jordan. Variational Bayesian inference with
  stochastic search. ICML 2012.
"""
from __future__ import annotations

import numbers
from typing import Callable, Union

import jax
import jax.numpy as jnp

from jaxbdl.gradients.baselines import (
    MovingAverageState, leave_one_out_baseline, moving_average_baseline)
from jaxbdl.gradients.control_variate_protocol import (
    Array, ControlVariate, Fn, StatefulEstimator)
from jaxbdl.gradients.delta_method import delta_method
from jaxbdl.gradients.distribution_protocol import Distribution
from jaxbdl.gradients.estimator_protocol import (
    Estimator, check_num_samples, draw_samples, linear_term)

__all__ = [
    "ControlVariate", "StatefulEstimator", "MovingAverageState",
    "with_control_variate", "moving_average_baseline",
    "leave_one_out_baseline", "delta_method", "cross_fitted_coefficient",
    "same_sample_coefficient",
]

# (g_f [S, ...], c [S, ...]) -> beta, broadcastable to [S, ...].
CoefficientFn = Callable[[Array, Array], Array]


# ---------------------------------------------------------------------------
# Coefficients.


def _expand_s(a: Array, ndim: int) -> Array:
  """[S] -> [S, 1, ..., 1] with ``ndim`` dims (explicit, no rank promotion)."""
  return a.reshape(a.shape + (1,) * (ndim - a.ndim))


def _optimal_beta(g: Array, c: Array, weights: Array) -> Array:
  """Cov_w(g, c) / Var_w(c) over the leading axis (0 where Var is 0)."""
  w = _expand_s(weights, g.ndim)
  n = jnp.sum(weights)
  g_mean = jnp.sum(w * g, axis=0, keepdims=True) / n
  c_mean = jnp.sum(w * c, axis=0, keepdims=True) / n
  cov = jnp.sum(w * (g - g_mean) * (c - c_mean), axis=0, keepdims=True)
  var = jnp.sum(w * jnp.square(c - c_mean), axis=0, keepdims=True)
  safe = jnp.where(var > 0, var, 1.0)
  return jnp.where(var > 0, cov / safe, 0.0)


def same_sample_coefficient(g_f: Array, c: Array) -> Array:
  """Optimal ``beta = Cov(g_f, c) / Var(c)`` per element, from all samples.

  Uses the same samples it is applied to, so the estimate is biased by
  O(1/S) (beta correlates with the noise it multiplies). Prefer
  :func:`cross_fitted_coefficient` when unbiasedness matters.
  """
  s = g_f.shape[0]
  return _optimal_beta(g_f, c, jnp.ones((s,), g_f.dtype))


def cross_fitted_coefficient(g_f: Array, c: Array) -> Array:
  """Unbiased optimal coefficient by cross-fitting two halves of the samples.

  Samples ``i < S // 2`` (half A) get ``beta`` estimated on half B and vice
  versa; each sample's ``beta`` is then independent of it, so
  ``E[beta_B c_i] = E[beta_B] E[c_i] = 0`` and the CV stays exactly unbiased
  (when ``c_i`` depends on ``x_i`` only: not with the leave-one-out baseline,
  which :func:`with_control_variate` rejects). Needs ``S >= 4`` (two samples
  per half for a variance); with few samples ``beta`` is noisy and can RAISE
  the variance, so use it with ``S >= 16`` or so.

  Returns:
    ``beta`` of shape ``[S, *g_f.shape[1:]]``.
  """
  s = g_f.shape[0]
  if s < 4:
    raise ValueError(f"cross_fitted_coefficient needs num_samples >= 4, got "
                     f"{s}")
  in_a = jnp.arange(s) < s // 2
  beta_a = _optimal_beta(g_f, c, in_a.astype(g_f.dtype))
  beta_b = _optimal_beta(g_f, c, (~in_a).astype(g_f.dtype))
  return jnp.where(_expand_s(in_a, g_f.ndim), beta_b, beta_a)


def _apply_coefficient(coefficient, g_f, c):
  if callable(coefficient):
    return jax.tree.map(lambda a, b: a - coefficient(a, b) * b, g_f, c)
  return jax.tree.map(lambda a, b: a - coefficient * b, g_f, c)


# ---------------------------------------------------------------------------
# The combinator.


def _one(x):
  del x
  return jnp.ones((), jnp.float32)


def _cv_samples(estimator: Estimator, cv: ControlVariate, coefficient):
  """(f, dist) -> fn(params, key, S, state) -> (grads [S, ...], new_state,
  f_values [S] or None)."""

  def make(f: Fn, dist: Distribution):
    g_f_fn = estimator.samples(f, dist)
    g_one_fn = estimator.samples(_one, dist) if cv.baseline else None

    def fn(params, key, num_samples, state):
      num_samples = check_num_samples(num_samples)
      g_f = g_f_fn(params, key, num_samples)
      c = jax.tree.map(jnp.zeros_like, g_f)
      if cv.function is not None:
        frozen = jax.lax.stop_gradient(params)
        h = cv.function(f, dist, frozen, state)
        g_h = estimator.samples(h, dist)(params, key, num_samples)
        grad_eh = jax.grad(lambda p: cv.expected_value(f, dist, p, state))(
            params)
        c = jax.tree.map(lambda a, gh, ge: a + gh - ge[None], c, g_h, grad_eh)
      f_values = None
      if cv.baseline is not None or cv.update is not None:
        xs = draw_samples(dist, jax.lax.stop_gradient(params), key,
                               num_samples)
        f_values = jax.lax.stop_gradient(jax.vmap(f)(xs))
      if cv.baseline is not None:
        b_s = jax.lax.stop_gradient(cv.baseline(f_values, state))
        g_one = g_one_fn(params, key, num_samples)
        c = jax.tree.map(
            lambda a, g1: a + _expand_s(b_s.astype(g1.dtype), g1.ndim) * g1,
            c, g_one)
      grads = _apply_coefficient(coefficient, g_f, c)
      new_state = state
      if cv.update is not None:
        new_state = cv.update(f_values, state)
      return grads, new_state, f_values

    return fn

  return make


def _cv_surrogate(make):
  """(f, dist) -> loss(params, key, S, state) -> (scalar, new_state).

  ``loss = sg(mean_i f(x_i)) + sum <sg(mean_i g_i), theta - sg(theta)>``:
  value the MC estimate of ``E_q[f]`` at the :func:`estimators.draw_samples`
  points (reusing the baseline's ``f`` values), gradient the CV-corrected
  estimate of the same call.
  """

  def make_loss(f, dist):
    fn = make(f, dist)

    def loss(params, key, num_samples, state):
      sg_params = jax.lax.stop_gradient(params)
      per_sample, new_state, f_values = fn(sg_params, key, num_samples, state)
      if f_values is None:
        xs = draw_samples(dist, sg_params, key, num_samples)
        f_values = jax.vmap(f)(xs)
      grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), per_sample)
      value = jax.lax.stop_gradient(jnp.mean(f_values))
      return value + linear_term(grads, params), new_state

    return loss

  return make_loss


def with_control_variate(
    estimator: Estimator, cv: ControlVariate,
    coefficient: Union[float, CoefficientFn] = 1.0):
  """Pairs a gradient estimator with a control variate.

  Args:
    estimator: e.g. ``estimators.score_function``.
    cv: e.g. ``leave_one_out_baseline()``, ``delta_method()``.
    coefficient: ``beta``: a number (1.0 is the plain CV) or a rule
      ``(g_f [S, ...], c [S, ...]) -> beta`` such as
      :func:`cross_fitted_coefficient`.

  Returns:
    For a stateless ``cv`` an :class:`estimators.Estimator` (same contract as
    ``estimator``); for a stateful one a :class:`StatefulEstimator`.

  Raises:
    ValueError: if the arguments have the wrong types.
  """
  if not isinstance(estimator, Estimator):
    raise ValueError(f"estimator must be an estimators.Estimator, got "
                     f"{estimator!r}")
  if not isinstance(cv, ControlVariate):
    raise ValueError(f"cv must be a ControlVariate, got {cv!r}")
  if not (callable(coefficient) or isinstance(coefficient, numbers.Real)):
    raise ValueError(f"coefficient must be a number or a function, got "
                     f"{coefficient!r}")
  if callable(coefficient) and cv.couples_samples:
    raise ValueError(
        f"control variate {cv.name} couples the samples of a call, so a "
        "coefficient estimated from them would bias the estimate; use a "
        "fixed number")
  if cv.function is not None and cv.expected_value is None:
    raise ValueError(f"control variate {cv.name} has a function but no "
                     "expected_value")
  name = f"{estimator.name}+{cv.name}"
  make = _cv_samples(estimator, cv, coefficient)
  if cv.init is not None:

    def stateful(f, dist):
      fn = make(f, dist)
      return lambda *args: fn(*args)[:2]

    return StatefulEstimator(name, cv.init, stateful, _cv_surrogate(make),
                             reparameterized=estimator.reparameterized)

  def samples(f, dist):
    fn = make(f, dist)
    return lambda params, key, num_samples: fn(params, key, num_samples,
                                               None)[0]

  def surrogate(f, dist):
    loss = _cv_surrogate(make)(f, dist)
    return lambda params, key, num_samples: loss(params, key, num_samples,
                                                 None)[0]

  return Estimator(name, samples, surrogate,
                        reparameterized=estimator.reparameterized)

