r"""Continuous relaxations of discrete variables and the estimators built on them.

Gradients of ``E_{b ~ q(b; theta)}[f(b)]`` for a Bernoulli or Categorical
``q`` (:mod:`jaxbdl.gradients.distributions`) with ``f`` a function that is also
DEFINED AND DIFFERENTIABLE ON THE RELAXED DOMAIN: reals in ``[0, 1]`` for a
Bernoulli event ``[*E]``, points of the probability simplex ``[*E, K]`` for a
Categorical (where a hard sample is ``one_hot(b)``). The score-function
estimator (:data:`jaxbdl.gradients.estimators.score_function`) needs no such ``f``.

Concrete / Gumbel-softmax relaxations (Maddison et al. 2017; Jang et al.
2017), temperature ``lambda > 0``:

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

Estimators (:class:`jaxbdl.gradients.estimators.Estimator`, the contract of
``pathwise`` and ``score_function``: ``est(f, dist)(params, key, S)``,
``est.samples``, ``est.surrogate``; ``dist`` is ``Bernoulli`` or
``Categorical``; they compose with
:func:`jaxbdl.gradients.control_variates.with_control_variate`):

* :func:`gumbel_softmax` (``temperature``): ``grad_theta f(y)`` at the
  relaxed sample. BIASED: it is the exact gradient of ``E[f(y_lambda)]``,
  not of ``E[f(b)]``; the bias vanishes as ``lambda -> 0`` while the
  variance grows (``dy/dtheta ~ 1/lambda`` near the threshold).
* :data:`straight_through` (Bengio et al. 2013): the forward pass uses the
  hard ``b`` and the backward pass treats ``b`` as if it were its mean
  ``p = sigmoid(theta)`` (``softmax(logits)``): ``grad f(b) . dp/dtheta``.
  BIASED even for ``S -> infinity``; for ``f(b) = (b - t)^2`` its mean is
  ``2 (p - t) p (1 - p)`` against the exact ``(1 - 2t) p (1 - p)``.
* :func:`straight_through_gumbel` (Jang et al. 2017): hard ``b`` forward,
  ``grad`` of the relaxed ``y`` backward. Biased.
* :func:`rebar` (Tucker et al. 2017, eq. 6): with ``c(z) = eta f(sigma_lambda
  (z))`` and ``z~ ~ p(z | b)`` the conditional relaxed sample,

    g = [f(b) - c(z~)] grad log q(b) + grad c(z) - grad c(z~),

  where ``grad c(z)`` and ``grad c(z~)`` are pathwise (``z~`` reparameterised
  through ``p(z | b; theta)`` with ``b`` held fixed). UNBIASED for every
  ``eta`` and ``lambda``.
* :func:`relax` (Grathwohl et al. 2018, eq. 8): the same estimator with a
  free-form control ``c_phi(z)`` (a network); unbiased for every ``phi``, so
  ``phi`` is trained to minimise the variance: ``grad_phi Var[g] =
  grad_phi E[|g|^2]`` (:func:`variance_loss`). REBAR with learned
  ``(eta, log lambda)`` is RELAX with :func:`rebar_control`.

Conditional sample ``z~ ~ p(z | b)`` (Tucker et al. 2017, appendix): for a
Bernoulli with ``p = sigmoid(theta)`` and ``v ~ U(0, 1)``, the uniform
behind ``b`` is ``u' = v p`` if ``b = 1`` and ``u' = p + v (1 - p)`` if
``b = 0`` (our Bernoulli sets ``b = 1[u < p]``), and
``z~ = theta + log(1 - u') - log u'``. For a Categorical
(``z = log pi + G``): ``z~_b = -log(-log v_b)`` and
``z~_k = -log(-log v_k / pi_k - log v_b)`` for ``k != b``.

Bad input: ``temperature <= 0`` raises ``ValueError``; ``rebar`` / ``relax``
/ the relaxed estimators check at trace time that ``f`` accepts relaxed
(float) input and, where the check can run on concrete values, that its
gradient there is not identically zero (``f`` thresholds or rounds ``b``);
either failure raises ``ValueError`` pointing to ``score_function``.

References:
  C. Maddison, A. Mnih, Y. W. Teh. The Concrete distribution: a continuous
  relaxation of discrete random variables. ICLR 2017.
  E. Jang, S. Gu, B. Poole. Categorical reparameterization with
  Gumbel-softmax. ICLR 2017.
  Y. Bengio, N. Leonard, A. Courville. Estimating or propagating gradients
  through stochastic neurons for conditional computation. arXiv:1308.3432.
  G. Tucker, A. Mnih, C. Maddison, D. Lawson, J. Sohl-Dickstein. REBAR:
  low-variance, unbiased gradient estimates for discrete latent variable
  models. NeurIPS 2017.
  W. Grathwohl, D. Choi, Y. Wu, G. Roeder, D. Duvenaud. Backpropagation
  through the void: optimizing control variates for black-box gradient
  estimation. ICLR 2018.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.gradients import distributions as dists
from jaxbdl.gradients import estimators as ests

__all__ = [
    "relaxed_bernoulli", "relaxed_categorical", "relaxed_sample",
    "hard_sample", "conditional_relaxed_sample", "gumbel_softmax",
    "straight_through", "straight_through_gumbel", "rebar", "relax",
    "rebar_control", "mlp_control", "variance_loss", "check_temperature",
]

Array = jax.Array
Params = Any
Fn = Callable[[Array], Array]
# control(phi, f, z, kind) -> scalar: z is the relaxed PRE-activation
# (logits space), [*E] for a Bernoulli and [*E, K] for a Categorical; kind is
# "bernoulli" or "categorical" (which squashing sigma_lambda applies).
Control = Callable[[Any, Fn, Array, str], Array]

_TINY = 1e-6


# ---------------------------------------------------------------------------
# Helpers.


def _make_estimator(name, samples, surrogate, reparameterized=True):
  """An ``Estimator`` by keyword; fills optional fields when they exist.

  ``reparameterized`` (when ``Estimator`` has that field): True for the
  relaxed pathwise estimators (gumbel_softmax, straight-through: they
  differentiate ``f`` along the relaxed path, although the discrete
  ``dist`` itself is not reparameterised), False for REBAR/RELAX.
  """
  kw = {"name": name, "samples": samples, "surrogate": surrogate}
  if "reparameterized" in ests.Estimator._fields:
    kw["reparameterized"] = reparameterized
  return ests.Estimator(**kw)


def _make_distribution(**kw):
  """A ``Distribution`` by keyword; fills optional capability fields."""
  for field in dists.Distribution._fields:
    if field not in kw and field.startswith("reparameteriz"):
      kw[field] = True
  return dists.Distribution(**kw)


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
  if not isinstance(dist, dists.Distribution):
    raise ValueError(f"{what}: dist must be distributions.Bernoulli or "
                     f"distributions.Categorical, got {dist!r}")
  if dist.name == dists.Bernoulli.name:
    return "bernoulli"
  if dist.name == dists.Categorical.name:
    return "categorical"
  raise ValueError(f"{what} relaxes Bernoulli or Categorical only, got "
                   f"{dist.name} (use estimators.pathwise or "
                   "estimators.score_function)")


def _logits(dist, params):
  logits = jnp.asarray(dists.check_params(dist.name, params,
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
    return _expand(logits, u.ndim) + jnp.log1p(-u) - jnp.log(u)
  return _expand(jax.nn.log_softmax(logits, axis=-1), noise.ndim) + noise


def _expand(a, ndim):
  """Leading singleton axes so ``a`` has ``ndim`` dims (no rank promotion)."""
  return a.reshape((1,) * (ndim - a.ndim) + a.shape)


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


def _mean(kind, logits):
  if kind == "bernoulli":
    return jax.nn.sigmoid(logits)
  return jax.nn.softmax(logits, axis=-1)


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


def _draw(kind, dist, logits, key, num_samples, with_v):
  """Base noise [S, *logits.shape] (+ the conditional-sample uniforms v)."""
  noise = dist.noise({"logits": logits}, key, (num_samples,))
  if not with_v:
    return noise, None
  v = jax.random.uniform(jax.random.fold_in(key, 1), noise.shape,
                         dtype=logits.dtype)
  return noise, v


# ---------------------------------------------------------------------------
# Concrete distributions.


def relaxed_sample(dist: dists.Distribution, params: Params, key: Array,
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


def hard_sample(dist: dists.Distribution, params: Params, key: Array,
                shape=()) -> Array:
  """``dist.sample`` as float input of ``f`` (one-hot for a Categorical)."""
  kind = _kind(dist, "hard_sample")
  logits = _logits(dist, params)
  noise = dist.noise({"logits": logits}, key, shape)
  return _hard(kind, dist, logits, noise)


def conditional_relaxed_sample(dist: dists.Distribution, logits: Array,
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


def _relaxed_log_prob_bernoulli(temperature):
  def log_prob(params, y):
    """Binary Concrete log density of ``y [*batch, *E]`` in (0, 1)."""
    logits = _logits(dists.Bernoulli, params)
    y = jnp.asarray(y, logits.dtype)
    nd = logits.ndim
    if y.ndim < nd or y.shape[y.ndim - nd:] != logits.shape:
      raise ValueError(f"RelaxedBernoulli.log_prob: y of shape {y.shape} "
                       f"does not end with the event shape {logits.shape}")
    lam = jnp.asarray(temperature, logits.dtype)
    log_y, log_1my = jnp.log(y), jnp.log1p(-y)
    x = log_y - log_1my                      # logit(y) = z / lambda
    l = logits.reshape((1,) * (y.ndim - nd) + logits.shape)
    # z = lambda x is Logistic(theta, 1); change of variables to y.
    lp = (jnp.log(lam) + l - lam * x - 2.0 * jax.nn.softplus(l - lam * x)
          - log_y - log_1my)
    return jnp.sum(lp, axis=tuple(range(y.ndim - nd, y.ndim)))
  return log_prob


def _relaxed_log_prob_categorical(temperature):
  def log_prob(params, y):
    """Concrete log density of ``y [*batch, *E, K]`` on the simplex."""
    logits = _logits(dists.Categorical, params)
    y = jnp.asarray(y, logits.dtype)
    nd = logits.ndim
    if y.ndim < nd or y.shape[y.ndim - nd:] != logits.shape:
      raise ValueError(f"RelaxedCategorical.log_prob: y of shape {y.shape} "
                       f"does not end with {logits.shape}")
    k = logits.shape[-1]
    lam = jnp.asarray(temperature, logits.dtype)
    log_pi = jax.nn.log_softmax(logits, axis=-1)
    log_pi = log_pi.reshape((1,) * (y.ndim - nd) + log_pi.shape)
    log_y = jnp.log(y)
    lp = (math.lgamma(k) + (k - 1) * jnp.log(lam)
          + jnp.sum(log_pi - (lam + 1.0) * log_y, axis=-1)
          - k * jax.nn.logsumexp(log_pi - lam * log_y, axis=-1))
    return jnp.sum(lp, axis=tuple(range(lp.ndim - (nd - 1), lp.ndim)))
  return log_prob


def _no_closed_form(what):
  def fn(*args):
    del args
    raise ValueError(f"{what} has no closed form for Concrete "
                     "distributions; estimate it by Monte Carlo with "
                     "log_prob")
  return fn


def relaxed_bernoulli(temperature) -> dists.Distribution:
  """The Binary Concrete distribution (params ``{"logits": [*E]}``).

  ``noise`` is Bernoulli's (``U(0, 1)``), ``transform`` gives
  ``y = sigmoid((logits + log u - log(1-u)) / temperature)``; ``log_prob``
  is the density above; ``entropy`` and ``kl`` raise (no closed form).
  """
  check_temperature(temperature, "relaxed_bernoulli")

  def transform(params, u):
    logits = _logits(dists.Bernoulli, params)
    u = jnp.asarray(u)
    return _squash("bernoulli", _pre_activation("bernoulli", logits, u),
                   temperature)

  return _make_distribution(
      name="RelaxedBernoulli", param_names=("logits",), reparameterized=True,
      noise=dists.Bernoulli.noise, transform=transform,
      log_prob=_relaxed_log_prob_bernoulli(temperature),
      entropy=_no_closed_form("RelaxedBernoulli.entropy"),
      kl=_no_closed_form("RelaxedBernoulli.kl"),
      event_shape=dists.Bernoulli.event_shape)


def relaxed_categorical(temperature) -> dists.Distribution:
  """The Concrete distribution (params ``{"logits": [*E, K]}``).

  Samples ``[*shape, *E, K]`` on the simplex (the event shape is
  ``logits.shape``, unlike Categorical's ``logits.shape[:-1]``).
  """
  check_temperature(temperature, "relaxed_categorical")

  def transform(params, g):
    logits = _logits(dists.Categorical, params)
    g = jnp.asarray(g)
    return _squash("categorical", _pre_activation("categorical", logits, g),
                   temperature)

  return _make_distribution(
      name="RelaxedCategorical", param_names=("logits",),
      reparameterized=True, noise=dists.Categorical.noise,
      transform=transform,
      log_prob=_relaxed_log_prob_categorical(temperature),
      entropy=_no_closed_form("RelaxedCategorical.entropy"),
      kl=_no_closed_form("RelaxedCategorical.kl"),
      event_shape=lambda params: tuple(
          _logits(dists.Categorical, params).shape))


# ---------------------------------------------------------------------------
# Pathwise-through-relaxation estimators.


def _per_sample_estimator(name, make_one, needs_v=False, check_f=True,
                          reparameterized=True):
  """Builds an Estimator from ``one(f, kind, dist) -> (params, noise, v) ->
  per-sample surrogate``, whose gradient in params is the estimate and whose
  value is ``f(b)``.
  """

  def samples(f, dist):
    kind = _kind(dist, name)
    one = make_one(f, kind, dist)

    def samples_fn(params, key, num_samples):
      num_samples = ests.check_num_samples(num_samples)
      logits = _logits(dist, params)
      if check_f:
        _check_relaxable_f(f, kind, logits, name)
      noise, v = _draw(kind, dist, jax.lax.stop_gradient(logits), key,
                       num_samples, needs_v)
      vs = v if needs_v else jnp.zeros((num_samples,), logits.dtype)
      return jax.vmap(lambda n, vv: jax.grad(
          lambda p: one(p, n, vv))(params))(noise, vs)

    return samples_fn

  def surrogate(f, dist):
    kind = _kind(dist, name)
    one = make_one(f, kind, dist)

    def loss(params, key, num_samples):
      num_samples = ests.check_num_samples(num_samples)
      logits = _logits(dist, params)
      if check_f:
        _check_relaxable_f(f, kind, logits, name)
      noise, v = _draw(kind, dist, jax.lax.stop_gradient(logits), key,
                       num_samples, needs_v)
      vs = v if needs_v else jnp.zeros((num_samples,), logits.dtype)
      return jnp.mean(jax.vmap(lambda n, vv: one(params, n, vv))(noise, vs))

    return loss

  return _make_estimator(name, samples, surrogate, reparameterized)


def _value_fix(value, differentiable):
  """``sg(value) + differentiable - sg(differentiable)``."""
  return (jax.lax.stop_gradient(value) + differentiable
          - jax.lax.stop_gradient(differentiable))


def gumbel_softmax(temperature=0.5) -> ests.Estimator:
  """Relaxed (Concrete) pathwise estimator; BIASED (see module docstring).

  Per sample ``grad_theta f(y)``, ``y = sigma_lambda(z(theta, noise))``.
  The surrogate's value is ``f(b)`` at the hard sample (so training curves
  show the discrete objective); its gradient is the relaxed one.
  """
  check_temperature(temperature, "gumbel_softmax")

  def make_one(f, kind, dist):
    def one(params, noise, v):
      del v
      logits = _logits(dist, params)
      y = _squash(kind, _pre_activation(kind, logits, noise), temperature)
      b = _hard(kind, dist, jax.lax.stop_gradient(logits), noise)
      return _value_fix(_scalar(f, b, "gumbel_softmax"),
                        _scalar(f, y, "gumbel_softmax"))
    return one

  return _per_sample_estimator("gumbel_softmax", make_one)


def _make_straight_through():
  def make_one(f, kind, dist):
    def one(params, noise, v):
      del v
      logits = _logits(dist, params)
      b = _hard(kind, dist, jax.lax.stop_gradient(logits), noise)
      mean = _mean(kind, logits)
      return _scalar(f, b + mean - jax.lax.stop_gradient(mean),
                     "straight_through")
    return one

  return _per_sample_estimator("straight_through", make_one)


# Bengio et al. (2013): hard b forward, d b / d p := 1 backward.
straight_through = _make_straight_through()


def straight_through_gumbel(temperature=1.0) -> ests.Estimator:
  """Hard ``b`` forward, the relaxed ``y``'s gradient backward (Jang 2017)."""
  check_temperature(temperature, "straight_through_gumbel")

  def make_one(f, kind, dist):
    def one(params, noise, v):
      del v
      logits = _logits(dist, params)
      y = _squash(kind, _pre_activation(kind, logits, noise), temperature)
      b = _hard(kind, dist, jax.lax.stop_gradient(logits), noise)
      return _scalar(f, b + y - jax.lax.stop_gradient(y),
                     "straight_through_gumbel")
    return one

  return _per_sample_estimator("straight_through_gumbel", make_one)


