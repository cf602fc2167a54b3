r"""Concrete (Gumbel-softmax) relaxations of Bernoulli and Categorical samples.

Temperature ``lambda > 0`` (Maddison et al. 2017; Jang et al. 2017):

* Binary Concrete: ``z = theta + log u - log(1 - u)`` (``u ~ U(0, 1)``, so
  ``z - theta`` is standard Logistic and ``b = 1[z > 0]`` is
  Bernoulli(sigmoid(theta))); ``y = sigmoid(z / lambda)``. Density on
  ``(0, 1)`` (Maddison et al. 2017, eq. 22, ``alpha = exp(theta)``)::

    p(y) = lambda alpha y^(-lambda-1) (1-y)^(-lambda-1)
           / (alpha y^(-lambda) + (1-y)^(-lambda))^2.

* Concrete (K classes): ``z_k = log pi_k + G_k`` with ``G_k ~ Gumbel(0, 1)``
  and ``pi = softmax(logits)``; ``b = argmax z``; ``y = softmax(z / lambda)``.
  Density on the simplex w.r.t. Lebesgue measure on its first ``K - 1``
  coordinates (Maddison et al. 2017, eq. 9)::

    p(y) = (K-1)! lambda^(K-1) prod_k [pi_k y_k^(-lambda-1)]
           / (sum_k pi_k y_k^(-lambda))^K.

:func:`relaxed_bernoulli` and :func:`relaxed_categorical` are
:class:`jaxbdl.gradients.distributions.Distribution` s (reparameterised) whose
``noise`` is the SAME base noise as ``Bernoulli`` / ``Categorical``
(uniforms / Gumbels), so one key gives the hard and the relaxed sample.

:func:`hard_sample` gives the discrete sample as the float input of ``f``
(``b`` or ``one_hot(b)``), :func:`relaxed_sample` its relaxation from the
same key, and :func:`conditional_relaxed_sample` the relaxed pre-activation
``z~ ~ p(z | b)`` REBAR needs (Tucker et al. 2017, appendix): for a
Bernoulli with ``p = sigmoid(theta)`` and ``v ~ U(0, 1)``, the uniform behind
``b`` is ``u' = v p`` if ``b = 1`` and ``u' = p + v (1 - p)`` if ``b = 0``
(our Bernoulli sets ``b = 1[u < p]``), and ``z~ = theta + log(1 - u') - log
u'``. For a Categorical (``z = log pi + G``): ``z~_b = -log(-log v_b)`` and
``z~_k = -log(-log v_k / pi_k - log v_b)`` for ``k != b``. The estimators
built on these samples are in :mod:`jaxbdl.gradients.relaxations`.

Bad input: ``temperature <= 0`` or not a finite scalar raises
``ValueError``; so do logits that are not floating point. ``f`` evaluated on
the relaxed domain is checked at trace time (``_check_relaxable_f``: it must
accept float input and, where the check can run on concrete values, must not
have an identically zero gradient).

References:
  C. Maddison, A. Mnih, Y. W. Teh. The Concrete distribution: a continuous
  relaxation of discrete random variables. ICLR 2017. Eqs. (9), (22).
  E. Jang, S. Gu, B. Poole. Categorical reparameterization with
  Gumbel-softmax. ICLR 2017.
  G. Tucker, A. Mnih, C. Maddison, D. Lawson, J. Sohl-Dickstein. REBAR:
  low-variance, unbiased gradient estimates for discrete latent variable
  models. NeurIPS 2017. Appendix (conditional sample).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.gradients.discrete import Bernoulli, Categorical
from jaxbdl.gradients.distribution_protocol import (
    Array, Distribution, _expand_to, check_params)

__all__ = ["relaxed_bernoulli", "relaxed_categorical", "relaxed_sample",
           "hard_sample", "conditional_relaxed_sample", "check_temperature"]

Params = Any
Fn = Callable[[Array], Array]

_TINY = 1e-6


def check_temperature(temperature: Any, what: str) -> Any:
  """Checks a concrete temperature is a finite number > 0 (tracers pass)."""
  if isinstance(temperature, jax.core.Tracer):
    return temperature
  t = np.asarray(temperature)
  if t.shape != () or not np.issubdtype(t.dtype, np.number):
    raise ValueError(f"{what}: temperature must be a scalar number, got "
                     f"{temperature!r}")
  if not (np.isfinite(t) and t > 0):
    raise ValueError(f"{what}: temperature must be finite and > 0, got "
                     f"{float(t)}")
  return temperature


def _kind(dist: Any, what: str) -> str:
  if not isinstance(dist, Distribution):
    raise ValueError(f"{what}: dist must be distributions.Bernoulli or "
                     f"distributions.Categorical, got {dist!r}")
  if dist.relaxation in ("bernoulli", "categorical"):
    return dist.relaxation
  raise ValueError(f"{what} relaxes Bernoulli or Categorical only, got "
                   f"{dist.name} (use estimators.pathwise or "
                   "estimators.score_function)")


def _logits(dist, params):
  logits = jnp.asarray(check_params(dist.name, params,
                                    ("logits",))["logits"])
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ValueError(f"{dist.name} logits must be floating point, got "
                     f"{logits.dtype}")
  return logits


def _clip01(u):
  return jnp.clip(u, _TINY, 1.0 - _TINY)


def _pre_activation(kind, logits, noise):
  """z (logits space) from the base noise: [*E] or [*E, K]."""
  if kind == "bernoulli":
    u = _clip01(noise)
    return _expand_to(logits, u.ndim) + jnp.log1p(-u) - jnp.log(u)
  return _expand_to(jax.nn.log_softmax(logits, axis=-1), noise.ndim) + noise


def _squash(kind, z, temperature):
  if kind == "bernoulli":
    return jax.nn.sigmoid(z / temperature)
  return jax.nn.softmax(z / temperature, axis=-1)


def _hard(kind, dist, logits, noise):
  """The discrete sample as the float input of f: b [*E] or one_hot [*E, K]."""
  b = dist.transform({"logits": logits}, noise)
  if kind == "bernoulli":
    return b.astype(logits.dtype)
  return jax.nn.one_hot(b, logits.shape[-1], dtype=logits.dtype)


# ---------------------------------------------------------------------------
# f on the relaxed domain.


def _scalar(f, x, what):
  y = jnp.asarray(f(x))
  if y.shape != ():
    raise ValueError(f"{what}: f must return a scalar, got shape {y.shape}")
  return y


def _check_relaxable_f(f: Fn, kind: str, logits: Array, what: str) -> None:
  """Trace-time check that ``f`` takes relaxed input and has a gradient.

  1. ``f`` evaluated on a float point of the relaxed domain must trace (an
     ``f`` that indexes with ``b`` fails here).
  2. If ``f`` does not close over traced values, its value and gradient at
     a few fixed interior points are computed on concrete values; values
     that differ while every gradient is exactly zero mean ``f`` is
     piecewise constant in the relaxation (thresholds, rounding).
  """
  hint = (f"{what} evaluates f at relaxed (continuous) samples, so f must be "
          "defined and differentiable on the reals; use "
          "estimators.score_function (optionally with a control variate) "
          "for this f")
  shape, dtype = logits.shape, logits.dtype
  # Fixed interior points, not 0.5 (a symmetric f can have zero slope there).
  levels = np.array([0.23, 0.61, 0.87], np.float64)
  if kind == "bernoulli":
    points = [np.full(shape, l) for l in levels]
  else:
    k = shape[-1]
    w = np.exp(np.arange(k) * np.log(3.0) * 0.5)
    points = [np.broadcast_to(np.roll(w, i) / np.sum(w), shape) for i in
              range(min(3, k))]
  try:
    value_and_grad = jax.value_and_grad(lambda x: _scalar(f, x, what))
    with jax.ensure_compile_time_eval():
      probes = [value_and_grad(jnp.asarray(p, dtype)) for p in points]
  except (TypeError, IndexError, jax.errors.ConcretizationTypeError) as e:
    raise ValueError(f"{hint} (f failed on relaxed input: "
                     f"{type(e).__name__})") from e
  if any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(probes)):
    return  # f closes over traced values: cannot check values here.
  values = [float(v) for v, _ in probes]
  grads = [np.asarray(g) for _, g in probes]
  if any(not np.all(np.isfinite(g)) for g in grads):
    raise ValueError(f"{hint} (f has a non-finite gradient on relaxed input)")
  # A constant f (e.g. the constant 1 that control_variates runs to get
  # baselines) is fine: its gradient estimate is zero. A piecewise-constant f
  # changes value between the probes while its gradient is zero at each.
  if all(np.all(g == 0) for g in grads) and len(set(values)) > 1:
    raise ValueError(f"{hint} (f has zero gradient at every probed relaxed "
                     "point: it is piecewise constant, e.g. thresholds b)")


# ---------------------------------------------------------------------------
# Concrete distributions.


def relaxed_sample(dist: Distribution, params: Params, key: Array,
                   temperature, shape=()) -> Array:
  """Relaxed sample ``y``: ``[*shape, *E]`` (Bernoulli), ``[*shape, *E, K]``.

  Uses ``dist.noise`` with ``key``, so ``hard_sample`` with the same key is
  the discrete sample it relaxes.
  """
  kind = _kind(dist, "relaxed_sample")
  check_temperature(temperature, "relaxed_sample")
  logits = _logits(dist, params)
  noise = dist.noise({"logits": logits}, key, shape)
  return _squash(kind, _pre_activation(kind, logits, noise), temperature)


def hard_sample(dist: Distribution, params: Params, key: Array,
                shape=()) -> Array:
  """``dist.sample`` as float input of ``f`` (one-hot for a Categorical)."""
  kind = _kind(dist, "hard_sample")
  logits = _logits(dist, params)
  noise = dist.noise({"logits": logits}, key, shape)
  return _hard(kind, dist, logits, noise)


def conditional_relaxed_sample(dist: Distribution, logits: Array,
                               b: Array, v: Array) -> Array:
  """``z~ ~ p(z | b; logits)``, differentiable in ``logits`` (``b`` fixed).

  Args:
    dist: ``Bernoulli`` or ``Categorical``.
    logits: ``[*E]`` or ``[*E, K]``.
    b: the hard sample as :func:`hard_sample` returns it (float 0/1
      ``[*E]``, or one-hot ``[*E, K]``).
    v: ``U(0, 1)`` noise of the shape of ``logits``.

  Returns:
    the pre-activation ``z~`` of the shape of ``logits``.
  """
  kind = _kind(dist, "conditional_relaxed_sample")
  v = _clip01(v)
  if kind == "bernoulli":
    p = jax.nn.sigmoid(logits)
    u = jnp.where(b > 0.5, v * p, p + v * (1.0 - p))
    u = _clip01(u)
    return logits + jnp.log1p(-u) - jnp.log(u)
  log_pi = jax.nn.log_softmax(logits, axis=-1)
  log_v = jnp.log(v)
  log_v_b = jnp.sum(b * log_v, axis=-1, keepdims=True)  # [*E, 1]
  z_top = -jnp.log(-log_v)
  z_other = -jnp.log(-log_v * jnp.exp(-log_pi) - log_v_b)
  return jnp.where(b > 0.5, z_top, z_other)


def _binary_concrete_log_density(logits, y, lam):
  """Binary Concrete ``log p(y)``: logits ``[*E]``, y ``[*batch, *E]`` in
  (0, 1) -> ``[*batch]`` (Maddison et al. 2017, eq. 22)."""
  nd = logits.ndim
  log_y, log_1my = jnp.log(y), jnp.log1p(-y)
  x = log_y - log_1my                      # logit(y) = z / lambda
  l = logits.reshape((1,) * (y.ndim - nd) + logits.shape)
  # z = lambda x is Logistic(theta, 1); change of variables to y.
  lp = (jnp.log(lam) + l - lam * x - 2.0 * jax.nn.softplus(l - lam * x)
        - log_y - log_1my)
  return jnp.sum(lp, axis=tuple(range(y.ndim - nd, y.ndim)))


def _concrete_log_density(logits, y, lam):
  """Concrete ``log p(y)``: logits ``[*E, K]``, y ``[*batch, *E, K]`` on the
  simplex -> ``[*batch]`` (Maddison et al. 2017, eq. 9)."""
  nd = logits.ndim
  k = logits.shape[-1]
  log_pi = jax.nn.log_softmax(logits, axis=-1)
  log_pi = log_pi.reshape((1,) * (y.ndim - nd) + log_pi.shape)
  log_y = jnp.log(y)
  lp = (math.lgamma(k) + (k - 1) * jnp.log(lam)
        + jnp.sum(log_pi - (lam + 1.0) * log_y, axis=-1)
        - k * jax.nn.logsumexp(log_pi - lam * log_y, axis=-1))
  return jnp.sum(lp, axis=tuple(range(lp.ndim - (nd - 1), lp.ndim)))


def _no_closed_form(what):
  def fn(*args):
    del args
    raise ValueError(f"{what} has no closed form for Concrete "
                     "distributions; estimate it by Monte Carlo with "
                     "log_prob")
  return fn


def _concrete(name, base, log_density, event_shape, temperature):
  """The relaxation of ``base`` (Bernoulli or Categorical: its
  ``relaxation``) at ``temperature``.

  ``noise`` is ``base.noise``; ``transform`` is ``y = sigma_lambda(z)``,
  ``z`` the pre-activation of the base noise; ``log_prob(params, y)`` checks
  ``y`` ends with ``logits.shape`` and returns ``log_density(logits, y,
  lambda)``; ``entropy`` and ``kl`` raise (no closed form).
  """

  kind = base.relaxation

  def transform(params, noise):
    logits = _logits(base, params)
    return _squash(kind, _pre_activation(kind, logits, jnp.asarray(noise)),
                   temperature)

  def log_prob(params, y):
    logits = _logits(base, params)
    y = jnp.asarray(y, logits.dtype)
    nd = logits.ndim
    if y.ndim < nd or y.shape[y.ndim - nd:] != logits.shape:
      raise ValueError(f"{name}.log_prob: y of shape {y.shape} does not end "
                       f"with the event shape {logits.shape}")
    return log_density(logits, y, jnp.asarray(temperature, logits.dtype))

  return Distribution(
      name=name, param_names=("logits",), reparameterized=True,
      noise=base.noise, transform=transform, log_prob=log_prob,
      entropy=_no_closed_form(f"{name}.entropy"),
      kl=_no_closed_form(f"{name}.kl"), event_shape=event_shape)


def relaxed_bernoulli(temperature) -> Distribution:
  """The Binary Concrete distribution (params ``{"logits": [*E]}``).

  ``noise`` is Bernoulli's (``U(0, 1)``), ``transform`` gives
  ``y = sigmoid((logits + log u - log(1-u)) / temperature)``; ``log_prob``
  is the density above; ``entropy`` and ``kl`` raise (no closed form).
  """
  check_temperature(temperature, "relaxed_bernoulli")
  return _concrete("RelaxedBernoulli", Bernoulli,
                   _binary_concrete_log_density, Bernoulli.event_shape,
                   temperature)


def relaxed_categorical(temperature) -> Distribution:
  """The Concrete distribution (params ``{"logits": [*E, K]}``).

  Samples ``[*shape, *E, K]`` on the simplex (the event shape is
  ``logits.shape``, unlike Categorical's ``logits.shape[:-1]``).
  """
  check_temperature(temperature, "relaxed_categorical")
  return _concrete(
      "RelaxedCategorical", Categorical, _concrete_log_density,
      lambda params: tuple(_logits(Categorical, params).shape), temperature)
