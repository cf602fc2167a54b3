r"""Estimators for discrete variables built on continuous relaxations.

Gradients of ``E_{b ~ q(b; theta)}[f(b)]`` for a Bernoulli or Categorical
``q`` (:mod:`jaxbdl.gradients.discrete`) with ``f`` a function that is also
DEFINED AND DIFFERENTIABLE ON THE RELAXED DOMAIN: reals in ``[0, 1]`` for a
Bernoulli event ``[*E]``, points of the probability simplex ``[*E, K]`` for a
Categorical (where a hard sample is ``one_hot(b)``). The score-function
estimator (:data:`jaxbdl.gradients.estimators.score_function`) needs no such
``f``.

The relaxations themselves (Concrete / Gumbel-softmax distributions,
temperature ``lambda``, ``y = sigma_lambda(z)``, the conditional sample
``z~ ~ p(z | b)``) are in :mod:`jaxbdl.gradients.concrete`; their public
names are re-exported here (:func:`relaxed_bernoulli`,
:func:`relaxed_categorical`, :func:`relaxed_sample`, :func:`hard_sample`,
:func:`conditional_relaxed_sample`, :func:`check_temperature`).

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

from jaxbdl.gradients.concrete import (
    _check_relaxable_f, _hard, _kind, _logits, _pre_activation, _scalar,
    _squash, check_temperature, conditional_relaxed_sample, hard_sample,
    relaxed_bernoulli, relaxed_categorical, relaxed_sample)
from jaxbdl.gradients.distribution_protocol import Distribution
from jaxbdl.gradients.estimator_protocol import Estimator, check_num_samples

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


# ---------------------------------------------------------------------------
# Helpers.


def _mean(kind, logits):
  """``E[b]``: ``sigmoid(logits)`` or ``softmax(logits)``, as ``_hard``."""
  if kind == "bernoulli":
    return jax.nn.sigmoid(logits)
  return jax.nn.softmax(logits, axis=-1)


def _draw(kind, dist, logits, key, num_samples, with_v):
  """Base noise [S, *logits.shape] (+ the conditional-sample uniforms v)."""
  noise = dist.noise({"logits": logits}, key, (num_samples,))
  if not with_v:
    return noise, None
  v = jax.random.uniform(jax.random.fold_in(key, 1), noise.shape,
                         dtype=logits.dtype)
  return noise, v


# ---------------------------------------------------------------------------
# Pathwise-through-relaxation estimators.


def _per_sample_estimator(name, make_one, needs_v=False, check_f=True,
                          reparameterized=True):
  """Builds an Estimator from ``one(f, kind, dist) -> (params, noise, v) ->
  per-sample surrogate``, whose gradient in params is the estimate and whose
  value is ``f(b)``.

  ``reparameterized``: True for the relaxed pathwise estimators
  (gumbel_softmax, straight-through: they differentiate ``f`` along the
  relaxed path, although the discrete ``dist`` itself is not
  reparameterised), False for REBAR/RELAX.
  """

  def prepare(f, dist):
    """``(one, draw)``; ``draw(params, key, S) -> (noise [S, ...], v [S,
    ...] or zeros [S])`` after the checks of ``f`` and ``num_samples``."""
    kind = _kind(dist, name)
    one = make_one(f, kind, dist)

    def draw(params, key, num_samples):
      num_samples = check_num_samples(num_samples)
      logits = _logits(dist, params)
      if check_f:
        _check_relaxable_f(f, kind, logits, name)
      noise, v = _draw(kind, dist, jax.lax.stop_gradient(logits), key,
                       num_samples, needs_v)
      return noise, v if needs_v else jnp.zeros((num_samples,), logits.dtype)

    return one, draw

  def samples(f, dist):
    one, draw = prepare(f, dist)

    def samples_fn(params, key, num_samples):
      return jax.vmap(lambda n, vv: jax.grad(
          lambda p: one(p, n, vv))(params))(*draw(params, key, num_samples))

    return samples_fn

  def surrogate(f, dist):
    one, draw = prepare(f, dist)

    def loss(params, key, num_samples):
      return jnp.mean(jax.vmap(lambda n, vv: one(params, n, vv))(
          *draw(params, key, num_samples)))

    return loss

  return Estimator(name, samples, surrogate, reparameterized=reparameterized)


def _value_fix(value, differentiable):
  """``sg(value) + differentiable - sg(differentiable)``."""
  return (jax.lax.stop_gradient(value) + differentiable
          - jax.lax.stop_gradient(differentiable))


def _hard_forward(name, soft, combine):
  """An estimator whose per-sample surrogate mixes the hard sample ``b``
  with a differentiable stand-in ``s = soft(kind, logits, noise)``:
  ``combine(f_, b, s)`` with ``f_`` the scalar-checked ``f``."""

  def make_one(f, kind, dist):
    f_ = lambda x: _scalar(f, x, name)

    def one(params, noise, v):
      del v
      logits = _logits(dist, params)
      b = _hard(kind, dist, jax.lax.stop_gradient(logits), noise)
      return combine(f_, b, soft(kind, logits, noise))
    return one

  return _per_sample_estimator(name, make_one)


def _relaxed(temperature):
  """``soft`` of the Concrete sample ``y = sigma_lambda(z(logits, noise))``."""
  return lambda kind, logits, noise: _squash(
      kind, _pre_activation(kind, logits, noise), temperature)


def _straight_through(f_, b, s):
  """``f(b)`` forward, ``f``'s gradient at ``b`` times ``ds/dtheta``."""
  return f_(b + s - jax.lax.stop_gradient(s))


def gumbel_softmax(temperature=0.5) -> Estimator:
  """Relaxed (Concrete) pathwise estimator; BIASED (see module docstring).

  Per sample ``grad_theta f(y)``, ``y = sigma_lambda(z(theta, noise))``.
  The surrogate's value is ``f(b)`` at the hard sample (so training curves
  show the discrete objective); its gradient is the relaxed one.
  """
  check_temperature(temperature, "gumbel_softmax")
  return _hard_forward("gumbel_softmax", _relaxed(temperature),
                       lambda f_, b, y: _value_fix(f_(b), f_(y)))


# Bengio et al. (2013): hard b forward, d b / d p := 1 backward, p = E[b].
straight_through = _hard_forward(
    "straight_through", lambda kind, logits, noise: _mean(kind, logits),
    _straight_through)


def straight_through_gumbel(temperature=1.0) -> Estimator:
  """Hard ``b`` forward, the relaxed ``y``'s gradient backward (Jang 2017)."""
  check_temperature(temperature, "straight_through_gumbel")
  return _hard_forward("straight_through_gumbel", _relaxed(temperature),
                       _straight_through)


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


def rebar(temperature=0.5, eta=1.0) -> Estimator:
  """REBAR with fixed ``temperature`` (lambda) and ``eta``; unbiased.

  Cost per sample: ``f`` at ``b``, at ``sigma_lambda(z)`` and at
  ``sigma_lambda(z~)``, two backward passes through ``f``.
  """
  check_temperature(temperature, "rebar")
  if not isinstance(eta, (numbers.Real, jax.Array)):
    raise ValueError(f"rebar: eta must be a number, got {eta!r}")
  return _relax_estimator("rebar", rebar_control(temperature, eta), None)


def relax(control: Callable, phi: Any) -> Estimator:
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


def variance_loss(estimator_of_phi: Callable[[Any], Estimator],
                  f: Fn, dist: Distribution):
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