# ---------------------------------------------------------------------------
# REBAR / RELAX.


def rebar_control(temperature=None, eta=None) -> Control:
  """``c(z) = eta * f(sigma_lambda(z))``, REBAR's control (Tucker et al.).

  With numbers for both arguments the control has no parameters (pass
  ``phi=None``). With ``None`` they are read from
  ``phi = {"eta": scalar, "log_temperature": scalar}`` (learnable).
  """
  if temperature is not None:
    check_temperature(temperature, "rebar_control")

  def control(phi, f, z, kind):
    lam = (jnp.exp(phi["log_temperature"]) if temperature is None
           else temperature)
    e = phi["eta"] if eta is None else eta
    return e * _scalar(f, _squash(kind, z, lam), "rebar")

  return control


def mlp_control(hidden: int = 10, temperature_init: float = 0.5):
  """RELAX's control: ``eta f(sigma_lambda(z)) + r_rho(z)`` (Grathwohl §3.3).

  ``r_rho`` is a one-hidden-layer tanh network of the flattened ``z``;
  ``eta`` and ``log lambda`` are learned too.

  Returns:
    ``(init, control)``: ``init(key, logits) -> phi`` and the control for
    :func:`relax`.
  """
  if int(hidden) < 1:
    raise ValueError(f"mlp_control: hidden must be >= 1, got {hidden}")
  check_temperature(temperature_init, "mlp_control")
  base = rebar_control()

  def init(key, logits):
    d = int(np.prod(np.shape(logits)))
    k1, _ = jax.random.split(key)
    return {"eta": jnp.ones(()),
            "log_temperature": jnp.log(jnp.asarray(temperature_init,
                                                   jnp.float32)),
            "w1": jax.random.normal(k1, (d, hidden)) / math.sqrt(d),
            "b1": jnp.zeros((hidden,)), "w2": jnp.zeros((hidden,)),
            "b2": jnp.zeros(())}

  def control(phi, f, z, kind):
    h = jnp.tanh(z.reshape(-1) @ phi["w1"] + phi["b1"])
    return base(phi, f, z, kind) + h @ phi["w2"] + phi["b2"]

  return init, control


