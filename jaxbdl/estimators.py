r"""Monte Carlo estimators of the gradient of an expectation.

Each estimator approximates

  grad_theta E_{q(x; theta)}[f(x)],

for ``theta`` the parameter dict of a distribution from
:mod:`jaxbdl.distributions` and ``f`` a function of ONE sample ``x`` (shape of
the distribution's event) returning a scalar. ``f`` must not depend on
``theta``; if it does, differentiate that dependence separately (chain rule).

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
combinators such as :func:`jaxbdl.control_variates.with_control_variate` take
an ``Estimator`` and return a new one, so any estimator pairs with any control
variate. ``num_samples`` must be a static positive Python int
(``jax.jit(grad_fn, static_argnums=2)``); a batch of keys is a ``jax.vmap``
with ``in_axes=(None, 0, None)``.

Randomness: one call draws all base noise at once,
``eps = dist.noise(params, key, (S,))``, and sample ``i`` is
``x_i = dist.transform(params, eps[i])``, i.e.
``dist.sample(params, key, (S,))``;
:func:`draw_samples` reproduces these ``x_i`` (control variates evaluate ``f``
on them). The measure-valued estimator instead draws all its variates (base
sample, Weibull, Maxwell, uniform) in one call ``jax.random.normal(key,
(S, D, 9))``, so its base samples are not :func:`draw_samples` (baselines do
not change it anyway). (Few, large random calls keep XLA compile
times low: each threefry call costs compile time on CPU.)

Estimators (Mohamed et al. 2020, sections 4-6):

* :data:`pathwise` (sec. 5, reparameterisation): ``grad_theta f(g(eps, theta))``
  with ``x = loc + scale * eps``. Needs a reparameterised distribution and a
  differentiable ``f``. Cost per sample: one forward+backward pass of ``f``.
* :data:`score_function` (sec. 4, REINFORCE):
  ``f(x) grad_theta log q(x; theta)``. Any distribution, any ``f`` (``f`` need
  not be differentiable). Cost: one evaluation of ``f`` per sample.
* :data:`measure_valued` (sec. 6, Gaussian weak derivatives), Normal only;
  per coordinate ``d`` of a diagonal Gaussian,

    d/dmu_d    ~ [f(x; x_d = mu_d + sigma_d W_d)
                  - f(x; x_d = mu_d - sigma_d W_d)] / (sqrt(2 pi) sigma_d),
    d/dsigma_d ~ [f(x; x_d = mu_d + sigma_d M_d)
                  - f(x; x_d = mu_d + sigma_d U_d M_d)] / sigma_d,

  with W_d ~ Weibull(k=2, lambda=sqrt 2) (= Rayleigh(1), density
  w exp(-w^2/2)), M_d ~ double-sided Maxwell (density m^2 phi(m)) and
  U_d ~ Uniform(0, 1),

  where the other coordinates ``x_{-d}`` come from the shared base sample
  ``x ~ q``. The positive and negative parts are coupled (common random
  numbers): the mean uses the same ``W_d`` on both sides, the scale uses
  ``U_d M_d``, which is exactly N(0, 1) distributed (so the negative part has
  the right law) yet is correlated with ``M_d``. This is the coupling of
  optax's former ``measure_valued_estimation_{mean,std}``. Cost: ``4 D``
  evaluations of ``f`` per sample for ``D = loc.size`` (two per derivative),
  no derivatives of ``f``; ``f`` need not be differentiable.

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020.
  R. J. Williams. Simple statistical gradient-following algorithms for
  connectionist reinforcement learning. Machine Learning 8, 1992.
  G. Pflug. Sampling derivatives of probabilities. Computing 42, 1989.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxbdl import distributions as dists

__all__ = [
    "Estimator", "pathwise", "score_function", "measure_valued",
    "pathwise_samples", "score_function_samples", "measure_valued_samples",
    "pathwise_surrogate", "score_function_surrogate",
    "measure_valued_surrogate", "per_sample", "surrogate", "average",
    "draw_samples", "check_num_samples", "linearized_surrogate",
]

Array = jax.Array
Params = Any  # a parameter dict (pytree) of a Distribution
Fn = Callable[[Array], Array]
SamplesFn = Callable[[Params, Array, int], Params]
GradFn = Callable[[Params, Array, int], Params]
LossFn = Callable[[Params, Array, int], Array]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


class Estimator(NamedTuple):
  """A Monte Carlo gradient estimator (see the module docstring).

  Attributes:
    name: short name, e.g. ``"score_function"``.
    samples: ``(f, dist) -> samples_fn(params, key, num_samples)`` returning
      per-sample estimates with a leading ``[num_samples]`` axis.
    surrogate: ``(f, dist) -> loss(params, key, num_samples) -> scalar`` with
      ``jax.grad(loss)`` equal to the averaged estimate for the same key.
  """
  name: str
  samples: Callable[[Fn, dists.Distribution], SamplesFn]
  surrogate: Callable[[Fn, dists.Distribution], LossFn]

  def __call__(self, f: Fn, dist: dists.Distribution) -> GradFn:
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


def draw_samples(dist: dists.Distribution, params: Params, key: Array,
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


def _check_dist(dist: Any) -> dists.Distribution:
  if not isinstance(dist, dists.Distribution):
    raise ValueError(f"dist must be a jaxbdl.distributions.Distribution "
                     f"(e.g. distributions.Normal), got {dist!r}")
  return dist


def _prepare(dist: dists.Distribution, params: Params, num_samples: Any,
             minimum: int = 1) -> int:
  dist.event_shape(params)  # validates the parameter dict
  return check_num_samples(num_samples, minimum)


def linearized_surrogate(estimator_samples: Callable[[Fn, dists.Distribution],
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

  def make(f: Fn, dist: dists.Distribution) -> LossFn:
    grad_fn = average(estimator_samples(f, dist))

    def loss(params, key, num_samples):
      sg_params = jax.lax.stop_gradient(params)
      grads = jax.lax.stop_gradient(grad_fn(sg_params, key, num_samples))
      xs = jax.lax.stop_gradient(draw_samples(dist, sg_params, key,
                                              num_samples))
      value = jnp.mean(jax.vmap(lambda x: _scalar_f(f, x))(xs))
      lin = sum(jnp.sum(g * (p - jax.lax.stop_gradient(p)))
                for g, p in zip(jax.tree.leaves(grads),
                                jax.tree.leaves(params)))
      return jax.lax.stop_gradient(value) + lin

    return loss

  return make


# ---------------------------------------------------------------------------
# Pathwise (reparameterisation) estimator, sec. 5.


def _pathwise_samples(f: Fn, dist: dists.Distribution) -> SamplesFn:
  """Per-sample estimates ``grad_theta f(dist.transform(theta, eps_i))``."""
  _check_dist(dist)
  if not dist.reparameterized:
    raise ValueError(f"pathwise needs a reparameterised distribution; "
                     f"{dist.name} is not (use score_function)")

  def samples_fn(params, key, num_samples):
    num_samples = _prepare(dist, params, num_samples)
    eps = dist.noise(params, key, (num_samples,))

    def one(e):
      return jax.grad(lambda p: _scalar_f(f, dist.transform(p, e)))(params)

    return jax.vmap(one)(eps)

  return samples_fn


def _pathwise_surrogate(f: Fn, dist: dists.Distribution) -> LossFn:
  """``mean_i f(dist.transform(theta, eps_i))``: value and grad are MC."""
  _pathwise_samples(f, dist)  # same checks

  def loss(params, key, num_samples):
    num_samples = _prepare(dist, params, num_samples)
    xs = dist.sample(params, key, (num_samples,))
    return jnp.mean(jax.vmap(lambda x: _scalar_f(f, x))(xs))

  return loss


pathwise = Estimator("pathwise", _pathwise_samples, _pathwise_surrogate)


# ---------------------------------------------------------------------------
# Score-function (REINFORCE) estimator, sec. 4.


def _score_function_samples(f: Fn, dist: dists.Distribution) -> SamplesFn:
  """Per-sample estimates ``f(x_i) grad_theta log q(x_i; theta)``, x_i ~ q."""
  _check_dist(dist)

  def samples_fn(params, key, num_samples):
    num_samples = _prepare(dist, params, num_samples)

    xs = jax.lax.stop_gradient(dist.sample(params, key, (num_samples,)))

    def one(x):
      fx = jax.lax.stop_gradient(_scalar_f(f, x))
      score = jax.grad(lambda p: dist.log_prob(p, x))(params)
      return jax.tree.map(lambda s: fx.astype(s.dtype) * s, score)

    return jax.vmap(one)(xs)

  return samples_fn


def _score_function_surrogate(f: Fn, dist: dists.Distribution) -> LossFn:
  """``mean_i [f_i + f_i (log q_i - sg(log q_i))]`` with f_i = sg(f(x_i)).

  Its value is the MC estimate ``mean_i f(x_i)`` and its gradient is the
  score-function estimate (the "magic box" form, Foerster et al. 2018).
  """
  _check_dist(dist)

  def loss(params, key, num_samples):
    num_samples = _prepare(dist, params, num_samples)

    xs = jax.lax.stop_gradient(dist.sample(params, key, (num_samples,)))

    def one(x):
      fx = jax.lax.stop_gradient(_scalar_f(f, x))
      logq = dist.log_prob(params, x)
      return fx + fx * (logq - jax.lax.stop_gradient(logq))

    return jnp.mean(jax.vmap(one)(xs))

  return loss


score_function = Estimator("score_function", _score_function_samples,
                           _score_function_surrogate)


# ---------------------------------------------------------------------------
# Measure-valued estimator (Gaussian weak derivatives), sec. 6.


def _measure_valued_samples(f: Fn, dist: dists.Distribution) -> SamplesFn:
  """Per-sample coupled weak-derivative estimates for a diagonal Normal.

  See the module docstring for the decomposition; ``4 * loc.size``
  evaluations of ``f`` per sample.
  """
  _check_dist(dist)
  if dist.name != dists.Normal.name:
    raise ValueError(f"measure_valued supports only the Normal distribution, "
                     f"got {dist.name}")

  def samples_fn(params, key, num_samples):
    num_samples = _prepare(dist, params, num_samples)
    params = jax.lax.stop_gradient(params)
    loc = jnp.asarray(params["loc"])
    scale = jnp.asarray(params["scale"])
    shape, d = loc.shape, loc.size
    mu_d, sigma_d = loc.reshape(d), scale.reshape(d)
    is_diag = jnp.eye(d, dtype=bool)  # [D, D]
    # All randomness in ONE call (each threefry call costs XLA compile time):
    # per sample and coordinate 9 standard normals; number 7 is the base
    # noise of the shared sample x = loc + scale * eps.
    z_sxdx9 = jax.random.normal(key, (num_samples, d, 9), loc.dtype)

    def one(z_dx9):
      x_d = mu_d + sigma_d * z_dx9[:, 7]  # shared base sample [D]
      # Rayleigh(1) = Weibull(k=2, lambda=sqrt 2) = |N(0, I_2)|.
      w_d = jnp.sqrt(jnp.sum(jnp.square(z_dx9[:, 0:2]), axis=-1))
      # Double-sided Maxwell = random sign * |N(0, I_3)| (chi, 3 dof).
      m_d = jnp.sqrt(jnp.sum(jnp.square(z_dx9[:, 2:5]), axis=-1))
      m_d = jnp.where(z_dx9[:, 6] < 0, -m_d, m_d)
      # Uniform(0, 1) = exp(-chi^2_2 / 2) (chi^2_2 is Exponential(mean 2)).
      u_d = jnp.exp(-0.5 * jnp.sum(jnp.square(z_dx9[:, 5::3]), axis=-1))

      # The 4 D evaluation points, one vmap over f: row (j, d) is the base
      # sample with coordinate d replaced by new_jxd[j, d].
      new_jxd = jnp.stack([mu_d + sigma_d * w_d, mu_d - sigma_d * w_d,
                           mu_d + sigma_d * m_d,
                           mu_d + sigma_d * (u_d * m_d)])  # [4, D]
      x_jxdxd = jnp.where(is_diag[None], new_jxd[:, :, None],
                          x_d[None, None, :])  # [4, D, D]
      f_jxd = jax.vmap(lambda row: _scalar_f(f, row.reshape(shape)))(
          x_jxdxd.reshape(4 * d, d)).reshape(4, d)
      g_loc = (f_jxd[0] - f_jxd[1]) / (_SQRT_2PI * sigma_d)
      g_scale = (f_jxd[2] - f_jxd[3]) / sigma_d
      return {"loc": g_loc.reshape(shape), "scale": g_scale.reshape(shape)}

    # 4 D evaluations of f per sample: beyond a few thousand at once the
    # vmapped program becomes memory-bound (the f intermediates of every
    # evaluation are materialised), so large sample counts run in chunks.
    chunk = max(1, _MVD_EVALS_PER_CHUNK // (4 * d))
    if num_samples <= chunk:
      return jax.vmap(one)(z_sxdx9)
    return jax.lax.map(one, z_sxdx9, batch_size=chunk)

  return samples_fn


# f evaluations per vmapped chunk of the measure-valued estimator.
_MVD_EVALS_PER_CHUNK = 4096

measure_valued = Estimator("measure_valued", _measure_valued_samples,
                           linearized_surrogate(_measure_valued_samples))


# ---------------------------------------------------------------------------
# Flat public names (the contract research code imports).

pathwise_samples = pathwise.samples
score_function_samples = score_function.samples
measure_valued_samples = measure_valued.samples
pathwise_surrogate = pathwise.surrogate
score_function_surrogate = score_function.surrogate
measure_valued_surrogate = measure_valued.surrogate


def per_sample(estimator: Estimator) -> Callable[[Fn, dists.Distribution],
                                                 SamplesFn]:
  """``per_sample(est)(f, dist)(params, key, S)`` -> ``[S, ...]`` estimates."""
  if not isinstance(estimator, Estimator):
    raise ValueError(f"expected an estimators.Estimator, got {estimator!r}")
  return estimator.samples


def surrogate(estimator: Estimator) -> Callable[[Fn, dists.Distribution],
                                                LossFn]:
  """``surrogate(est)(f, dist)(params, key, S)`` -> scalar; its grad = est's."""
  if not isinstance(estimator, Estimator):
    raise ValueError(f"expected an estimators.Estimator, got {estimator!r}")
  return estimator.surrogate
