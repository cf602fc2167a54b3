r"""Monte Carlo estimators of the gradient of an expectation.

Each estimator approximates

  grad_theta E_{q(x; theta)}[f(x)],

for ``theta`` the parameter dict of a distribution from
:mod:`jaxbdl.gradients.distributions` and ``f`` a function of ONE sample
``x`` (shape of the distribution's event) returning a scalar. ``f`` must
not depend on ``theta``; if it does, differentiate that dependence
separately (chain rule).

Design. An estimator is an :class:`Estimator`, a NamedTuple of two factories:

* ``estimator.samples(f, dist) -> samples_fn(params, key, num_samples)``
  returns ``num_samples`` independent single-sample estimates, a pytree like
  ``params`` with a leading ``[S]`` axis (what variance studies and control
  variates need);
* ``estimator.surrogate(f, dist) -> loss(params, key, num_samples)`` returns a
  scalar whose ``jax.grad`` equals the estimate with the same key (what
  optax training loops need; its value is the Monte Carlo estimate of
  ``E_q[f]``);
* calling it, ``estimator(f, dist) -> grad_fn(params, key, num_samples)``,
  gives the AVERAGE of the ``num_samples`` single-sample estimates.

So ``pathwise(f, dist)`` is ``average(pathwise.samples(f, dist))``;
combinators such as
:func:`jaxbdl.gradients.control_variates.with_control_variate` take an
``Estimator`` and return a new one, so any estimator pairs with any control
variate. ``num_samples`` must be a static positive Python int
(``jax.jit(grad_fn, static_argnums=2)``); a batch of keys is a ``jax.vmap``
with ``in_axes=(None, 0, None)``.

Capabilities are data: ``Estimator.reparameterized`` says whether the
estimate differentiates through the sample path (pathwise); distributions say
what they support (``Distribution.reparameterized``,
``implicit_reparameterized``, ``weak_derivative``), and estimators check those
fields, never a distribution's name.

Randomness: one call draws all base noise at once,
``eps = dist.noise(params, key, (S,))``, and sample ``i`` is
``x_i = dist.transform(params, eps[i])``, i.e.
``dist.sample(params, key, (S,))``;
:func:`draw_samples` reproduces these ``x_i`` (control variates evaluate ``f``
on them). The measure-valued estimators split ``key`` into a base-sample key
and a weak-derivative key, so their base samples are not
:func:`draw_samples` (baselines do not change them anyway).

Estimators (Mohamed et al. 2020, sections 4-6):

* :data:`pathwise` (sec. 5, reparameterisation): ``grad_theta f(g(eps, theta))``
  with ``x = g(eps, theta) = dist.transform(theta, eps)``. Needs
  ``dist.reparameterized`` and a differentiable ``f``. It covers BOTH explicit
  paths (Normal, Laplace, multivariate Normals: ``x = loc + L eps``) and
  implicit reparameterisation gradients (Gamma, Beta, Dirichlet,
  ``dist.implicit_reparameterized``; Figurnov, Mohamed & Mnih 2018): there
  ``transform`` is JAX's Gamma sampler, whose custom JVP is
  ``dz/dalpha = -(dF(z; alpha)/dalpha) / q(z; alpha)``, so there is no
  separate ``implicit_reparam`` estimator: ``pathwise`` IS it for those
  families. If ``f`` has an identically zero derivative by construction
  (comparisons, rounding, integer casts, ``stop_gradient``) while its value
  depends on ``x``, the pathwise estimate would silently be 0: this is
  detected when tracing and raises ``ValueError`` naming ``score_function``
  and ``measure_valued``. (Piecewise-constant pieces ADDED to a smooth ``f``
  cannot be detected; they bias the estimate.) Cost per sample: one
  forward+backward pass of ``f``.
* :data:`score_function` (sec. 4, REINFORCE):
  ``f(x) grad_theta log q(x; theta)``. Any distribution, any ``f`` (``f`` need
  not be differentiable). Cost: one evaluation of ``f`` per sample.
* :data:`measure_valued` (sec. 6, weak derivatives) for any factorised
  distribution with a ``weak_derivative`` (Normal, Bernoulli, Poisson;
  Gamma only for its rate, so Gamma raises). For parameter entry
  ``theta_d`` with ``d/dtheta_d q(x_d) = c_d [q+_d(x_d) - q-_d(x_d)]``
  (Mohamed et al. 2020, eq. 39, Table 1),

    d/dtheta_d ~ c_d [f(x; x_d = x+_d) - f(x; x_d = x-_d)],
    x+_d ~ q+_d, x-_d ~ q-_d,

  where the other coordinates ``x_{-d}`` come from a shared base sample
  ``x ~ q``. For the Normal: ``loc``: ``c = 1/(sqrt(2 pi) sigma)``,
  ``x+- = mu +- sigma W``, W ~ Weibull(k=2, lambda=sqrt 2) (= Rayleigh(1));
  ``scale``: ``c = 1/sigma``, ``x+ = mu + sigma M`` (M double-sided
  Maxwell), ``x- ~ N(mu, sigma^2)``. Poisson: ``c = 1``, ``x+ = N + 1``,
  ``x- = N``. Bernoulli logits: ``c = p (1 - p)``, ``x+ = 1``, ``x- = 0``.
  :data:`measure_valued` *couples* the two parts (common random numbers: the
  same W on both sides, ``x- = mu + sigma U M`` with U ~ U(0, 1), the same N
  for the Poisson; optax's former ``measure_valued_estimation_{mean,std}``
  coupling); :data:`measure_valued_uncoupled` draws them independently
  (Mohamed et al. 2020 sec. 6.3; higher variance, shown in
  :func:`jaxbdl.gradients.quadrature.measure_valued_variance`). Cost: ``2 P D``
  evaluations of ``f`` per sample (``P`` parameters of ``D`` entries each),
  no derivatives of ``f``.

Where they live (all names are importable from here): the
:class:`Estimator` type and the shared helpers (:func:`check_num_samples`,
:func:`draw_samples`, :func:`average`, :func:`linearized_surrogate`) in
:mod:`jaxbdl.gradients.estimator_protocol`; :data:`pathwise` and
:data:`score_function` here; the measure-valued estimators in
:mod:`jaxbdl.gradients.measure_valued_estimators`.

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020.
  M. Figurnov, S. Mohamed, A. Mnih. Implicit Reparameterization Gradients.
  NeurIPS 2018.
  R. J. Williams. Simple statistical gradient-following algorithms for
  connectionist reinforcement learning. Machine Learning 8, 1992.
  G. Pflug. Sampling derivatives of probabilities. Computing 42, 1989.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxbdl.gradients.distribution_protocol import Distribution
from jaxbdl.gradients.estimator_protocol import (
    Array, Estimator, Fn, LossFn, Params, SamplesFn, _check_dist, _prepare,
    _scalar_f, average, check_num_samples, draw_samples, linearized_surrogate,
    per_sample, surrogate)
from jaxbdl.gradients.measure_valued_estimators import (
    measure_valued, measure_valued_samples, measure_valued_surrogate,
    measure_valued_uncoupled)

__all__ = [
    "Estimator", "pathwise", "score_function", "measure_valued",
    "measure_valued_uncoupled",
    "pathwise_samples", "score_function_samples", "measure_valued_samples",
    "pathwise_surrogate", "score_function_surrogate",
    "measure_valued_surrogate", "per_sample", "surrogate", "average",
    "draw_samples", "check_num_samples", "linearized_surrogate",
]


# ---------------------------------------------------------------------------
# Pathwise (reparameterisation) estimator, sec. 5.


def _reachable(jaxpr, inputs) -> bool:
  """Whether any output of ``jaxpr`` depends on ``inputs`` (its invars).

  Conservative forward reachability: an equation with any reachable input
  makes all its outputs reachable (also through control flow).
  """
  reach = set(inputs)
  for eqn in jaxpr.eqns:
    if any(not hasattr(v, "val") and v in reach for v in eqn.invars):
      reach.update(eqn.outvars)
  return any(not hasattr(v, "val") and v in reach for v in jaxpr.outvars)


def _check_differentiable(f: Fn, x: jax.ShapeDtypeStruct,
                          estimator_name: str) -> None:
  """Raises if ``f``'s value depends on ``x`` but its derivative cannot.

  That is ``f`` piecewise constant by construction (comparisons, rounding,
  integer casts, ``stop_gradient``): ``jax.grad`` would return exact zeros
  and a pathwise estimate of 0. Runs at trace time (``make_jaxpr`` only).
  """
  x = jax.ShapeDtypeStruct(x.shape, x.dtype)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return
  primal = jax.make_jaxpr(lambda z: _scalar_f(f, z))(x).jaxpr
  if not _reachable(primal, primal.invars):
    return  # a constant f: a zero gradient is the right answer
  try:
    tangent = jax.make_jaxpr(
        lambda z, t: jax.jvp(lambda y: _scalar_f(f, y), (z,), (t,))[1])(
            x, x).jaxpr
  except TypeError as e:
    raise ValueError(
        f"{estimator_name} needs f differentiable in x, but jax cannot "
        f"differentiate it ({e}); use score_function or measure_valued, "
        "which do not differentiate f") from e
  if not _reachable(tangent, tangent.invars[1:]):
    raise ValueError(
        f"{estimator_name} needs f differentiable in x, but f's derivative is "
        "identically zero by construction (comparisons, rounding, integer "
        "casts or stop_gradient) while its value depends on x; use "
        "score_function or measure_valued, which do not differentiate f")



def _pathwise_noise(f: Fn, dist: Distribution, params: Params, key: Array,
                    num_samples: Any) -> Array:
  """Checked base noise ``eps = dist.noise(params, key, (S,))``: ``[S, ...]``.

  Validates the parameters and ``num_samples`` and, at trace time, that
  ``f`` is differentiable along the path (:func:`_check_differentiable`).
  """
  num_samples = _prepare(dist, params, num_samples)
  eps = dist.noise(params, key, (num_samples,))
  _check_differentiable(
      f, jax.eval_shape(dist.transform, params, eps[0]), "pathwise")
  return eps


def _pathwise_samples(f: Fn, dist: Distribution) -> SamplesFn:
  """Per-sample estimates ``grad_theta f(dist.transform(theta, eps_i))``."""
  _check_dist(dist)
  if not dist.reparameterized:
    raise ValueError(f"pathwise needs a reparameterised distribution; "
                     f"{dist.name} is not (use score_function or "
                     "measure_valued)")

  def samples_fn(params, key, num_samples):
    eps = _pathwise_noise(f, dist, params, key, num_samples)

    def one(e):
      return jax.grad(lambda p: _scalar_f(f, dist.transform(p, e)))(params)

    return jax.vmap(one)(eps)

  return samples_fn


def _pathwise_surrogate(f: Fn, dist: Distribution) -> LossFn:
  """``mean_i f(dist.transform(theta, eps_i))``: value and grad are MC."""
  _pathwise_samples(f, dist)  # same checks

  def loss(params, key, num_samples):
    xs = dist.transform(params, _pathwise_noise(f, dist, params, key,
                                                num_samples))
    return jnp.mean(jax.vmap(lambda x: _scalar_f(f, x))(xs))

  return loss


pathwise = Estimator("pathwise", _pathwise_samples, _pathwise_surrogate,
                     reparameterized=True)


# ---------------------------------------------------------------------------
# Score-function (REINFORCE) estimator, sec. 4.


def _score_points(dist: Distribution, params: Params, key: Array,
                  num_samples: Any) -> Array:
  """``x_i ~ q``, the :func:`draw_samples` points, gradient stopped."""
  num_samples = _prepare(dist, params, num_samples)
  return jax.lax.stop_gradient(dist.sample(params, key, (num_samples,)))


def _score_function_samples(f: Fn, dist: Distribution) -> SamplesFn:
  """Per-sample estimates ``f(x_i) grad_theta log q(x_i; theta)``, x_i ~ q."""
  _check_dist(dist)

  def samples_fn(params, key, num_samples):
    def one(x):
      fx = jax.lax.stop_gradient(_scalar_f(f, x))
      score = jax.grad(lambda p: dist.log_prob(p, x))(params)
      return jax.tree.map(lambda s: fx.astype(s.dtype) * s, score)

    return jax.vmap(one)(_score_points(dist, params, key, num_samples))

  return samples_fn


def _score_function_surrogate(f: Fn, dist: Distribution) -> LossFn:
  """``mean_i [f_i + f_i (log q_i - sg(log q_i))]`` with f_i = sg(f(x_i)).

  Its value is the MC estimate ``mean_i f(x_i)`` and its gradient is the
  score-function estimate (the "magic box" form, Foerster et al. 2018).
  """
  _check_dist(dist)

  def loss(params, key, num_samples):
    def one(x):
      fx = jax.lax.stop_gradient(_scalar_f(f, x))
      logq = dist.log_prob(params, x)
      return fx + fx * (logq - jax.lax.stop_gradient(logq))

    return jnp.mean(jax.vmap(one)(_score_points(dist, params, key,
                                                num_samples)))

  return loss


score_function = Estimator("score_function", _score_function_samples,
                           _score_function_surrogate, reparameterized=False)


# ---------------------------------------------------------------------------
# Flat public names (the contract research code imports).

pathwise_samples = pathwise.samples
score_function_samples = score_function.samples
pathwise_surrogate = pathwise.surrogate
score_function_surrogate = score_function.surrogate