def _relax_estimator(name, control, phi):
  """The REBAR/RELAX estimator for ``control(phi, f, z, kind)``."""

  def make_one(f, kind, dist):
    c = lambda z: control(phi, f, z, kind)

    def one(params, noise, v):
      logits = _logits(dist, params)
      sg_logits = jax.lax.stop_gradient(logits)
      b = _hard(kind, dist, sg_logits, noise)
      f_b = jax.lax.stop_gradient(_scalar(f, b, name))
      z = _pre_activation(kind, logits, noise)
      z_tilde = conditional_relaxed_sample(dist, logits, b, v)
      c_z, c_zt = c(z), c(z_tilde)
      # The score term's multiplier c(z~) must not carry a theta-gradient,
      # but must keep its phi-dependence (variance_loss differentiates the
      # estimate in phi): evaluate it at z~ built from stopped logits.
      c_zt_const = c(conditional_relaxed_sample(dist, sg_logits, b, v))
      if kind == "bernoulli":
        log_q = dist.log_prob({"logits": logits}, b.astype(jnp.int32))
      else:
        log_q = dist.log_prob({"logits": logits},
                              jnp.argmax(b, axis=-1).astype(jnp.int32))
      score_term = (f_b - c_zt_const) * (
          log_q - jax.lax.stop_gradient(log_q))
      return f_b + score_term + (c_z - jax.lax.stop_gradient(c_z)) - (
          c_zt - jax.lax.stop_gradient(c_zt))

    return one

  # reparameterized=False: the estimate is a score-function estimate with a
  # (pathwise) control variate; its surrogate does NOT give the gradient
  # with respect to parameters that f closes over (freeze them in f and
  # differentiate E_q[f] in them separately, as experiments/discrete_variance
  # does for the decoder).
  return _per_sample_estimator(name, make_one, needs_v=True,
                               reparameterized=False)


