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
:class:`jaxbdl.gradients.estimators.Estimator` with ANY control variate and returns a new
estimator with the same contract:

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

Cost of the combinator: the estimator runs on ``f`` and, if used, on ``h``
and on the constant 1; baselines need ``f`` at the
:func:`jaxbdl.gradients.estimators.draw_samples` points (``S`` extra evaluations).

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
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp

from jaxbdl.gradients import distributions as dists
from jaxbdl.gradients import estimators as ests

__all__ = [
    "ControlVariate", "StatefulEstimator", "MovingAverageState",
    "with_control_variate", "moving_average_baseline",
    "leave_one_out_baseline", "delta_method", "cross_fitted_coefficient",
    "same_sample_coefficient",
]

Array = jax.Array
Params = Any
CvState = Any
Fn = Callable[[Array], Array]
# (g_f [S, ...], c [S, ...]) -> beta, broadcastable to [S, ...].
CoefficientFn = Callable[[Array, Array], Array]


class ControlVariate(NamedTuple):
  """A control variate: pure functions, any of which may be ``None``.

  Attributes:
    name: short name, e.g. ``"delta_method"``.
    init: ``(params) -> state`` for a stateful CV; ``None`` if stateless.
    function: ``(f, dist, frozen_params, state) -> h`` with ``h(x) -> scalar``
      for one sample; ``frozen_params`` are ``stop_gradient``-ed.
    expected_value: ``(f, dist, params, state) -> E_{q(params)}[h]``, a
      scalar differentiable in ``params`` (``h``'s own parameters frozen).
      Required when ``function`` is given.
    baseline: ``(f_values [S], state) -> b [S]``, ``b_i`` independent of
      ``x_i``; ``f_values`` are ``f`` at :func:`estimators.draw_samples`.
    update: ``(f_values [S], state) -> new_state`` (stateful CVs).
    couples_samples: True if ``b_i`` depends on the other samples of the call
      (leave-one-out); then a coefficient estimated from the samples would
      depend on ``x_i`` through the other samples' baselines and bias the
      estimate, so :func:`with_control_variate` only allows a fixed one.
  """
  name: str
  init: Callable[[Params], CvState] | None = None
  function: Callable[..., Fn] | None = None
  expected_value: Callable[..., Array] | None = None
  baseline: Callable[[Array, CvState], Array] | None = None
  update: Callable[[Array, CvState], CvState] | None = None
  couples_samples: bool = False


class StatefulEstimator(NamedTuple):
  """An estimator whose control variate threads a state explicitly.

  Attributes:
    name: e.g. ``"score_function+moving_average_baseline"``.
    init: ``(params) -> cv_state``.
    samples: ``(f, dist) -> fn(params, key, num_samples, cv_state) ->
      (grads [S, ...], new_cv_state)``.
    surrogate: ``(f, dist) -> loss(params, key, num_samples, cv_state) ->
      (scalar, new_cv_state)``; ``jax.grad(loss, has_aux=True)`` gives the
      averaged estimate of ``samples`` (same key, same state) and the state.
    reparameterized: the wrapped estimator's flag.
  """
  name: str
  init: Callable[[Params], CvState]
  samples: Callable[..., Callable[..., tuple[Params, CvState]]]
  surrogate: Callable[..., Callable[..., tuple[Array, CvState]]] | None = None
  reparameterized: bool = False

  def __call__(self, f: Fn, dist: dists.Distribution):
    """``grad_fn(params, key, num_samples, cv_state) -> (grads, new_state)``."""
    samples_fn = self.samples(f, dist)

    def grad_fn(params, key, num_samples, cv_state):
      per_sample, new_state = samples_fn(params, key, num_samples, cv_state)
      return jax.tree.map(lambda g: jnp.mean(g, axis=0), per_sample), new_state

    return grad_fn


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


def _cv_samples(estimator: ests.Estimator, cv: ControlVariate, coefficient):
  """(f, dist) -> fn(params, key, S, state) -> (grads [S, ...], new_state,
  f_values [S] or None)."""

  def make(f: Fn, dist: dists.Distribution):
    g_f_fn = estimator.samples(f, dist)
    g_one_fn = estimator.samples(_one, dist) if cv.baseline else None

    def fn(params, key, num_samples, state):
      num_samples = ests.check_num_samples(num_samples)
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
        xs = ests.draw_samples(dist, jax.lax.stop_gradient(params), key,
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
        xs = ests.draw_samples(dist, sg_params, key, num_samples)
        f_values = jax.vmap(f)(xs)
      grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), per_sample)
      lin = sum(jnp.sum(jax.lax.stop_gradient(g) *
                        (p - jax.lax.stop_gradient(p)))
                for g, p in zip(jax.tree.leaves(grads),
                                jax.tree.leaves(params)))
      value = jax.lax.stop_gradient(jnp.mean(f_values))
      return value + lin, new_state

    return loss

  return make_loss


