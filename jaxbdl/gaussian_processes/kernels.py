"""Stationary covariance functions: RBF and the Matern family (nu = 1/2, 3/2, 5/2).

Every kernel has the signature ``kernel(x1 [N, D], x2 [M, D], lengthscale,
variance) -> [N, M]``. ``lengthscale`` is a positive scalar or a ``[D]`` vector
(automatic relevance determination); ``variance`` is the positive prior
(signal) variance k(x, x). For Gaussian-process code that optimises
hyper-parameters, :func:`make_kernel_fn` turns a kernel into a parameterised
``kernel_fn(params, x1, x2)`` with ``params = {"lengthscale", "variance"}``.

With scaled distance r = ||(x - x') / lengthscale||:

- RBF (squared exponential): variance * exp(-r^2 / 2).
- Matern 1/2 (exponential / Ornstein-Uhlenbeck): variance * exp(-r).
- Matern 3/2: variance * (1 + sqrt(3) r) exp(-sqrt(3) r).
- Matern 5/2: variance * (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r).

References:
  Rasmussen & Williams (2006), "Gaussian Processes for Machine Learning",
  Eq. (4.9) (squared exponential) and Eqs. (4.14), (4.16)-(4.17) (Matern with
  nu = 1/2, 3/2, 5/2).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
KernelFn = Callable[[Any, Array, Array], Array]

__all__ = [
    "rbf", "matern12", "matern32", "matern52", "KERNELS", "get_kernel",
    "make_kernel_fn", "squared_distance", "validate_inputs",
]


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def validate_inputs(x1: Any, x2: Any, name: str = "kernel") -> None:
  """Checks two input matrices at the boundary (outside jit).

  Raises:
    ValueError: if either is not a 2-D ``[N, D]`` array, the feature
      dimensions differ, or a concrete input holds NaN/inf.
  """
  for label, x in (("x1", x1), ("x2", x2)):
    if np.ndim(x) != 2:
      raise ValueError(f"{name}: {label} must be a 2-D [N, D] array, got "
                       f"shape {np.shape(x)}")
    if _is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
      raise ValueError(f"{name}: {label} contains NaN or inf")
  if np.shape(x1)[1] != np.shape(x2)[1]:
    raise ValueError(f"{name}: feature dimension mismatch: x1 has "
                     f"{np.shape(x1)[1]} features, x2 has {np.shape(x2)[1]}")


def _validate_hyper(lengthscale: Any, variance: Any, dim: int,
                    name: str) -> None:
  if np.ndim(lengthscale) not in (0, 1):
    raise ValueError(f"{name}: lengthscale must be a scalar or a [D] vector, "
                     f"got shape {np.shape(lengthscale)}")
  if np.ndim(lengthscale) == 1 and np.shape(lengthscale)[0] != dim:
    raise ValueError(f"{name}: lengthscale has {np.shape(lengthscale)[0]} "
                     f"entries but the inputs have {dim} features")
  if np.ndim(variance) != 0:
    raise ValueError(f"{name}: variance must be a scalar, got shape "
                     f"{np.shape(variance)}")
  if _is_concrete(lengthscale) and not np.all(np.asarray(lengthscale) > 0):
    raise ValueError(f"{name}: lengthscale must be positive, got "
                     f"{np.asarray(lengthscale)}")
  if _is_concrete(variance) and not float(variance) > 0:
    raise ValueError(f"{name}: variance must be positive, got "
                     f"{float(variance)}")


def squared_distance(x1: Array, x2: Array, lengthscale: Any = 1.0) -> Array:
  """Squared scaled Euclidean distances ``||(x1_i - x2_j) / l||^2``, ``[N, M]``.

  Uses ||a||^2 + ||b||^2 - 2 a.b (memory O(NM), not O(NMD)) clipped at 0.
  """
  lengthscale = jnp.asarray(lengthscale)
  if lengthscale.ndim == 1:
    lengthscale = lengthscale[None, :]
  z1 = x1 / lengthscale
  z2 = x2 / lengthscale
  sq1 = jnp.sum(z1 * z1, axis=-1)[:, None]
  sq2 = jnp.sum(z2 * z2, axis=-1)[None, :]
  return jnp.maximum(sq1 + sq2 - 2.0 * (z1 @ z2.T), 0.0)


def _safe_sqrt(r2: Array) -> Array:
  """sqrt with a zero (not NaN/inf) gradient at 0, for distances on the diagonal."""
  positive = r2 > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, r2, 1.0)), 0.0)


def _rbf(x1, x2, lengthscale, variance):
  return variance * jnp.exp(-0.5 * squared_distance(x1, x2, lengthscale))


def _matern12(x1, x2, lengthscale, variance):
  r = _safe_sqrt(squared_distance(x1, x2, lengthscale))
  return variance * jnp.exp(-r)


def _matern32(x1, x2, lengthscale, variance):
  r = math.sqrt(3.0) * _safe_sqrt(squared_distance(x1, x2, lengthscale))
  return variance * (1.0 + r) * jnp.exp(-r)


def _matern52(x1, x2, lengthscale, variance):
  r2 = squared_distance(x1, x2, lengthscale)
  s = math.sqrt(5.0) * _safe_sqrt(r2)
  return variance * (1.0 + s + (5.0 / 3.0) * r2) * jnp.exp(-s)


def _checked(impl, name):
  def kernel(x1: Array, x2: Array, lengthscale: Any = 1.0,
             variance: Any = 1.0) -> Array:
    validate_inputs(x1, x2, name)
    _validate_hyper(lengthscale, variance, int(np.shape(x1)[1]), name)
    return impl(jnp.asarray(x1), jnp.asarray(x2), lengthscale, variance)
  kernel.__name__ = name
  return kernel


rbf = _checked(_rbf, "rbf")
rbf.__doc__ = """RBF kernel ``variance * exp(-r^2 / 2)``: ``[N, D], [M, D] -> [N, M]``.