def rebar(temperature=0.5, eta=1.0) -> ests.Estimator:
  """REBAR with fixed ``temperature`` (lambda) and ``eta``; unbiased.

  Cost per sample: ``f`` at ``b``, at ``sigma_lambda(z)`` and at
  ``sigma_lambda(z~)``, two backward passes through ``f``.
  """
  check_temperature(temperature, "rebar")
  if not isinstance(eta, (numbers.Real, jax.Array)):
    raise ValueError(f"rebar: eta must be a number, got {eta!r}")
  return _relax_estimator("rebar", rebar_control(temperature, eta), None)


def relax(control: Callable, phi: Any) -> ests.Estimator:
  """RELAX with control ``control(phi, f, z, kind) -> scalar``; unbiased.

  Args:
    control: e.g. the second element of :func:`mlp_control`, or
      ``rebar_control()`` (learned eta and temperature).
    phi: the control's parameters (a pytree; may be traced, so build the
      estimator inside the jitted step and train ``phi`` with
      :func:`variance_loss`).
  """
  if not callable(control):
    raise ValueError(f"relax: control must be callable, got {control!r}")
  return _relax_estimator("relax", control, phi)


def variance_loss(estimator_of_phi: Callable[[Any], ests.Estimator],
                  f: Fn, dist: dists.Distribution):
  """``loss(phi, params, key, S) = sum |g_hat|^2`` for training a control.

  ``g_hat`` is the averaged estimate of ``estimator_of_phi(phi)`` (e.g.
  ``lambda phi: relax(control, phi)``). Because the estimator is unbiased
  for every ``phi``, ``E|g_hat|^2 = |E g|^2 + tr Var[g_hat]`` and
  ``grad_phi E|g_hat|^2 = grad_phi tr Var[g_hat]`` (Grathwohl et al. 2018,
  eq. 5): minimising this loss minimises the variance.
  """

  def loss(phi, params, key, num_samples):
    g = estimator_of_phi(phi)(f, dist)(params, key, num_samples)
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(g))

  return loss
