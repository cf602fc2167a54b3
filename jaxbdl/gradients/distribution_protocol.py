"""The ``Distribution`` protocol: a family as a NamedTuple of pure functions.

Every family in :mod:`jaxbdl.gradients.distributions` (location-scale,
discrete, implicitly reparameterised, multivariate Normal) is a
:class:`Distribution`; this module holds the type, the parameter checks run at
the boundary, and the shape helpers the families share. The conventions
(event shapes, ``noise``/``transform``, capabilities as fields) are documented
in :mod:`jaxbdl.gradients.distributions`.

Parameter dicts are checked when a function is traced: a missing or unknown
key, or parameters of different shapes, raises ``ValueError`` naming it.
Positive parameters (``scale``, ``rate``, ``concentration*``, ``cov_diag``,
the diagonal of ``scale_tril``) are checked twice: with concrete values
(eager calls) a value <= 0 raises ``ValueError``; under ``jax.jit``/``grad``
tracing the values are unknown, so the parameter is *poisoned* instead,
``a + where(all(a > 0), 0, nan)``: every sample, density and gradient
computed from such a parameter is NaN (finite garbage is never returned).

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 5 (pathwise), Sec. 6, eq. 39
  and Table 1 (weak derivatives).
  M. Figurnov, S. Mohamed, A. Mnih. Implicit Reparameterization Gradients.
  NeurIPS 2018.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Distribution", "WeakDerivative", "check_params",
           "standard_normal"]

Array = jax.Array
Params = Mapping[str, Array]


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
    relaxation: the continuous relaxation this discrete family admits, or
      ``None``: ``"bernoulli"`` (binary Concrete) or ``"categorical"``
      (Concrete / Gumbel-softmax; Maddison et al. 2017, Jang et al. 2017);
      ``jaxbdl.gradients.concrete`` and the estimators built on it (REBAR,
      RELAX) read it.
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
  relaxation: str | None = None

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


def _check_event(dist_name: str, x: Any,
                 event_shape: tuple[int, ...]) -> Array:
  """``jnp.asarray(x)``, checked to end with ``event_shape``."""
  x = jnp.asarray(x)
  nd = len(event_shape)
  if x.ndim < nd or tuple(x.shape[x.ndim - nd:]) != tuple(event_shape):
    raise ValueError(f"{dist_name}.log_prob: x of shape {x.shape} does not "
                     f"end with the event shape {event_shape}")
  return x


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


def _is_threefry(key: Array) -> bool:
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return str(jax.random.key_impl(key)) == "threefry2x32"
  return jax.config.jax_default_prng_impl == "threefry2x32"


def standard_normal(key: Array, shape: Sequence[int] = (),
                    dtype: Any = jnp.float32) -> Array:
  """``N(0, I)`` draws of ``shape``, avoiding XLA:CPU's slow odd-count path.

  XLA:CPU runs JAX's default (partitionable) threefry generator several
  times slower when the number of values drawn is ODD: 186,801 normals (the
  weights of a 64-400-400-1 MLP) take ~5x as long as 186,802
  (``bench/rng_sizes.py``), which made the wide ELBO step 2.6x slower.
  Slicing an even draw does not help (XLA fuses the slice into the
  generator). So for an odd count ``n`` under threefry this returns
  ``concat(normal(fold_in(key, 0), n - 1), normal(fold_in(key, 1), 1))``:
  independent standard normals, but NOT the numbers ``jax.random.normal(key,
  shape)`` would give. Even counts and other generators (``rbg``,
  non-partitionable threefry) call ``jax.random.normal(key, shape)``.

  Args:
    key: PRNG key (typed or raw).
    shape: output shape.
    dtype: floating dtype.

  Returns:
    ``[*shape]`` standard normal values.
  """
  shape = _shape(shape)
  n = math.prod(shape)
  if (n % 2 == 0 or not jax.config.jax_threefry_partitionable
      or not _is_threefry(key)):
    return jax.random.normal(key, shape, dtype)
  head = jax.random.normal(jax.random.fold_in(key, 0), (n - 1,), dtype)
  tail = jax.random.normal(jax.random.fold_in(key, 1), (1,), dtype)
  return jnp.concatenate([head, tail]).reshape(shape)


def _array_noise(sampler: Callable[..., Array],
                 array_of: Callable[[Params], Array]):
  """``noise(params, key, shape)`` for families with parameter-free noise.

  Returns ``sampler(key, [*shape, *a.shape], dtype=a.dtype)`` with ``a =
  array_of(params)`` the checked parameter the noise is shaped like (e.g.
  ``jax.random.normal`` and ``loc``, ``jax.random.gumbel`` and ``logits``).
  """

  def noise(params: Params, key: Array, shape=()) -> Array:
    a = array_of(params)
    return sampler(key, _shape(shape) + a.shape, dtype=a.dtype)

  return noise


def _diag_cov(var: Array) -> Array:
  """``[*E]`` variances -> ``[D, D]`` diagonal covariance, D = prod(E)."""
  return jnp.diag(var.reshape(-1))


# ---------------------------------------------------------------------------
# Families sampled through JAX's samplers: noise is one PRNG key per sample.


def _key_noise(event_shape_fn: Callable[[Params], tuple[int, ...]]):
  """``noise(params, key, shape)`` -> PRNG keys of shape ``[*shape]``."""

  def noise(params: Params, key: Array, shape=()) -> Array:
    event_shape_fn(params)  # validates the parameter dict
    shape = _shape(shape)
    return jax.random.split(key, math.prod(shape)).reshape(shape)

  return noise


def _key_sampled(name: str, param_names: tuple[str, ...],
                 unpack: Callable[[Params], Any], *, implicit: bool,
                 **functions) -> Distribution:
  """A family whose ``noise`` is one PRNG key per sample (``[*shape]``).

  ``transform(params, keys)`` draws with one of JAX's samplers per key (see
  :func:`_map_keys`); ``unpack(params)`` checks the parameter dict and
  returns its arrays, the first of which has the event shape. ``implicit``:
  the sampler's JVP is an implicit reparameterisation gradient (Figurnov et
  al. 2018), so the family is ``reparameterized`` too. ``functions``: the
  remaining :class:`Distribution` fields (``transform``, ``log_prob``,
  ``entropy``, ``kl`` and the optional capabilities).
  """

  def event_shape(params: Params) -> tuple[int, ...]:
    return tuple(jax.tree.leaves(unpack(params))[0].shape)

  return Distribution(
      name=name, param_names=param_names, reparameterized=implicit,
      implicit_reparameterized=implicit, noise=_key_noise(event_shape),
      event_shape=event_shape, **functions)


def _map_keys(dist_name: str, fn: Callable[[Array], Array],
              keys: Array) -> Array:
  """Applies ``fn(key) -> [*E]`` to keys ``[*batch]`` -> ``[*batch, *E]``."""
  keys = jnp.asarray(keys)
  if not jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
    raise ValueError(f"{dist_name}.transform: noise must be typed PRNG keys "
                     f"(from {dist_name}.noise), got dtype {keys.dtype}")
  out = jax.vmap(fn)(keys.reshape((-1,)))
  return out.reshape(keys.shape + out.shape[1:])
