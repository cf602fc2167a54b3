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
  of the parameters (pathwise estimators need it).

Parameter dicts are checked when a function is traced: a missing or unknown
key, or ``loc``/``scale`` of different shapes, raises ``ValueError`` naming it.

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Distribution", "Normal", "Laplace", "Bernoulli", "Categorical",
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

  def sample(self, params: Params, key: Array, shape=()) -> Array:
    """``transform(params, noise(params, key, shape))``.

    Returns:
      ``[*shape, *event_shape]``.
    """
    return self.transform(params, self.noise(params, key, shape))


# ---------------------------------------------------------------------------
# Boundary checks (run at trace time; shapes are static).


def check_params(dist_name: str, params: Any,
                 names: Sequence[str]) -> dict[str, Array]:
  """Checks a parameter dict has exactly ``names`` with equal shapes.

  Args:
    dist_name: distribution name for the error message.
    params: the candidate parameter dict.
    names: the required keys.

  Returns:
    ``{name: jnp.asarray(params[name])}``.

  Raises:
    ValueError: if ``params`` is not a mapping, misses or adds keys, or its
      arrays have different shapes.
  """
  if not isinstance(params, Mapping):
    raise ValueError(f"{dist_name} params must be a dict with keys "
                     f"{list(names)}, got {type(params).__name__}")
  missing = [n for n in names if n not in params]
  unknown = [k for k in params if k not in names]
  if missing or unknown:
    raise ValueError(f"{dist_name} params must have keys {list(names)}; "
                     f"missing {missing}, unknown {unknown}")
  out = {n: jnp.asarray(params[n]) for n in names}
  shapes = {n: a.shape for n, a in out.items()}
  if len(set(shapes.values())) > 1:
    raise ValueError(f"{dist_name} params must have equal shapes, got "
                     f"{shapes}")
  # Value checks where the values are known (outside jit / grad tracing).
  scale = params.get("scale") if "scale" in names else None
  if scale is not None and not isinstance(scale, jax.core.Tracer):
    if not np.all(np.asarray(scale) > 0):
      raise ValueError(f"{dist_name} scale must be > 0 everywhere, got "
                       f"min {float(np.min(np.asarray(scale)))}")
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
  logits = check_params("Bernoulli", params, _LOGITS)["logits"]
  p = jax.nn.sigmoid(logits)
  return -jnp.sum(p * jax.nn.log_sigmoid(logits) +
                  (1.0 - p) * jax.nn.log_sigmoid(-logits))


def _bernoulli_kl(params: Params, other: Params) -> Array:
  """sum_d [p (log p - log q) + (1-p) (log(1-p) - log(1-q))]."""
  l1 = check_params("Bernoulli", params, _LOGITS)["logits"]
  l2 = check_params("Bernoulli", other, _LOGITS)["logits"]
  if l1.shape != l2.shape:
    raise ValueError(f"Bernoulli.kl: shapes differ, {l1.shape} vs {l2.shape}")
  p = jax.nn.sigmoid(l1)
  return jnp.sum(p * (jax.nn.log_sigmoid(l1) - jax.nn.log_sigmoid(l2)) +
                 (1.0 - p) * (jax.nn.log_sigmoid(-l1) -
                              jax.nn.log_sigmoid(-l2)))


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
