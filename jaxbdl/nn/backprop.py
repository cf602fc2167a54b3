"""Backpropagation is the chain rule: a hand-written backward pass and its checks.

Two-layer network (lecture notation, one example ``x`` as a column vector)::

  a1 = W1 x + b1,   h = act(a1),   y_hat = W2 h + b2,
  loss = 0.5 * sum_n ||y_hat_n - y_n||^2.

Backward pass (errors "delta" are gradients w.r.t. pre-activations)::

  delta2 = y_hat - y                         # [N, K]
  dW2 = delta2^T h,   db2 = sum_n delta2     # [K, H], [K]
  delta1 = (delta2 W2) * act'(a1)            # [N, H]  (= W2^T delta2 per example)
  dW1 = delta1^T x,   db1 = sum_n delta1     # [H, D], [H]

Parameters are ``{"W1": [H, D], "b1": [H], "W2": [K, H], "b2": [K]}`` (rows =
outputs, as in ``W x``); batches are row-major ``x: [N, D]``, ``y: [N, K]``.

The second check is autodiff versus central finite differences on the
lecture's function ``f(x1, x2) = x1 * sqrt(log(x1 / sin(x2^2)))``.

Domain of ``f``: the log needs ``u = x1 / sin(x2^2) > 0`` and the real square
root needs ``log u >= 0``, i.e. ``u >= 1``; ``f`` is differentiable only where
``u > 1`` (at ``u = 1`` the derivative of ``sqrt`` at 0 is infinite). So the
domain of the gradient is ``x1 / sin(x2^2) > 1``: either ``0 < sin(x2^2) < x1``
or ``x1 < sin(x2^2) < 0``. Outside it JAX returns NaN (log of a negative number
or sqrt of a negative number), which :func:`check_lecture_function` reports as
``in_domain=False`` instead of a silent number.

References:
  Rumelhart, Hinton & Williams (1986), Nature 323:533 (the generalised delta rule).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.nn import networks

__all__ = ["ACTIVATIONS", "activation_derivative", "init_two_layer_params",
           "two_layer_forward", "two_layer_loss", "two_layer_backward",
           "lecture_function", "lecture_function_grad", "lecture_domain",
           "central_difference_grad", "LectureCheck", "check_lecture_function"]

Params = dict[str, jax.Array]


def _relu_grad(a):
  return (a > 0).astype(a.dtype)  # 0 at a = 0, as jax.nn.relu's derivative.


def _tanh_grad(a):
  t = jnp.tanh(a)
  return 1.0 - t * t


def _sigmoid_grad(a):
  s = jax.nn.sigmoid(a)
  return s * (1.0 - s)


def _erf_grad(a):
  return (2.0 / math.sqrt(math.pi)) * jnp.exp(-a * a)


# Hand-written derivatives act'(a) of the activations.
_DERIVATIVES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": _relu_grad,
    "tanh": _tanh_grad,
    "sigmoid": _sigmoid_grad,
    "erf": _erf_grad,
    "identity": jnp.ones_like,
    "linear": jnp.ones_like,
}
ACTIVATIONS = ("relu", "tanh", "sigmoid", "erf", "identity")


def activation_derivative(name: str) -> Callable[[jax.Array], jax.Array]:
  """Hand-written ``act'(a)`` for ``name`` in :data:`ACTIVATIONS`."""
  if name not in _DERIVATIVES:
    raise ValueError(f"no hand-written derivative for activation {name!r}; "
                     f"valid names: {list(ACTIVATIONS)}")
  return _DERIVATIVES[name]


def init_two_layer_params(key: jax.Array, in_dim: int, hidden: int,
                          out_dim: int) -> Params:
  """LeCun-normal weights and small random biases for the two-layer net."""
  k1, k2, k3, k4 = jax.random.split(key, 4)
  return {
      "W1": jax.random.normal(k1, (hidden, in_dim)) / math.sqrt(in_dim),
      "b1": 0.1 * jax.random.normal(k2, (hidden,)),
      "W2": jax.random.normal(k3, (out_dim, hidden)) / math.sqrt(hidden),
      "b2": 0.1 * jax.random.normal(k4, (out_dim,)),
  }


def _forward(params: Params, x: jax.Array, activation: str):
  a1 = x @ params["W1"].T + params["b1"][None, :]          # [N, H]
  h = networks.get_activation(activation)(a1)               # [N, H]
  y_hat = h @ params["W2"].T + params["b2"][None, :]       # [N, K]
  return a1, h, y_hat


def two_layer_forward(params: Params, x: jax.Array, activation: str) -> jax.Array:
  """``y_hat = W2 act(W1 x + b1) + b2`` for a batch ``x: [N, D]`` -> ``[N, K]``."""
  return _forward(params, x, activation)[2]


def two_layer_loss(params: Params, x: jax.Array, y: jax.Array,
                   activation: str) -> jax.Array:
  """Squared error ``0.5 * sum_n ||y_hat_n - y_n||^2`` (scalar); ``y: [N, K]``."""
  r = two_layer_forward(params, x, activation) - y
  return 0.5 * jnp.sum(r * r)


