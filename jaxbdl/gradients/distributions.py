"""Parameterised distributions as NamedTuples of pure functions.

A distribution here is not an object holding parameters: it is a fixed set of
pure functions that take a parameter dict, so that the parameters are an
ordinary pytree that ``jax.grad``, ``jax.vmap`` and optax see directly::

  params = {"loc": jnp.zeros(3), "scale": jnp.ones(3)}
  x = Normal.sample(params, key, (10,))          # [10, 3]
  lp = Normal.log_prob(params, x)                # [10]

Conventions (shared by every distribution in this module):

* The *event* is the whole parameter array: ``loc`` of shape ``E`` describes
  ``prod(E)`` independent coordinates and ``log_prob``, ``entropy`` and ``kl``
  sum over all of them (for ``Categorical`` the last axis of ``logits`` holds
  the classes, so the event shape is ``logits.shape[:-1]``).
* ``sample(params, key, shape=())`` returns ``shape + event_shape``.
* ``log_prob(params, x)`` accepts ``x`` of shape ``batch + event_shape`` and
  returns ``batch``.
* ``scale`` is the standard deviation itself (not its logarithm), so gradients
  are taken with respect to sigma, as in Mohamed et al. (2020).
* ``sample = transform(params, noise(params, key, shape))``: the
  parameter-free ``noise`` and the deterministic ``transform`` are exposed so
  estimators can draw all noise in one call and map it per sample.
* ``reparameterized`` says whether ``transform`` is a differentiable function
  of the parameters (pathwise estimators need it);
  ``implicit_reparameterized`` says that this derivative is an *implicit*
  reparameterisation gradient (Figurnov et al. 2018): for Gamma, Beta and
  Dirichlet ``noise`` is a PRNG key per sample and ``transform`` draws
  ``z = jax.random.gamma(key, alpha)``, whose custom JVP is
  ``dz/dalpha = -(dF(z; alpha)/dalpha) / p(z; alpha)`` (``F`` the CDF), so
  ``jax.grad`` through a sample is the implicit gradient and the ordinary
  :data:`jaxbdl.gradients.estimators.pathwise` estimator covers these families.
* Capabilities are data: ``mean``/``covariance`` (delta-method control
  variates), ``weak_derivative`` (measure-valued estimators) are ``None``
  where a family lacks them; nothing dispatches on ``name``.

Parameter dicts are checked when a function is traced: a missing or unknown
key, or ``loc``/``scale`` of different shapes, raises ``ValueError`` naming it.
Positive parameters (``scale``, ``rate``, ``concentration*``, ``cov_diag``,
the diagonal of ``scale_tril``) are checked twice: with concrete values
(eager calls) a value <= 0 raises ``ValueError``; under ``jax.jit``/``grad``
tracing the values are unknown, so the parameter is *poisoned* instead,
``a + where(all(a > 0), 0, nan)``: every sample, density and gradient
computed from such a parameter is NaN (finite garbage is never returned).

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 5 (pathwise), Sec. 6 and
  Table 1 (weak derivatives).
  M. Figurnov, S. Mohamed, A. Mnih. Implicit Reparameterization Gradients.
  NeurIPS 2018. Eq. (5): dz/dalpha = -(dF/dalpha) / q(z).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Distribution", "WeakDerivative", "Normal", "Laplace", "Bernoulli",
           "Categorical", "Gamma", "Beta", "Dirichlet", "Poisson",
           "MultivariateNormalTriL", "LowRankMultivariateNormal",
           "check_params"]

Array = jax.Array
Params = Mapping[str, Array]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Distribution(NamedTuple):
  """A family of distributions: pure functions of a parameter dict.

  Attributes:
    name: human-readable name, used in error messages.
    param_names: the exact keys of the parameter dict.
    reparameterized: True if ``transform`` is differentiable in the parameters.
    noise: ``(params, key, shape=()) -> noise`` of shape
      ``[*shape, *event_shape]`` (``[*shape, *logits.shape]`` for
      Categorical): parameter-free base randomness, e.g. eps ~ N(0, I).
    transform: ``(params, noise) -> sample``, deterministic; for
      reparameterised families this is the path ``x = g(eps, theta)``
      (Mohamed et al. 2020, sec. 5). ``noise`` may have extra leading axes.
    log_prob: ``(params, x[*batch, *event_shape]) -> [*batch]``.
    entropy: ``(params) -> scalar``, summed over the event.
    kl: ``(params, other_params) -> scalar``, KL(self || other) summed over
      the event (both from this family).
    event_shape: ``(params) -> tuple``, the shape of one sample.
    implicit_reparameterized: True if the derivative of ``transform`` is an
      implicit reparameterisation gradient (Figurnov et al. 2018), i.e.
      ``noise`` is a PRNG key and ``transform`` differentiates through the
      sampler; ``reparameterized`` is then True too.
    mean: ``(params) -> [*event_shape]`` or ``None``.
    covariance: ``(params) -> [D, D]`` over the flattened event
      (``D = prod(event_shape)``), or ``None``.
    weak_derivative: ``(params, key, shape, coupled) -> {param_name:
      WeakDerivative}`` or ``None``: for a factorised family (one parameter
      entry per event coordinate), per coordinate ``d``
      ``d/dtheta_d q(x_d) = c_d [q+(x_d) - q-(x_d)]`` (Mohamed et al. 2020,
      eq. 39 and Table 1), with draws of the positive and negative parts of
      shape ``[*shape, *event_shape]``; ``coupled`` shares randomness between
      the two parts (common random numbers), otherwise they are independent.
    weak_derivative_params: the parameters ``weak_derivative`` covers.
  """
  name: str
  param_names: tuple[str, ...]
  reparameterized: bool
  noise: Callable[..., Array]
  transform: Callable[[Params, Array], Array]
  log_prob: Callable[[Params, Array], Array]
  entropy: Callable[[Params], Array]
  kl: Callable[[Params, Params], Array]
  event_shape: Callable[[Params], tuple[int, ...]]
  implicit_reparameterized: bool = False
  mean: Callable[[Params], Array] | None = None
  covariance: Callable[[Params], Array] | None = None
  weak_derivative: Callable[..., dict[str, "WeakDerivative"]] | None = None
  weak_derivative_params: tuple[str, ...] = ()

  def sample(self, params: Params, key: Array, shape=()) -> Array:
    """``transform(params, noise(params, key, shape))``.

    Returns:
      ``[*shape, *event_shape]``.
    """
    return self.transform(params, self.noise(params, key, shape))


class WeakDerivative(NamedTuple):
  """One parameter's weak derivative, ``c [q+ - q-]`` per coordinate.

  Attributes:
    constant: ``c``, shaped like the parameter (= the event shape).
    positive: draws of ``q+``, ``[*shape, *event_shape]``.
    negative: draws of ``q-``, ``[*shape, *event_shape]``.
  """
  constant: Array
  positive: Array
  negative: Array


# ---------------------------------------------------------------------------
# Boundary checks (run at trace time; shapes are static).

_POSITIVE = ("scale", "rate", "concentration", "concentration1",
             "concentration0", "cov_diag")


def _positive(dist_name: str, field: str, a: Array) -> Array:
  """Eager: raises unless ``a > 0``; traced: NaN-poisons entries <= 0.

  The poison is additive and global (``a + where(all(a > 0), 0, nan)``):
  one invalid entry makes every entry NaN, and gradients still flow through
  ``a`` and come out NaN too.
  """
  if not isinstance(a, jax.core.Tracer):
    arr = np.asarray(a)
    if not np.all(arr > 0):
      raise ValueError(f"{dist_name} {field} must be > 0 everywhere, got "
                       f"min {float(np.min(arr)) if arr.size else arr}")
    return a
  return a + jnp.where(jnp.all(a > 0), 0.0, jnp.nan).astype(a.dtype)


def _check_keys(dist_name: str, params: Any,
                names: Sequence[str]) -> dict[str, Array]:
  if not isinstance(params, Mapping):
    raise ValueError(f"{dist_name} params must be a dict with keys "
                     f"{list(names)}, got {type(params).__name__}")
  missing = [n for n in names if n not in params]
  unknown = [k for k in params if k not in names]
  if missing or unknown:
    raise ValueError(f"{dist_name} params must have keys {list(names)}; "
                     f"missing {missing}, unknown {unknown}")
  return {n: jnp.asarray(params[n]) for n in names}


def check_params(dist_name: str, params: Any,
                 names: Sequence[str]) -> dict[str, Array]:
  """Checks a parameter dict has exactly ``names`` with equal shapes.

  Args:
    dist_name: distribution name for the error message.
    params: the candidate parameter dict.
    names: the required keys.

  Returns:
    ``{name: jnp.asarray(params[name])}`` (positive parameters NaN-poisoned
    where <= 0 when traced).

  Raises:
    ValueError: if ``params`` is not a mapping, misses or adds keys, its
      arrays have different shapes, or (concrete values only) a positive
      parameter (``scale``, ``rate``, ``concentration*``) is <= 0.
  """
  out = _check_keys(dist_name, params, names)
  shapes = {n: a.shape for n, a in out.items()}
  if len(set(shapes.values())) > 1:
    raise ValueError(f"{dist_name} params must have equal shapes, got "
                     f"{shapes}")
  for n in names:
    if n in _POSITIVE:
      out[n] = _positive(dist_name, n, out[n])
  return out


def _check_event(dist_name: str, x: Array, event_shape: tuple[int, ...]):
  nd = len(event_shape)
  if x.ndim < nd or tuple(x.shape[x.ndim - nd:]) != tuple(event_shape):
    raise ValueError(f"{dist_name}.log_prob: x of shape {x.shape} does not "
                     f"end with the event shape {event_shape}")


def _expand_to(a: Array, ndim: int) -> Array:
  """Adds leading singleton axes so ``a`` has ``ndim`` dims (explicitly)."""
  return a.reshape((1,) * (ndim - a.ndim) + a.shape)


def _sum_event(a: Array, event_ndim: int) -> Array:
  if event_ndim == 0:
    return a
  return jnp.sum(a, axis=tuple(range(a.ndim - event_ndim, a.ndim)))


def _shape(shape) -> tuple[int, ...]:
  if isinstance(shape, int):
    return (shape,)
  return tuple(shape)


# ---------------------------------------------------------------------------
# Normal (diagonal Gaussian), params {"loc", "scale"}.

_NORMAL = ("loc", "scale")


def _normal_noise(params: Params, key: Array, shape=()) -> Array:
  """eps ~ N(0, I) of shape ``[*shape, *loc.shape]``."""
  loc = check_params("Normal", params, _NORMAL)["loc"]
  return jax.random.normal(key, _shape(shape) + loc.shape, dtype=loc.dtype)


def _normal_transform(params: Params, eps: Array) -> Array:
  """The reparameterisation ``x = loc + scale * eps``; eps ``[*batch, *E]``."""
  p = check_params("Normal", params, _NORMAL)
  eps = jnp.asarray(eps)
  _check_event("Normal", eps, p["loc"].shape)
  return _expand_to(p["loc"], eps.ndim) + _expand_to(p["scale"], eps.ndim) * eps


def _normal_log_prob(params: Params, x: Array) -> Array:
  """sum_d log N(x_d; loc_d, scale_d^2); x ``[*batch, *E]`` -> ``[*batch]``."""
  p = check_params("Normal", params, _NORMAL)
  loc, scale = p["loc"], p["scale"]
  x = jnp.asarray(x)
  _check_event("Normal", x, loc.shape)
  loc, scale = _expand_to(loc, x.ndim), _expand_to(scale, x.ndim)
  z = (x - loc) / scale
  return _sum_event(-0.5 * z * z - jnp.log(scale) - _HALF_LOG_2PI,
                    p["loc"].ndim)


def _normal_entropy(params: Params) -> Array:
  """sum_d [0.5 log(2 pi e) + log scale_d]."""
  p = check_params("Normal", params, _NORMAL)
  return jnp.sum(0.5 + _HALF_LOG_2PI + jnp.log(p["scale"]))


def _normal_kl(params: Params, other: Params) -> Array:
  """KL(N(m1, s1^2) || N(m2, s2^2)), summed over the event.

  = log(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2 per coordinate.
  """
  p = check_params("Normal", params, _NORMAL)
  q = check_params("Normal", other, _NORMAL)
  if p["loc"].shape != q["loc"].shape:
    raise ValueError(f"Normal.kl: shapes differ, {p['loc'].shape} vs "
                     f"{q['loc'].shape}")
  var_ratio = jnp.square(p["scale"] / q["scale"])
  mahal = jnp.square((p["loc"] - q["loc"]) / q["scale"])
  return jnp.sum(0.5 * (var_ratio + mahal - 1.0 - jnp.log(var_ratio)))


def _diag_cov(var: Array) -> Array:
  """``[*E]`` variances -> ``[D, D]`` diagonal covariance, D = prod(E)."""
  return jnp.diag(var.reshape(-1))


def _normal_weak_derivative(params: Params, key: Array, shape=(),
                            coupled: bool = True) -> dict:
  """Gaussian weak derivatives (Mohamed et al. 2020, Table 1).

  loc: ``c = 1 / (sigma sqrt(2 pi))``, ``q+- = mu +- sigma W``,
  W ~ Weibull(k=2, lambda=sqrt 2) (= Rayleigh(1) = |N(0, I_2)|).
  scale: ``c = 1 / sigma``, ``q+ = mu + sigma M`` (M double-sided Maxwell,
  density m^2 phi(m)), ``q- = N(mu, sigma^2)``.
  Coupled: the same W on both sides, and ``q- = mu + sigma U M`` with
  U ~ U(0, 1) (U M is exactly N(0, 1)). Uncoupled: independent W' and eps.
  All variates come from ONE normal call of 9 per coordinate.
  """
  p = check_params("Normal", params, _NORMAL)
  mu, sigma = p["loc"], p["scale"]
  shape = _shape(shape)
  z = jax.random.normal(key, shape + mu.shape + (9,), dtype=mu.dtype)
  w = jnp.sqrt(jnp.sum(jnp.square(z[..., 0:2]), axis=-1))
  m = jnp.sqrt(jnp.sum(jnp.square(z[..., 2:5]), axis=-1))
  m = jnp.where(z[..., 5] < 0, -m, m)
  if coupled:
    w_neg = w
    # Uniform(0, 1) = exp(-chi^2_2 / 2).
    u = jnp.exp(-0.5 * jnp.sum(jnp.square(z[..., 6:8]), axis=-1))
    eps_neg = u * m
  else:
    w_neg = jnp.sqrt(jnp.sum(jnp.square(z[..., 6:8]), axis=-1))
    eps_neg = z[..., 8]
  n = len(shape) + mu.ndim
  mu_b, sigma_b = _expand_to(mu, n), _expand_to(sigma, n)
  return {
      "loc": WeakDerivative(1.0 / (sigma * math.sqrt(2.0 * math.pi)),
                            mu_b + sigma_b * w, mu_b - sigma_b * w_neg),
      "scale": WeakDerivative(1.0 / sigma, mu_b + sigma_b * m,
                              mu_b + sigma_b * eps_neg),
  }


Normal = Distribution(
    name="Normal",
    param_names=_NORMAL,
    reparameterized=True,
    noise=_normal_noise,
    transform=_normal_transform,
    log_prob=_normal_log_prob,
    entropy=_normal_entropy,
    kl=_normal_kl,
    event_shape=lambda params: tuple(
        check_params("Normal", params, _NORMAL)["loc"].shape),
    mean=lambda params: check_params("Normal", params, _NORMAL)["loc"],
    covariance=lambda params: _diag_cov(jnp.square(
        check_params("Normal", params, _NORMAL)["scale"])),
    weak_derivative=_normal_weak_derivative,
    weak_derivative_params=_NORMAL,
)


# ---------------------------------------------------------------------------
# Laplace, params {"loc", "scale"} (scale b: density exp(-|x-m|/b) / (2b)).

_LAPLACE = ("loc", "scale")


def _laplace_noise(params: Params, key: Array, shape=()) -> Array:
  """eps ~ Laplace(0, 1) of shape ``[*shape, *loc.shape]``."""
  loc = check_params("Laplace", params, _LAPLACE)["loc"]
  return jax.random.laplace(key, _shape(shape) + loc.shape, dtype=loc.dtype)


def _laplace_transform(params: Params, eps: Array) -> Array:
  """The reparameterisation ``x = loc + scale * eps``."""
  p = check_params("Laplace", params, _LAPLACE)
  eps = jnp.asarray(eps)
  _check_event("Laplace", eps, p["loc"].shape)
  return _expand_to(p["loc"], eps.ndim) + _expand_to(p["scale"], eps.ndim) * eps


def _laplace_log_prob(params: Params, x: Array) -> Array:
  """sum_d [-|x_d - m_d| / b_d - log(2 b_d)]."""
  p = check_params("Laplace", params, _LAPLACE)
  x = jnp.asarray(x)
  _check_event("Laplace", x, p["loc"].shape)
  loc, scale = _expand_to(p["loc"], x.ndim), _expand_to(p["scale"], x.ndim)
  return _sum_event(-jnp.abs(x - loc) / scale - jnp.log(2.0 * scale),
                    p["loc"].ndim)


def _laplace_entropy(params: Params) -> Array:
  """sum_d [1 + log(2 b_d)]."""
  p = check_params("Laplace", params, _LAPLACE)
  return jnp.sum(1.0 + jnp.log(2.0 * p["scale"]))


def _laplace_kl(params: Params, other: Params) -> Array:
  """KL(L(m1, b1) || L(m2, b2)), summed over the event.

  = log(b2/b1) + |m1 - m2|/b2 + (b1/b2) exp(-|m1 - m2|/b1) - 1 per coordinate.
  """
  p = check_params("Laplace", params, _LAPLACE)
  q = check_params("Laplace", other, _LAPLACE)
  if p["loc"].shape != q["loc"].shape:
    raise ValueError(f"Laplace.kl: shapes differ, {p['loc'].shape} vs "
                     f"{q['loc'].shape}")
  b1, b2 = p["scale"], q["scale"]
  d = jnp.abs(p["loc"] - q["loc"])
  return jnp.sum(jnp.log(b2 / b1) + d / b2 + (b1 / b2) * jnp.exp(-d / b1) - 1.0)


Laplace = Distribution(
    name="Laplace",
    param_names=_LAPLACE,
    reparameterized=True,
    noise=_laplace_noise,
    transform=_laplace_transform,
    log_prob=_laplace_log_prob,
    entropy=_laplace_entropy,
    kl=_laplace_kl,
    event_shape=lambda params: tuple(
        check_params("Laplace", params, _LAPLACE)["loc"].shape),
    mean=lambda params: check_params("Laplace", params, _LAPLACE)["loc"],
    covariance=lambda params: _diag_cov(2.0 * jnp.square(
        check_params("Laplace", params, _LAPLACE)["scale"])),
)


# ---------------------------------------------------------------------------
# Bernoulli, params {"logits"}; samples are int32 in {0, 1}.

_LOGITS = ("logits",)


def _bernoulli_noise(params: Params, key: Array, shape=()) -> Array:
  """u ~ Uniform(0, 1) of shape ``[*shape, *logits.shape]``."""
  logits = check_params("Bernoulli", params, _LOGITS)["logits"]
  return jax.random.uniform(key, _shape(shape) + logits.shape,
                            dtype=logits.dtype)


def _bernoulli_transform(params: Params, u: Array) -> Array:
  """``x = 1[u < sigmoid(logits)]`` as int32 (not differentiable)."""
  logits = check_params("Bernoulli", params, _LOGITS)["logits"]
  u = jnp.asarray(u)
  _check_event("Bernoulli", u, logits.shape)
  return (u < _expand_to(jax.nn.sigmoid(logits), u.ndim)).astype(jnp.int32)


def _bernoulli_log_prob(params: Params, x: Array) -> Array:
  """sum_d [x_d log sigmoid(l_d) + (1 - x_d) log sigmoid(-l_d)]."""
  logits = check_params("Bernoulli", params, _LOGITS)["logits"]
  x = jnp.asarray(x)
  _check_event("Bernoulli", x, logits.shape)
  l = _expand_to(logits, x.ndim)
  xf = x.astype(logits.dtype)
  lp = xf * jax.nn.log_sigmoid(l) + (1.0 - xf) * jax.nn.log_sigmoid(-l)
  return _sum_event(lp, logits.ndim)


def _bernoulli_entropy(params: Params) -> Array:
  """sum_d [p softplus(-l) + (1 - p) softplus(l)], 1 - p = sigmoid(-l).

  Computing ``1 - p`` as ``sigmoid(-l)`` (not ``1 - sigmoid(l)``) avoids the
  cancellation that cost 16% relative error at ``l = 15`` in float32; every
  term is then positive.
  """
  logits = check_params("Bernoulli", params, _LOGITS)["logits"]
  return jnp.sum(jax.nn.sigmoid(logits) * jax.nn.softplus(-logits) +
                 jax.nn.sigmoid(-logits) * jax.nn.softplus(logits))


def _bernoulli_kl(params: Params, other: Params) -> Array:
  """sum_d [p (log p - log q) + (1-p) (log(1-p) - log(1-q))]."""
  l1 = check_params("Bernoulli", params, _LOGITS)["logits"]
  l2 = check_params("Bernoulli", other, _LOGITS)["logits"]
  if l1.shape != l2.shape:
    raise ValueError(f"Bernoulli.kl: shapes differ, {l1.shape} vs {l2.shape}")
  return jnp.sum(jax.nn.sigmoid(l1) * (jax.nn.log_sigmoid(l1) -
                                       jax.nn.log_sigmoid(l2)) +
                 jax.nn.sigmoid(-l1) * (jax.nn.log_sigmoid(-l1) -
                                        jax.nn.log_sigmoid(-l2)))


def _bernoulli_weak_derivative(params: Params, key: Array, shape=(),
                               coupled: bool = True) -> dict:
  """d/dl Bern(x; sigmoid(l)) = p (1 - p) [delta_1(x) - delta_0(x)].

  (Mohamed et al. 2020, Table 1, with the chain rule dp/dl = p (1 - p).)
  Both parts are point masses, so coupling changes nothing.
  """
  del key, coupled
  logits = check_params("Bernoulli", params, _LOGITS)["logits"]
  out_shape = _shape(shape) + logits.shape
  return {"logits": WeakDerivative(
      jax.nn.sigmoid(logits) * jax.nn.sigmoid(-logits),
      jnp.ones(out_shape, jnp.int32), jnp.zeros(out_shape, jnp.int32))}


Bernoulli = Distribution(
    name="Bernoulli",
    param_names=_LOGITS,
    reparameterized=False,
    noise=_bernoulli_noise,
    transform=_bernoulli_transform,
    log_prob=_bernoulli_log_prob,
    entropy=_bernoulli_entropy,
    kl=_bernoulli_kl,
    event_shape=lambda params: tuple(
        check_params("Bernoulli", params, _LOGITS)["logits"].shape),
    mean=lambda params: jax.nn.sigmoid(
        check_params("Bernoulli", params, _LOGITS)["logits"]),
    covariance=lambda params: _diag_cov(
        jax.nn.sigmoid(check_params("Bernoulli", params, _LOGITS)["logits"])
        * jax.nn.sigmoid(-check_params("Bernoulli", params,
                                       _LOGITS)["logits"])),
    weak_derivative=_bernoulli_weak_derivative,
    weak_derivative_params=_LOGITS,
)


# ---------------------------------------------------------------------------
# Categorical, params {"logits": [*E, K]}; samples are int32 in [0, K).


def _categorical_logits(params: Params) -> Array:
  logits = check_params("Categorical", params, _LOGITS)["logits"]
  if logits.ndim < 1:
    raise ValueError("Categorical logits need a class axis, got a scalar")
  return logits


def _categorical_noise(params: Params, key: Array, shape=()) -> Array:
  """Gumbel(0, 1) noise of shape ``[*shape, *logits.shape]`` (classes last)."""
  logits = _categorical_logits(params)
  return jax.random.gumbel(key, _shape(shape) + logits.shape,
                           dtype=logits.dtype)


def _categorical_transform(params: Params, g: Array) -> Array:
  """Gumbel-max: ``x = argmax_c(logits_c + g_c)``, int32, not differentiable."""
  logits = _categorical_logits(params)
  g = jnp.asarray(g)
  _check_event("Categorical", g, logits.shape)
  return jnp.argmax(_expand_to(logits, g.ndim) + g, axis=-1).astype(jnp.int32)


def _categorical_log_prob(params: Params, x: Array) -> Array:
  """sum over the event of log softmax(logits)[x]."""
  logits = _categorical_logits(params)
  x = jnp.asarray(x)
  event = logits.shape[:-1]
  _check_event("Categorical", x, event)
  logp = jax.nn.log_softmax(logits, axis=-1)
  logp = jnp.broadcast_to(_expand_to(logp, x.ndim + 1),
                          x.shape + logp.shape[-1:])
  lp = jnp.take_along_axis(logp, x[..., None].astype(jnp.int32),
                           axis=-1)[..., 0]
  return _sum_event(lp, len(event))


def _categorical_entropy(params: Params) -> Array:
  logits = _categorical_logits(params)
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.sum(jnp.exp(logp) * logp)


def _categorical_kl(params: Params, other: Params) -> Array:
  """sum over the event of sum_c p_c (log p_c - log q_c)."""
  l1, l2 = _categorical_logits(params), _categorical_logits(other)
  if l1.shape != l2.shape:
    raise ValueError(f"Categorical.kl: shapes differ, {l1.shape} vs "
                     f"{l2.shape}")
  logp = jax.nn.log_softmax(l1, axis=-1)
  logq = jax.nn.log_softmax(l2, axis=-1)
  return jnp.sum(jnp.exp(logp) * (logp - logq))


Categorical = Distribution(
    name="Categorical",
    param_names=_LOGITS,
    reparameterized=False,
    noise=_categorical_noise,
    transform=_categorical_transform,
    log_prob=_categorical_log_prob,
    entropy=_categorical_entropy,
    kl=_categorical_kl,
    event_shape=lambda params: tuple(_categorical_logits(params).shape[:-1]),
)


# ---------------------------------------------------------------------------
# Families sampled through JAX's samplers: noise is one PRNG key per sample.

_gammaln = jax.scipy.special.gammaln
_digamma = jax.scipy.special.digamma


def _key_noise(event_shape_fn: Callable[[Params], tuple[int, ...]]):
  """``noise(params, key, shape)`` -> PRNG keys of shape ``[*shape]``."""

  def noise(params: Params, key: Array, shape=()) -> Array:
    event_shape_fn(params)  # validates the parameter dict
    shape = _shape(shape)
    return jax.random.split(key, math.prod(shape)).reshape(shape)

  return noise


def _map_keys(dist_name: str, fn: Callable[[Array], Array],
              keys: Array) -> Array:
  """Applies ``fn(key) -> [*E]`` to keys ``[*batch]`` -> ``[*batch, *E]``."""
  keys = jnp.asarray(keys)
  if not jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
    raise ValueError(f"{dist_name}.transform: noise must be typed PRNG keys "
                     f"(from {dist_name}.noise), got dtype {keys.dtype}")
  out = jax.vmap(fn)(keys.reshape((-1,)))
  return out.reshape(keys.shape + out.shape[1:])


# ---------------------------------------------------------------------------
# Gamma, params {"concentration" (alpha), "rate" (beta)}:
# density beta^alpha x^(alpha - 1) exp(-beta x) / Gamma(alpha), x > 0.

_GAMMA = ("concentration", "rate")


def _gamma_params(params: Params) -> tuple[Array, Array]:
  p = check_params("Gamma", params, _GAMMA)
  return p["concentration"], p["rate"]


def _gamma_transform(params: Params, keys: Array) -> Array:
  """``z = jax.random.gamma(key, alpha) / beta`` per key.

  Differentiable in ``alpha`` by JAX's implicit-reparameterisation JVP
  (``random_gamma_grad``: ``-(dF/dalpha) / p``, Figurnov et al. 2018).
  Draws that underflow to 0 (alpha << 1 in float32) are raised to the
  smallest normal float, so ``log_prob`` (and the score function) stays
  finite.
  """
  a, b = _gamma_params(params)
  z = _map_keys("Gamma", lambda k: jax.random.gamma(k, a, dtype=a.dtype),
                keys) / _expand_to(b, jnp.ndim(keys) + b.ndim)
  return _clip_support(z, upper=False)


def _clip_support(x: Array, upper: bool) -> Array:
  """Clips samples into ``[tiny, 1 - epsneg]`` (or ``[tiny, inf)``).

  For concentrations << 1, float32 draws underflow to exactly 0 (or round to
  1), where ``log_prob`` is infinite and score-function estimates become
  NaN; torch.distributions clamps its Dirichlet samples the same way. The
  moved probability mass is below the float's resolution of the density's
  support; clipped draws get a zero path gradient.
  """
  info = jnp.finfo(x.dtype)
  hi = 1.0 - info.epsneg if upper else jnp.inf
  return jnp.clip(x, info.tiny, hi)


def _gamma_log_prob(params: Params, x: Array) -> Array:
  """sum [alpha log beta + (alpha - 1) log x - beta x - lgamma(alpha)]."""
  a, b = _gamma_params(params)
  x = jnp.asarray(x)
  _check_event("Gamma", x, a.shape)
  ae, be = _expand_to(a, x.ndim), _expand_to(b, x.ndim)
  lp = (ae * jnp.log(be) + (ae - 1.0) * jnp.log(x) - be * x - _gammaln(ae))
  return _sum_event(lp, a.ndim)


def _gamma_entropy(params: Params) -> Array:
  """sum [alpha - log beta + lgamma(alpha) + (1 - alpha) digamma(alpha)]."""
  a, b = _gamma_params(params)
  return jnp.sum(a - jnp.log(b) + _gammaln(a) + (1.0 - a) * _digamma(a))


def _gamma_kl(params: Params, other: Params) -> Array:
  """KL(G(a1, b1) || G(a2, b2)) = (a1 - a2) psi(a1) - lgamma(a1)
  + lgamma(a2) + a2 (log b1 - log b2) + a1 (b2 - b1) / b1, summed."""
  a1, b1 = _gamma_params(params)
  a2, b2 = _gamma_params(other)
  if a1.shape != a2.shape:
    raise ValueError(f"Gamma.kl: shapes differ, {a1.shape} vs {a2.shape}")
  return jnp.sum((a1 - a2) * _digamma(a1) - _gammaln(a1) + _gammaln(a2) +
                 a2 * (jnp.log(b1) - jnp.log(b2)) + a1 * (b2 - b1) / b1)


def _gamma_weak_derivative(params: Params, key: Array, shape=(),
                           coupled: bool = True) -> dict:
  """rate: ``d/dbeta G(a, b) = (a / b) [G(a, b) - G(a + 1, b)]``.

  (Because ``G(a + 1, b)(x) = (b x / a) G(a, b)(x)``; Mohamed et al. 2020,
  Table 1.) Coupled: ``q- = q+ + Exponential(b)`` (a ``G(a + 1, b)`` draw
  sharing the ``G(a, b)`` one). There is no closed-form weak derivative for
  the concentration, so only ``rate`` is covered.
  """
  a, b = _gamma_params(params)
  out_shape = _shape(shape) + a.shape
  k1, k2 = jax.random.split(key)
  be = _expand_to(b, len(out_shape))
  pos = jax.random.gamma(k1, a, out_shape, dtype=a.dtype) / be
  if coupled:
    neg = pos + jax.random.exponential(k2, out_shape, dtype=a.dtype) / be
  else:
    neg = jax.random.gamma(k2, a + 1.0, out_shape, dtype=a.dtype) / be
  return {"rate": WeakDerivative(a / b, pos, neg)}


def _gamma_event(params: Params) -> tuple[int, ...]:
  return tuple(_gamma_params(params)[0].shape)


Gamma = Distribution(
    name="Gamma",
    param_names=_GAMMA,
    reparameterized=True,
    implicit_reparameterized=True,
    noise=_key_noise(_gamma_event),
    transform=_gamma_transform,
    log_prob=_gamma_log_prob,
    entropy=_gamma_entropy,
    kl=_gamma_kl,
    event_shape=_gamma_event,
    mean=lambda params: (lambda a, b: a / b)(*_gamma_params(params)),
    covariance=lambda params: _diag_cov(
        (lambda a, b: a / jnp.square(b))(*_gamma_params(params))),
    weak_derivative=_gamma_weak_derivative,
    weak_derivative_params=("rate",),
)


# ---------------------------------------------------------------------------
# Beta, params {"concentration1" (alpha, exponent of x), "concentration0"
# (beta, exponent of 1 - x)}; x = G_a / (G_a + G_b) with Gamma draws.

_BETA = ("concentration1", "concentration0")


def _beta_params(params: Params) -> tuple[Array, Array]:
  p = check_params("Beta", params, _BETA)
  return p["concentration1"], p["concentration0"]


def _beta_transform(params: Params, keys: Array) -> Array:
  """``x = sigmoid(log G_a - log G_b)``, log-space Gamma draws (stable for
  small concentrations), each with its implicit gradient; clipped into
  ``[tiny, 1 - epsneg]`` (see ``_clip_support``)."""
  a, b = _beta_params(params)

  def one(k):
    # One sampler call for both Gammas (each sampler instance costs compile
    # time): log G [2, *E].
    log_g = jax.random.loggamma(k, jnp.stack([a, b]), dtype=a.dtype)
    return _clip_support(jax.nn.sigmoid(log_g[0] - log_g[1]), upper=True)

  return _map_keys("Beta", one, keys)


def _betaln(a: Array, b: Array) -> Array:
  return _gammaln(a) + _gammaln(b) - _gammaln(a + b)


def _beta_log_prob(params: Params, x: Array) -> Array:
  """sum [(a - 1) log x + (b - 1) log(1 - x) - log B(a, b)]."""
  a, b = _beta_params(params)
  x = jnp.asarray(x)
  _check_event("Beta", x, a.shape)
  ae, be = _expand_to(a, x.ndim), _expand_to(b, x.ndim)
  lp = ((ae - 1.0) * jnp.log(x) + (be - 1.0) * jnp.log1p(-x) -
        _betaln(ae, be))
  return _sum_event(lp, a.ndim)


def _beta_entropy(params: Params) -> Array:
  """sum [log B(a, b) - (a - 1) psi(a) - (b - 1) psi(b)
  + (a + b - 2) psi(a + b)]."""
  a, b = _beta_params(params)
  return jnp.sum(_betaln(a, b) - (a - 1.0) * _digamma(a) -
                 (b - 1.0) * _digamma(b) + (a + b - 2.0) * _digamma(a + b))


def _beta_kl(params: Params, other: Params) -> Array:
  """KL(B(a1, b1) || B(a2, b2)) = log B(a2, b2) - log B(a1, b1)
  + (a1 - a2) psi(a1) + (b1 - b2) psi(b1) + (a2 - a1 + b2 - b1)
  psi(a1 + b1), summed."""
  a1, b1 = _beta_params(params)
  a2, b2 = _beta_params(other)
  if a1.shape != a2.shape:
    raise ValueError(f"Beta.kl: shapes differ, {a1.shape} vs {a2.shape}")
  return jnp.sum(_betaln(a2, b2) - _betaln(a1, b1) +
                 (a1 - a2) * _digamma(a1) + (b1 - b2) * _digamma(b1) +
                 (a2 - a1 + b2 - b1) * _digamma(a1 + b1))


def _beta_event(params: Params) -> tuple[int, ...]:
  return tuple(_beta_params(params)[0].shape)


def _beta_var(params: Params) -> Array:
  a, b = _beta_params(params)
  n = a + b
  return a * b / (jnp.square(n) * (n + 1.0))


Beta = Distribution(
    name="Beta",
    param_names=_BETA,
    reparameterized=True,
    implicit_reparameterized=True,
    noise=_key_noise(_beta_event),
    transform=_beta_transform,
    log_prob=_beta_log_prob,
    entropy=_beta_entropy,
    kl=_beta_kl,
    event_shape=_beta_event,
    mean=lambda params: (lambda a, b: a / (a + b))(*_beta_params(params)),
    covariance=lambda params: _diag_cov(_beta_var(params)),
)


# ---------------------------------------------------------------------------
# Dirichlet, params {"concentration": [*B, K]}; the event is the whole array
# (each row of the last axis is one point of the K-simplex).

_DIRICHLET = ("concentration",)


def _dirichlet_alpha(params: Params) -> Array:
  a = check_params("Dirichlet", params, _DIRICHLET)["concentration"]
  if a.ndim < 1 or a.shape[-1] < 2:
    raise ValueError(f"Dirichlet concentration needs a last (simplex) axis "
                     f"of size >= 2, got shape {a.shape}")
  return a


def _dirichlet_transform(params: Params, keys: Array) -> Array:
  """``x = softmax(log G)``, ``G_k ~ Gamma(alpha_k)`` drawn in log space,
  each with its implicit gradient; entries clipped into ``[tiny, 1 -
  epsneg]`` (see ``_clip_support``)."""
  a = _dirichlet_alpha(params)
  return _map_keys(
      "Dirichlet", lambda k: _clip_support(jax.nn.softmax(
          jax.random.loggamma(k, a, dtype=a.dtype), axis=-1), upper=True),
      keys)


def _dirichlet_log_prob(params: Params, x: Array) -> Array:
  """sum [sum_k (a_k - 1) log x_k + lgamma(a_0) - sum_k lgamma(a_k)]."""
  a = _dirichlet_alpha(params)
  x = jnp.asarray(x)
  _check_event("Dirichlet", x, a.shape)
  ae = _expand_to(a, x.ndim)
  lp = (jnp.sum((ae - 1.0) * jnp.log(x) - _gammaln(ae), axis=-1) +
        _gammaln(jnp.sum(ae, axis=-1)))
  return _sum_event(lp, a.ndim - 1)


def _dirichlet_entropy(params: Params) -> Array:
  """sum [log B(a) + (a_0 - K) psi(a_0) - sum_k (a_k - 1) psi(a_k)]."""
  a = _dirichlet_alpha(params)
  a0 = jnp.sum(a, axis=-1)
  k = a.shape[-1]
  log_b = jnp.sum(_gammaln(a), axis=-1) - _gammaln(a0)
  return jnp.sum(log_b + (a0 - k) * _digamma(a0) -
                 jnp.sum((a - 1.0) * _digamma(a), axis=-1))


def _dirichlet_kl(params: Params, other: Params) -> Array:
  """KL(Dir(a) || Dir(b)) = lgamma(a_0) - sum lgamma(a_k) - lgamma(b_0)
  + sum lgamma(b_k) + sum (a_k - b_k) (psi(a_k) - psi(a_0)), summed."""
  a, b = _dirichlet_alpha(params), _dirichlet_alpha(other)
  if a.shape != b.shape:
    raise ValueError(f"Dirichlet.kl: shapes differ, {a.shape} vs {b.shape}")
  a0, b0 = jnp.sum(a, axis=-1), jnp.sum(b, axis=-1)
  return jnp.sum(_gammaln(a0) - _gammaln(b0) +
                 jnp.sum(_gammaln(b) - _gammaln(a) + (a - b) *
                         (_digamma(a) - _digamma(a0)[..., None]), axis=-1))


def _dirichlet_covariance(params: Params) -> Array:
  """Block-diagonal ``[D, D]``: per row ``(diag(m) - m m^T) / (a_0 + 1)``."""
  a = _dirichlet_alpha(params)
  k = a.shape[-1]
  a_bxk = a.reshape(-1, k)
  a0_b = jnp.sum(a_bxk, axis=-1)
  m_bxk = a_bxk / a0_b[:, None]
  blocks = ((jax.vmap(jnp.diag)(m_bxk) - m_bxk[:, :, None] * m_bxk[:, None, :])
            / (a0_b + 1.0)[:, None, None])
  return jax.scipy.linalg.block_diag(*list(blocks))


def _dirichlet_event(params: Params) -> tuple[int, ...]:
  return tuple(_dirichlet_alpha(params).shape)


Dirichlet = Distribution(
    name="Dirichlet",
    param_names=_DIRICHLET,
    reparameterized=True,
    implicit_reparameterized=True,
    noise=_key_noise(_dirichlet_event),
    transform=_dirichlet_transform,
    log_prob=_dirichlet_log_prob,
    entropy=_dirichlet_entropy,
    kl=_dirichlet_kl,
    event_shape=_dirichlet_event,
    mean=lambda params: (lambda a: a / jnp.sum(a, axis=-1, keepdims=True))(
        _dirichlet_alpha(params)),
    covariance=_dirichlet_covariance,
)


# ---------------------------------------------------------------------------
# Poisson, params {"rate"}; samples are int32.

_POISSON = ("rate",)


def _poisson_rate(params: Params) -> Array:
  return check_params("Poisson", params, _POISSON)["rate"]


def _poisson_transform(params: Params, keys: Array) -> Array:
  """``x = jax.random.poisson(key, rate)`` (not differentiable)."""
  lam = _poisson_rate(params)
  x = _map_keys("Poisson", lambda k: jax.random.poisson(
      k, jax.lax.stop_gradient(lam), dtype=jnp.int32), keys)
  # Propagate NaN-poisoned rates (jit) as a NaN-free int cannot: -1 marks it.
  return jnp.where(_expand_to(jnp.isnan(lam), x.ndim), -1, x)


def _poisson_log_prob(params: Params, x: Array) -> Array:
  """sum [x log rate - rate - lgamma(x + 1)]."""
  lam = _poisson_rate(params)
  x = jnp.asarray(x)
  _check_event("Poisson", x, lam.shape)
  le = _expand_to(lam, x.ndim)
  xf = x.astype(lam.dtype)
  lp = jax.scipy.special.xlogy(xf, le) - le - _gammaln(xf + 1.0)
  return _sum_event(jnp.where(xf >= 0, lp, jnp.nan), lam.ndim)


def _poisson_entropy(params: Params) -> Array:
  del params
  raise ValueError("Poisson has no closed-form entropy; estimate it as "
                   "-mean(Poisson.log_prob(params, samples))")


def _poisson_kl(params: Params, other: Params) -> Array:
  """KL(Pois(l1) || Pois(l2)) = l1 log(l1 / l2) - l1 + l2, summed."""
  l1, l2 = _poisson_rate(params), _poisson_rate(other)
  if l1.shape != l2.shape:
    raise ValueError(f"Poisson.kl: shapes differ, {l1.shape} vs {l2.shape}")
  return jnp.sum(l1 * (jnp.log(l1) - jnp.log(l2)) - l1 + l2)


def _poisson_weak_derivative(params: Params, key: Array, shape=(),
                             coupled: bool = True) -> dict:
  """d/drate Pois(rate) = Pois(rate) shifted by one - Pois(rate).

  (``c = 1``, ``q+ = N + 1``, ``q- = N`` with N ~ Pois(rate); Mohamed et al.
  2020, Table 1.) Coupled: the same N on both sides; uncoupled: independent.
  """
  lam = jax.lax.stop_gradient(_poisson_rate(params))
  out_shape = _shape(shape) + lam.shape
  k1, k2 = jax.random.split(key)
  n_pos = jax.random.poisson(k1, lam, out_shape, dtype=jnp.int32)
  n_neg = n_pos if coupled else jax.random.poisson(k2, lam, out_shape,
                                                   dtype=jnp.int32)
  return {"rate": WeakDerivative(jnp.ones_like(lam), n_pos + 1, n_neg)}


def _poisson_event(params: Params) -> tuple[int, ...]:
  return tuple(_poisson_rate(params).shape)


Poisson = Distribution(
    name="Poisson",
    param_names=_POISSON,
    reparameterized=False,
    noise=_key_noise(_poisson_event),
    transform=_poisson_transform,
    log_prob=_poisson_log_prob,
    entropy=_poisson_entropy,
    kl=_poisson_kl,
    event_shape=_poisson_event,
    mean=_poisson_rate,
    covariance=lambda params: _diag_cov(_poisson_rate(params)),
    weak_derivative=_poisson_weak_derivative,
    weak_derivative_params=_POISSON,
)


# ---------------------------------------------------------------------------
# Multivariate Normal, full covariance Sigma = L L^T, params {"loc": [D],
# "scale_tril": [D, D]} (lower triangle used, diagonal > 0).

_MVN = ("loc", "scale_tril")


def _mvn_params(params: Params) -> tuple[Array, Array]:
  p = _check_keys("MultivariateNormalTriL", params, _MVN)
  loc, tril = p["loc"], p["scale_tril"]
  if loc.ndim != 1 or tril.shape != loc.shape * 2:
    raise ValueError(f"MultivariateNormalTriL needs loc [D] and scale_tril "
                     f"[D, D], got {loc.shape} and {tril.shape}")
  tril = jnp.tril(tril)
  diag = jnp.diagonal(tril)
  poisoned = _positive("MultivariateNormalTriL", "scale_tril diagonal", diag)
  if poisoned is not diag:  # traced: NaN-poison non-positive diagonals
    tril = tril + jnp.diag(poisoned - diag)
  return loc, tril


def _mvn_noise(params: Params, key: Array, shape=()) -> Array:
  """eps ~ N(0, I_D), ``[*shape, D]``."""
  loc, _ = _mvn_params(params)
  return jax.random.normal(key, _shape(shape) + loc.shape, dtype=loc.dtype)


def _mvn_transform(params: Params, eps: Array) -> Array:
  """``x = loc + L eps``; eps ``[*batch, D]``."""
  loc, tril = _mvn_params(params)
  eps = jnp.asarray(eps)
  _check_event("MultivariateNormalTriL", eps, loc.shape)
  return _expand_to(loc, eps.ndim) + jnp.einsum("de,...e->...d", tril, eps)


def _tril_log_prob(loc: Array, tril: Array, x: Array) -> Array:
  r = (x - _expand_to(loc, x.ndim)).reshape(-1, loc.shape[0])
  z = jax.scipy.linalg.solve_triangular(tril, r.T, lower=True)  # [D, B]
  d = loc.shape[0]
  lp = (-0.5 * jnp.sum(jnp.square(z), axis=0) -
        jnp.sum(jnp.log(jnp.diagonal(tril))) - d * _HALF_LOG_2PI)
  return lp.reshape(x.shape[:-1])


def _mvn_log_prob(params: Params, x: Array) -> Array:
  """log N(x; loc, L L^T), x ``[*batch, D]`` -> ``[*batch]``."""
  loc, tril = _mvn_params(params)
  x = jnp.asarray(x)
  _check_event("MultivariateNormalTriL", x, loc.shape)
  return _tril_log_prob(loc, tril, x)


def _gaussian_entropy(tril: Array) -> Array:
  d = tril.shape[0]
  return d * (0.5 + _HALF_LOG_2PI) + jnp.sum(jnp.log(jnp.diagonal(tril)))


def _gaussian_kl(loc1, tril1, loc2, tril2) -> Array:
  """KL(N(m1, L1 L1^T) || N(m2, L2 L2^T)) = sum log diag L2
  - sum log diag L1 + (||L2^-1 L1||_F^2 + ||L2^-1 (m2 - m1)||^2 - D) / 2."""
  if loc1.shape != loc2.shape:
    raise ValueError(f"MultivariateNormal kl: shapes differ, {loc1.shape} "
                     f"vs {loc2.shape}")
  solve = lambda b: jax.scipy.linalg.solve_triangular(tril2, b, lower=True)
  m = solve((loc2 - loc1)[:, None])[:, 0]
  return (jnp.sum(jnp.log(jnp.diagonal(tril2))) -
          jnp.sum(jnp.log(jnp.diagonal(tril1))) +
          0.5 * (jnp.sum(jnp.square(solve(tril1))) + jnp.sum(jnp.square(m)) -
                 loc1.shape[0]))


MultivariateNormalTriL = Distribution(
    name="MultivariateNormalTriL",
    param_names=_MVN,
    reparameterized=True,
    noise=_mvn_noise,
    transform=_mvn_transform,
    log_prob=_mvn_log_prob,
    entropy=lambda params: _gaussian_entropy(_mvn_params(params)[1]),
    kl=lambda params, other: _gaussian_kl(*_mvn_params(params),
                                          *_mvn_params(other)),
    event_shape=lambda params: tuple(_mvn_params(params)[0].shape),
    mean=lambda params: _mvn_params(params)[0],
    covariance=lambda params: (lambda t: t @ t.T)(_mvn_params(params)[1]),
)


# ---------------------------------------------------------------------------
# Low-rank plus diagonal Normal, Sigma = F F^T + diag(d), params
# {"loc": [D], "cov_factor": [D, R], "cov_diag": [D]}.

_LOWRANK = ("loc", "cov_factor", "cov_diag")


def _lowrank_params(params: Params) -> tuple[Array, Array, Array]:
  p = _check_keys("LowRankMultivariateNormal", params, _LOWRANK)
  loc, f, d = p["loc"], p["cov_factor"], p["cov_diag"]
  if (loc.ndim != 1 or d.shape != loc.shape or f.ndim != 2 or
      f.shape[0] != loc.shape[0]):
    raise ValueError(f"LowRankMultivariateNormal needs loc [D], cov_factor "
                     f"[D, R], cov_diag [D], got {loc.shape}, {f.shape}, "
                     f"{d.shape}")
  return loc, f, _positive("LowRankMultivariateNormal", "cov_diag", d)


def _lowrank_noise(params: Params, key: Array, shape=()) -> Array:
  """eps ~ N(0, I_{R + D}), ``[*shape, R + D]``."""
  loc, f, _ = _lowrank_params(params)
  return jax.random.normal(key, _shape(shape) + (f.shape[1] + loc.shape[0],),
                           dtype=loc.dtype)


def _lowrank_transform(params: Params, eps: Array) -> Array:
  """``x = loc + F eps[:R] + sqrt(d) eps[R:]``; eps ``[*batch, R + D]``."""
  loc, f, d = _lowrank_params(params)
  eps = jnp.asarray(eps)
  r = f.shape[1]
  _check_event("LowRankMultivariateNormal", eps, (r + loc.shape[0],))
  return (_expand_to(loc, eps.ndim) +
          jnp.einsum("dr,...r->...d", f, eps[..., :r]) +
          _expand_to(jnp.sqrt(d), eps.ndim) * eps[..., r:])


def _lowrank_log_prob(params: Params, x: Array) -> Array:
  """Woodbury: with C = I_R + F^T D^-1 F = L_C L_C^T,
  r^T Sigma^-1 r = sum r^2 / d - ||L_C^-1 F^T (r / d)||^2 and
  log det Sigma = sum log d + 2 sum log diag L_C. O(D R^2) per call."""
  loc, f, d = _lowrank_params(params)
  x = jnp.asarray(x)
  _check_event("LowRankMultivariateNormal", x, loc.shape)
  r_bxd = (x - _expand_to(loc, x.ndim)).reshape(-1, loc.shape[0])
  cap = jnp.eye(f.shape[1], dtype=f.dtype) + f.T @ (f / d[:, None])
  chol = jnp.linalg.cholesky(cap)
  w = jax.scipy.linalg.solve_triangular(chol, f.T @ (r_bxd / d[None]).T,
                                        lower=True)  # [R, B]
  mahal = (jnp.sum(jnp.square(r_bxd) / d[None], axis=-1) -
           jnp.sum(jnp.square(w), axis=0))
  logdet = jnp.sum(jnp.log(d)) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
  lp = -0.5 * (mahal + logdet) - loc.shape[0] * _HALF_LOG_2PI
  return lp.reshape(x.shape[:-1])


def _lowrank_cov(params: Params) -> Array:
  _, f, d = _lowrank_params(params)
  return f @ f.T + jnp.diag(d)


def _lowrank_tril(params: Params) -> tuple[Array, Array]:
  """``(loc, cholesky(Sigma))``, dense O(D^3) (entropy and KL)."""
  return _lowrank_params(params)[0], jnp.linalg.cholesky(_lowrank_cov(params))


LowRankMultivariateNormal = Distribution(
    name="LowRankMultivariateNormal",
    param_names=_LOWRANK,
    reparameterized=True,
    noise=_lowrank_noise,
    transform=_lowrank_transform,
    log_prob=_lowrank_log_prob,
    entropy=lambda params: _gaussian_entropy(_lowrank_tril(params)[1]),
    kl=lambda params, other: _gaussian_kl(*_lowrank_tril(params),
                                          *_lowrank_tril(other)),
    event_shape=lambda params: tuple(_lowrank_params(params)[0].shape),
    mean=lambda params: _lowrank_params(params)[0],
    covariance=_lowrank_cov,
)