Raises ValueError on mismatched feature dims, NaN/inf inputs, non-positive
lengthscale/variance (value checks only for concrete, non-traced values).
"""
matern12 = _checked(_matern12, "matern12")
matern12.__doc__ = "Matern nu=1/2 kernel ``variance * exp(-r)``: ``[N, M]``."
matern32 = _checked(_matern32, "matern32")
matern32.__doc__ = ("Matern nu=3/2 kernel ``variance (1 + sqrt(3) r) "
                    "exp(-sqrt(3) r)``: ``[N, M]``.")
matern52 = _checked(_matern52, "matern52")
matern52.__doc__ = ("Matern nu=5/2 kernel ``variance (1 + s + s^2 / 3) "
                    "exp(-s)``, ``s = sqrt(5) r``: ``[N, M]``.")


KERNELS: Mapping[str, Callable[..., Array]] = {
    "rbf": rbf,
    "matern12": matern12,
    "matern32": matern32,
    "matern52": matern52,
}


def get_kernel(name: str) -> Callable[..., Array]:
  """Looks a kernel up by name; raises ValueError naming the known kernels."""
  if name not in KERNELS:
    raise ValueError(f"unknown kernel {name!r}; known: {sorted(KERNELS)}")
  return KERNELS[name]


def make_kernel_fn(name: str) -> KernelFn:
  """Returns ``kernel_fn(params, x1, x2) -> [N, M]`` for a named kernel.

  ``params`` is a dict ``{"lengthscale": scalar or [D], "variance": scalar}``
  of positive values (the form used by :func:`jaxbdl.gaussian_processes.gp.optimise_hyperparameters`).
  Shapes and concrete values are checked on every call made outside jit.
  """
  kernel = get_kernel(name)

  def kernel_fn(params: Mapping[str, Any], x1: Array, x2: Array) -> Array:
    return kernel(x1, x2, params["lengthscale"], params["variance"])

  kernel_fn.__name__ = f"{name}_kernel_fn"
  return kernel_fn