def two_layer_backward(params: Params, x: jax.Array, y: jax.Array,
                       activation: str) -> Params:
  """Hand-written gradient of :func:`two_layer_loss` (the delta rule).

  Args:
    params: ``{"W1": [H, D], "b1": [H], "W2": [K, H], "b2": [K]}``.
    x: inputs ``[N, D]``.
    y: targets ``[N, K]``.
    activation: a name in :data:`ACTIVATIONS`.

  Returns:
    Gradients with the same pytree structure and shapes as ``params``.
  """
  act_grad = activation_derivative(activation)
  if y.shape != (x.shape[0], params["W2"].shape[0]):
    raise ValueError(f"targets must be [N, K] = {(x.shape[0], params['W2'].shape[0])}, "
                     f"got {y.shape}")
  a1, h, y_hat = _forward(params, x, activation)
  delta2 = y_hat - y                                        # [N, K]
  delta1 = (delta2 @ params["W2"]) * act_grad(a1)          # [N, H]
  return {
      "W1": delta1.T @ x,                                   # [H, D]
      "b1": jnp.sum(delta1, axis=0),                        # [H]
      "W2": delta2.T @ h,                                   # [K, H]
      "b2": jnp.sum(delta2, axis=0),                        # [K]
  }


# ---------------------------------------------------------------------------
# Autodiff versus finite differences on the lecture function.


def lecture_function(x1, x2):
  """``f(x1, x2) = x1 * sqrt(log(x1 / sin(x2^2)))`` (NaN outside its domain)."""
  return x1 * jnp.sqrt(jnp.log(x1 / jnp.sin(x2 ** 2)))


def lecture_function_grad(x1, x2):
  """Analytic gradient ``[df/dx1, df/dx2]`` (third oracle for the checks).

  With ``L = log(x1 / sin(x2^2))``:
  ``df/dx1 = sqrt(L) + 1 / (2 sqrt(L))`` and
  ``df/dx2 = -x1 x2 cos(x2^2) / (sin(x2^2) sqrt(L))``.
  """
  s2 = jnp.sin(x2 ** 2)
  root = jnp.sqrt(jnp.log(x1 / s2))
  return jnp.stack([root + 0.5 / root, -x1 * x2 * jnp.cos(x2 ** 2) / (s2 * root)])


def lecture_domain(x1, x2):
  """True where the gradient of :func:`lecture_function` exists: ``x1 / sin(x2^2) > 1``."""
  return x1 / jnp.sin(x2 ** 2) > 1.0


def central_difference_grad(f: Callable, x, eps: float):
  """Central finite differences ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``.

  Args:
    f: scalar function of a vector ``[D]`` (numpy or JAX).
    x: the point ``[D]``; its dtype sets the precision.
    eps: step (the truncation error is ``O(eps^2)``, the rounding error
      ``O(machine_eps / eps)``; ``eps ~ machine_eps^(1/3)`` balances them).

  Returns:
    ``[D]`` gradient estimate (a numpy array for numpy input).
  """
  if isinstance(eps, (int, float)) and not eps > 0:
    raise ValueError(f"eps must be > 0, got {eps!r}")
  xp = jnp if isinstance(x, jax.Array) else np
  x = xp.asarray(x)
  if x.ndim != 1:
    raise ValueError(f"central_difference_grad expects a vector [D], got {x.shape}")
  eye = xp.eye(x.shape[0], dtype=x.dtype)
  return xp.stack([(f(x + eps * e) - f(x - eps * e)) / (2.0 * eps) for e in eye])


class LectureCheck(NamedTuple):
  """Result of :func:`check_lecture_function` at one point (float64 maths).

  Attributes:
    value: ``f(x1, x2)`` (NaN outside the domain).
    autodiff: ``jax.grad`` value ``[2]``.
    finite_difference: central differences ``[2]``.
    analytic: closed-form gradient ``[2]``.
    in_domain: whether ``x1 / sin(x2^2) > 1``.
    abs_error: ``max |autodiff - finite_difference|`` (NaN outside).
    rel_error: ``abs_error / max(|autodiff|, 1)`` (NaN outside).
    eps: the finite-difference step used.
  """
  value: float
  autodiff: np.ndarray
  finite_difference: np.ndarray
  analytic: np.ndarray
  in_domain: bool
  abs_error: float
  rel_error: float
  eps: float


def _lecture_f(v):
  return lecture_function(v[0], v[1])


@jax.jit
def _lecture_arrays(x, eps):
  """(value, autodiff, finite differences, analytic, in_domain) at ``x: [2]``."""
  return (_lecture_f(x), jax.grad(_lecture_f)(x),
          central_difference_grad(_lecture_f, x, eps),
          lecture_function_grad(x[0], x[1]), lecture_domain(x[0], x[1]))


def check_lecture_function(x1: float, x2: float,
                           eps: Optional[float] = None) -> LectureCheck:
  """Compares ``jax.grad`` of the lecture function with central differences.

  Runs in float64 (``jax.enable_x64``) as one jitted program; call it outside
  jit (it returns Python/numpy values). ``eps`` defaults to
  ``machine_eps^(1/3) * max(1, |x|_inf)``. A point outside the domain gives
  NaN gradients and ``in_domain=False``; it never raises.
  """
  if eps is None:
    eps = float(np.finfo(np.float64).eps ** (1 / 3) * max(1.0, abs(x1), abs(x2)))
  if not eps > 0:
    raise ValueError(f"eps must be > 0, got {eps!r}")
  with jax.enable_x64(True):
    x = jnp.asarray([x1, x2], dtype=jnp.float64)
    value, ad, fd, exact, in_domain = jax.device_get(
        _lecture_arrays(x, jnp.float64(eps)))
  in_domain = bool(in_domain)
  abs_err = float(np.max(np.abs(ad - fd)))
  rel_err = abs_err / max(float(np.max(np.abs(ad))), 1.0)
  if not in_domain:
    abs_err = rel_err = float("nan")
  return LectureCheck(value=float(value), autodiff=np.asarray(ad),
                      finite_difference=np.asarray(fd), analytic=np.asarray(exact),
                      in_domain=in_domain, abs_error=abs_err, rel_error=rel_err,
                      eps=float(eps))