def with_control_variate(
    estimator: ests.Estimator, cv: ControlVariate,
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
  if not isinstance(estimator, ests.Estimator):
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

  return ests.Estimator(name, samples, surrogate,
                        reparameterized=estimator.reparameterized)


# ---------------------------------------------------------------------------
# Control variates.


class MovingAverageState(NamedTuple):
  """State of :func:`moving_average_baseline`.

  Attributes:
    average: the (biased) exponential moving average of ``f``, scalar.
    count: number of updates so far, int32 scalar.
    weight: ``1 - prod_j decay_j``, the total weight of the average (its
      zero-debiasing divisor; ``1 - decay^count`` for a constant decay).
  """
  average: Array
  count: Array
  weight: Array


def moving_average_baseline(
    decay: float = 0.9,
    use_decay_early_training_heuristic: bool = False) -> ControlVariate:
  """Baseline ``b`` = bias-corrected EMA of past calls' mean ``f``.

  ``avg_i = decay_i * avg_{i-1} + (1 - decay_i) * mean_j f(x_j)`` and
  ``b = avg / (1 - prod_i decay_i)`` (Adam-style zero-debiasing; ``b = 0``
  before the first update). ``decay_i = decay``, or with
  ``use_decay_early_training_heuristic`` ``decay_i = min(decay, (1 + i) /
  (10 + i))`` for update ``i = 0, 1, ...`` (optax's former
  ``moving_avg_baseline``: the average forgets its first, poor values
  faster). The baseline of a call is read before its update, so it does not
  depend on the call's samples (unbiased).

  Args:
    decay: in [0, 1).
    use_decay_early_training_heuristic: see above.
  """
  if not 0.0 <= decay < 1.0:
    raise ValueError(f"decay must be in [0, 1), got {decay}")

  def init(params):
    del params
    return MovingAverageState(jnp.zeros((), jnp.float32),
                              jnp.zeros((), jnp.int32),
                              jnp.zeros((), jnp.float32))

  def baseline(f_values, state):
    ok = state.weight > 0
    b = jnp.where(ok, state.average / jnp.where(ok, state.weight, 1.0), 0.0)
    return jnp.broadcast_to(b, f_values.shape)

  def update(f_values, state):
    d = jnp.asarray(decay, jnp.float32)
    if use_decay_early_training_heuristic:
      i = state.count.astype(jnp.float32)
      d = jnp.minimum(d, (1.0 + i) / (10.0 + i))
    avg = d * state.average + (1.0 - d) * jnp.mean(f_values)
    weight = 1.0 - d * (1.0 - state.weight)
    return MovingAverageState(avg.astype(jnp.float32), state.count + 1,
                              weight.astype(jnp.float32))

  return ControlVariate("moving_average_baseline", init=init,
                        baseline=baseline, update=update)


def leave_one_out_baseline() -> ControlVariate:
  """``b_i = (sum_j f(x_j) - f(x_i)) / (S - 1)``; needs ``num_samples >= 2``.

  With the score function this is Kool et al.'s (2019) estimator
  ``1/(S-1) sum_i (f_i - mean f) grad log q(x_i)``.
  """

  def baseline(f_values, state):
    del state
    s = f_values.shape[0]
    if s < 2:
      raise ValueError(f"leave_one_out_baseline needs num_samples >= 2, got "
                       f"{s}")
    return (jnp.sum(f_values) - f_values) / (s - 1)

  return ControlVariate("leave_one_out_baseline", baseline=baseline,
                        couples_samples=True)


def _moments(dist, params):
  """``(mean [D], covariance [D, D], event_shape)`` from the capabilities."""
  if dist.mean is None or dist.covariance is None:
    raise ValueError(f"delta_method needs a distribution with mean and "
                     f"covariance (Distribution.mean/.covariance); "
                     f"{dist.name} has none")
  mean = dist.mean(params)
  return mean.reshape(-1), dist.covariance(params), mean.shape


def delta_method() -> ControlVariate:
  """Second-order Taylor expansion of ``f`` at the mean.

  Any distribution with ``mean`` and ``covariance``; see the module
  docstring for ``h`` and ``E_q[h]``.
  """

  def taylor(f, mean_d, shape):
    m = jax.lax.stop_gradient(mean_d)
    f_flat = lambda z: f(z.reshape(shape))
    return m, f_flat(m), jax.grad(f_flat)(m), jax.hessian(f_flat)(m)

  def function(f, dist, frozen_params, state):
    del state
    mean_d, _, shape = _moments(dist, frozen_params)
    m, f_m, g_d, h_dxd = taylor(f, mean_d, shape)

    def h(x):
      dx = x.reshape(-1) - m
      return f_m + g_d @ dx + 0.5 * dx @ (h_dxd @ dx)

    return h

  def expected_value(f, dist, params, state):
    del state
    mean_d, cov_dxd, shape = _moments(dist, params)
    m, f_m, g_d, h_dxd = taylor(f, mean_d, shape)
    dmu = mean_d - m  # zero in value, identity in gradient
    return (f_m + g_d @ dmu +
            0.5 * (dmu @ (h_dxd @ dmu) + jnp.sum(h_dxd * cov_dxd)))

  return ControlVariate("delta_method", function=function,
                        expected_value=expected_value)
