"""Neural network Gaussian process (NNGP) kernels of deep fully-connected nets.

A fully-connected net with ``depth`` hidden layers of width n, activation phi,
weights ``W^l_ij ~ N(0, sigma_w2 / fan_in)`` and biases ``b^l_i ~ N(0, sigma_b2)``
is, as n -> infinity, a Gaussian process in its pre-activations (Neal 1996;
Lee et al. 2018). The covariance of the layer-l pre-activations z^l follows

    K^0(x, x')     = sigma_b2 + sigma_w2 * x.x' / D                (inputs [D])
    K^{l+1}(x, x') = sigma_b2 + sigma_w2 * E_{(u, v) ~ N(0, [[K^l(x, x), K^l(x, x')],
                                                        [K^l(x, x'), K^l(x', x')]])}
                                            [phi(u) phi(v)]

(Lee et al. 2018, Eqs. 4-5). ``K^0`` is the covariance of the first
hidden layer's pre-activations; a net with ``depth`` hidden layers followed by
a linear readout has OUTPUT covariance ``K^depth``, which is what
:func:`nngp_kernel` returns (``depth = 0`` is Bayesian linear regression).

Closed-form expectations E[phi(u) phi(v)] with c = K12 / sqrt(K11 K22) = cos(theta):

- ``"relu"`` (arc-cosine kernel of degree 1, Cho & Saul 2009, Eq. 6):
  sqrt(K11 K22) / (2 pi) * (sin theta + (pi - theta) cos theta).
- ``"erf"`` (Williams 1997, Eq. 11):
  (2 / pi) arcsin(2 K12 / sqrt((1 + 2 K11) (1 + 2 K22))).
- ``"identity"``: K12.

Numerics: for ReLU, J(c) = sqrt(1 - c^2) + (pi - arccos c) c has the finite
derivative dJ/dc = pi - arccos(c) everywhere on [-1, 1], but autodiff of the
formula produces inf - inf = NaN at c = +-1 (the diagonal, theta = 0). J is
therefore a ``jax.custom_jvp`` with that derivative and c is clipped to
[-1, 1], so gradients w.r.t. ``sigma_w2``/``sigma_b2`` are finite everywhere.

Neural tangent kernel (NTK parameterisation: every weight is
``sqrt(sigma_w2 / fan_in) * omega`` and every bias ``sqrt(sigma_b2) * beta`` with
trainable ``omega, beta ~ N(0, 1)``; :class:`NTKMLP`). With Kdot^l the
derivative expectation E[phi'(u) phi'(v)] under the same Gaussian,

    Theta^0     = K^0
    Theta^{l+1} = K^{l+1} + sigma_w2 * Kdot^l(x, x') * Theta^l

(Jacot et al. 2018, Theorem 1; Arora et al. 2019, Eq. 10-11), with
relu: Kdot = (pi - theta) / (2 pi); erf: (4 / pi) / sqrt((1 + 2 K11)(1 + 2 K22)
- 4 K12^2); identity: 1. :func:`ntk_kernel` returns ``Theta^depth``.
:func:`empirical_ntk` contracts parameter Jacobians of any ``apply_fn``
(``J(x1) J(x2)^T``, chunked over rows) and converges to the analytic NTK as the
width grows (fluctuations O(width^-1/2)). :func:`ntk_predictive` is the
distribution of an infinitely wide net trained by gradient flow on
``1/2 sum_i (f(x_i) - y_i)^2`` for time t (Lee et al. 2019, Eq. 16):
with ``A_t = Theta^{-1} (I - exp(-Theta t))``,

    mean(x*)  = Theta(x*, X) A_t y
    cov(x*)   = K(x*, x*) + Theta(x*, X) A_t K A_t Theta(X, x*)
                - (Theta(x*, X) A_t K(X, x*) + transpose).

References:
  Lee, Bahri, Novak, Schoenholz, Pennington & Sohl-Dickstein (2018), "Deep
    Neural Networks as Gaussian Processes", ICLR.
  Jacot, Gabriel & Hongler (2018), "Neural Tangent Kernel: Convergence and
    Generalization in Neural Networks", NeurIPS, Theorem 1.
  Arora, Du, Hu, Li, Salakhutdinov & Wang (2019), "On Exact Computation with
    an Infinitely Wide Neural Net", NeurIPS, Eqs. (10)-(11).
  Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington (2019),
    "Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient
    Descent", NeurIPS, Eqs. (9)-(10) and (16).
  Cho & Saul (2009), "Kernel Methods for Deep Learning", NeurIPS.
  Williams (1997), "Computing with Infinite Networks", NeurIPS.
  Neal (1996), "Bayesian Learning for Neural Networks", Ch. 2.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.gaussian_processes import kernels as kernels_lib

Array = jax.Array

__all__ = [
    "ACTIVATIONS", "nngp_kernel", "nngp_kernel_diag", "make_kernel_fn",
    "make_kernel_diag_fn", "RandomMLP", "empirical_kernel",
    "sample_empirical_kernels", "ntk_kernel", "make_ntk_kernel_fn", "NTKMLP",
    "empirical_ntk", "ntk_predictive", "linearised_prediction",
]

ACTIVATIONS = ("relu", "erf", "identity")


# ----------------------------------------------------------------------------
# E[phi(u) phi(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]]).
# ----------------------------------------------------------------------------


def _arccos_parts(c: Array) -> tuple[Array, Array]:
  """(sin theta, theta) for theta = arccos(c), c in [-1, 1], via one atan2."""
  sin = jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0))
  return sin, jnp.arctan2(sin, c)


@jax.custom_jvp
def _arccos_j1(c: Array) -> Array:
  """J(c) = sin(theta) + (pi - theta) cos(theta), theta = arccos(c), c in [-1, 1]."""
  sin, theta = _arccos_parts(c)
  return sin + (jnp.pi - theta) * c


@_arccos_j1.defjvp
def _arccos_j1_jvp(primals, tangents):
  # dJ/dc = pi - theta: finite on [-1, 1] (autodiff of J gives inf - inf).
  (c,), (dc,) = primals, tangents
  sin, theta = _arccos_parts(c)
  return sin + (jnp.pi - theta) * c, (jnp.pi - theta) * dc


def _relu_expectation(k11: Array, k22: Array, k12: Array) -> Array:
  """Arc-cosine expectation; k11 [N, 1], k22 [1, M], k12 [N, M] -> [N, M]."""
  prod = k11 * k22
  positive = prod > 0
  norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, prod, 1.0)), 0.0)
  safe_norm = jnp.where(positive, norm, 1.0)
  cos = jnp.clip(jnp.where(positive, k12 / safe_norm, 1.0), -1.0, 1.0)
  return norm / (2.0 * jnp.pi) * _arccos_j1(cos)


def _relu_expectation_diag(k11: Array) -> Array:
  return 0.5 * k11


def _arcsin(a: Array) -> Array:
  """arcsin for |a| < 1 as one atan2 (compiles much smaller than jnp.arcsin on CPU)."""
  return jnp.arctan2(a, jnp.sqrt(jnp.maximum(1.0 - a * a, 0.0)))


def _erf_expectation(k11: Array, k22: Array, k12: Array) -> Array:
  arg = 2.0 * k12 / jnp.sqrt((1.0 + 2.0 * k11) * (1.0 + 2.0 * k22))
  return (2.0 / jnp.pi) * _arcsin(jnp.clip(arg, -1.0, 1.0))


def _erf_expectation_diag(k11: Array) -> Array:
  return (2.0 / jnp.pi) * _arcsin(2.0 * k11 / (1.0 + 2.0 * k11))


def _identity_expectation(k11: Array, k22: Array, k12: Array) -> Array:
  del k11, k22
  return k12


def _identity_expectation_diag(k11: Array) -> Array:
  return k11


def _relu_derivative_expectation(k11, k22, k12):
  """E[step(u) step(v)] = (pi - theta) / (2 pi), [N, M]."""
  prod = k11 * k22
  positive = prod > 0
  safe_norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, prod, 1.0)), 1.0)
  cos = jnp.clip(jnp.where(positive, k12 / safe_norm, 1.0), -1.0, 1.0)
  _, theta = _arccos_parts(cos)
  return (jnp.pi - theta) / (2.0 * jnp.pi)


def _erf_derivative_expectation(k11, k22, k12):
  """E[erf'(u) erf'(v)] = (4 / pi) / sqrt((1 + 2 K11)(1 + 2 K22) - 4 K12^2)."""
  det = (1.0 + 2.0 * k11) * (1.0 + 2.0 * k22) - 4.0 * k12 * k12
  return (4.0 / jnp.pi) / jnp.sqrt(jnp.maximum(det, 1e-30))


def _identity_derivative_expectation(k11, k22, k12):
  return jnp.ones_like(k12)


def _relu_ntk_layer(k11, k22, k12, theta, sigma_w2, sigma_b2):
  """Fused ReLU layer: one arccos for both E[phi phi] and E[phi' phi']."""
  prod = k11 * k22
  positive = prod > 0
  norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, prod, 1.0)), 0.0)
  cos = jnp.clip(jnp.where(positive, k12 / jnp.where(positive, norm, 1.0),
                           1.0), -1.0, 1.0)
  sin, angle = _arccos_parts(cos)
  rest = jnp.pi - angle
  scale = sigma_w2 / (2.0 * jnp.pi)
  k_next = sigma_b2 + scale * norm * (sin + rest * cos)
  return k_next, k_next + scale * rest * theta


def _generic_ntk_layer(activation):
  expectation, _ = _EXPECTATIONS[activation]
  derivative = _DERIVATIVE_EXPECTATIONS[activation]

  def layer(k11, k22, k12, theta, sigma_w2, sigma_b2):
    k_next = sigma_b2 + sigma_w2 * expectation(k11, k22, k12)
    return k_next, k_next + sigma_w2 * derivative(k11, k22, k12) * theta

  return layer


_DERIVATIVE_EXPECTATIONS: Mapping[str, Callable[..., Array]] = {
    "relu": _relu_derivative_expectation,
    "erf": _erf_derivative_expectation,
    "identity": _identity_derivative_expectation,
}

_EXPECTATIONS: Mapping[str, tuple[Callable[..., Array], Callable[..., Array]]] = {
    "relu": (_relu_expectation, _relu_expectation_diag),
    "erf": (_erf_expectation, _erf_expectation_diag),
    "identity": (_identity_expectation, _identity_expectation_diag),
}

# One NTK layer (K, Theta) -> (K', Theta') per activation (fused for ReLU).
_NTK_LAYERS: Mapping[str, Callable[..., tuple[Array, Array]]] = {
    "relu": _relu_ntk_layer,
    "erf": _generic_ntk_layer("erf"),
    "identity": _generic_ntk_layer("identity"),
}

_ACTIVATION_FNS: Mapping[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "erf": jax.scipy.special.erf,
    "identity": lambda h: h,
}


# ----------------------------------------------------------------------------
# Validation (at the boundary; value checks only for concrete arguments).
# ----------------------------------------------------------------------------


def _validate_structure(depth: Any, activation: str) -> None:
  if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)):
    raise ValueError(f"nngp: depth must be a Python int, got {depth!r}")
  if depth < 0:
    raise ValueError(f"nngp: depth (number of hidden layers) must be >= 0, "
                     f"got {depth}")
  if activation not in _EXPECTATIONS:
    raise ValueError(f"nngp: unknown activation {activation!r}; known: "
                     f"{list(ACTIVATIONS)}")


def _validate_variances(sigma_w2: Any, sigma_b2: Any) -> None:
  for name, value in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
    if np.ndim(value) != 0:
      raise ValueError(f"nngp: {name} must be a scalar, got shape "
                       f"{np.shape(value)}")
    if isinstance(value, jax.core.Tracer):
      continue
    v = float(value)
    if not math.isfinite(v):
      raise ValueError(f"nngp: {name} must be finite, got {v}")
    if v < 0:
      raise ValueError(f"nngp: {name} is a variance and must be >= 0, got {v}")


# ----------------------------------------------------------------------------
# Analytic kernels.
# ----------------------------------------------------------------------------


def _nngp_kernel(x1: Array, x2: Array, depth: int, sigma_w2: Any,
                 sigma_b2: Any, activation: str) -> Array:
  expectation, expectation_diag = _EXPECTATIONS[activation]
  dim = x1.shape[-1]
  k12 = sigma_b2 + sigma_w2 * (x1 @ x2.T) / dim                   # [N, M]
  k11 = sigma_b2 + sigma_w2 * jnp.sum(x1 * x1, axis=-1) / dim     # [N]
  k22 = sigma_b2 + sigma_w2 * jnp.sum(x2 * x2, axis=-1) / dim     # [M]
  for _ in range(depth):
    k12 = sigma_b2 + sigma_w2 * expectation(k11[:, None], k22[None, :], k12)
    k11 = sigma_b2 + sigma_w2 * expectation_diag(k11)
    k22 = sigma_b2 + sigma_w2 * expectation_diag(k22)
  return k12


def _nngp_kernel_diag(x: Array, depth: int, sigma_w2: Any, sigma_b2: Any,
                      activation: str) -> Array:
  _, expectation_diag = _EXPECTATIONS[activation]
  k = sigma_b2 + sigma_w2 * jnp.sum(x * x, axis=-1) / x.shape[-1]
  for _ in range(depth):
    k = sigma_b2 + sigma_w2 * expectation_diag(k)
  return k


def nngp_kernel(x1: Array, x2: Array, depth: int, sigma_w2: Any = 2.0,
                sigma_b2: Any = 0.0, activation: str = "relu") -> Array:
  """NNGP kernel of the OUTPUT of a deep fully-connected net, ``[N, M]``.

  Returns ``K^depth(x1_i, x2_j)``: the prior covariance of the output
  pre-activation (a linear readout) of an infinitely wide net with ``depth``
  hidden layers, activation ``activation``, weight variance
  ``sigma_w2 / fan_in`` and bias variance ``sigma_b2`` (Lee et al. 2018,
  Eq. 4). ``depth = 0`` gives the linear kernel ``sigma_b2 + sigma_w2 x.x'/D``.

  Args:
    x1: inputs ``[N, D]``.
    x2: inputs ``[M, D]``.
    depth: number of hidden layers, a Python int >= 0.
    sigma_w2: weight variance (times fan_in), scalar >= 0; may be traced.
    sigma_b2: bias variance, scalar >= 0; may be traced.
    activation: one of ``ACTIVATIONS``.

  Returns:
    The kernel matrix ``[N, M]`` (dtype of the inputs).

  Raises:
    ValueError: on non-2-D inputs, feature-dimension mismatch, NaN/inf
      inputs, depth < 0, unknown activation, or negative/non-finite variances.
  """
  kernels_lib.validate_inputs(x1, x2, "nngp_kernel")
  _validate_structure(depth, activation)
  _validate_variances(sigma_w2, sigma_b2)
  return _nngp_kernel(jnp.asarray(x1), jnp.asarray(x2), int(depth), sigma_w2,
                      sigma_b2, activation)


def nngp_kernel_diag(x: Array, depth: int, sigma_w2: Any = 2.0,
                     sigma_b2: Any = 0.0, activation: str = "relu") -> Array:
  """Diagonal ``K^depth(x_i, x_i)``, ``[N]``, in O(N D) (for predictive variances).

  Same conventions and errors as :func:`nngp_kernel`; equals
  ``jnp.diag(nngp_kernel(x, x, ...))``.
  """
  kernels_lib.validate_inputs(x, x, "nngp_kernel_diag")
  _validate_structure(depth, activation)
  _validate_variances(sigma_w2, sigma_b2)
  return _nngp_kernel_diag(jnp.asarray(x), int(depth), sigma_w2, sigma_b2,
                           activation)


def make_kernel_fn(depth: int, activation: str = "relu"
                   ) -> Callable[[Mapping[str, Any], Array, Array], Array]:
  """Returns ``kernel_fn(params, x1, x2) -> [N, M]`` for GP code.

  ``params = {"sigma_w2": scalar, "sigma_b2": scalar}`` (both >= 0), the form
  used by :func:`jaxbdl.gaussian_processes.gp.optimise_hyperparameters`.
  """
  _validate_structure(depth, activation)

  def kernel_fn(params: Mapping[str, Any], x1: Array, x2: Array) -> Array:
    return nngp_kernel(x1, x2, depth, params["sigma_w2"], params["sigma_b2"],
                       activation)

  kernel_fn.__name__ = f"nngp_{activation}_depth{depth}_kernel_fn"
  return kernel_fn


def make_kernel_diag_fn(depth: int, activation: str = "relu"
                        ) -> Callable[[Mapping[str, Any], Array], Array]:
  """Returns ``diag_fn(params, x) -> [N]``, the diagonal of :func:`make_kernel_fn`."""
  _validate_structure(depth, activation)

  def diag_fn(params: Mapping[str, Any], x: Array) -> Array:
    return nngp_kernel_diag(x, depth, params["sigma_w2"], params["sigma_b2"],
                            activation)

  return diag_fn


def _ntk_kernel(x1, x2, depth, sigma_w2, sigma_b2, activation,
                ) -> tuple[Array, Array]:
  """(NNGP K^depth, NTK Theta^depth), both [N, M]; ``x2 is None``: x2 = x1.

  For the self-kernel the variances are read off the matrix diagonal, so the
  diagonal cosine is exactly 1 (sqrt(k^2) = k in IEEE arithmetic) and the
  ReLU derivative term (pi - theta) / (2 pi) has no sqrt(eps) error from
  arccos near 1.
  """
  _, expectation_diag = _EXPECTATIONS[activation]
  layer = _NTK_LAYERS[activation]
  same = x2 is None
  x2 = x1 if same else x2
  dim = x1.shape[-1]
  k12 = sigma_b2 + sigma_w2 * (x1 @ x2.T) / dim                   # [N, M]
  if same:
    k11 = k22 = jnp.diagonal(k12)
  else:
    k11 = sigma_b2 + sigma_w2 * jnp.sum(x1 * x1, axis=-1) / dim   # [N]
    k22 = sigma_b2 + sigma_w2 * jnp.sum(x2 * x2, axis=-1) / dim   # [M]
  theta = k12
  for _ in range(depth):
    k12, theta = layer(k11[:, None], k22[None, :], k12, theta, sigma_w2,
                       sigma_b2)
    if same:
      k11 = k22 = jnp.diagonal(k12)
    else:
      k11 = sigma_b2 + sigma_w2 * expectation_diag(k11)
      k22 = sigma_b2 + sigma_w2 * expectation_diag(k22)
  return k12, theta


def ntk_kernel(x1: Array, x2: Array | None, depth: int, sigma_w2: Any = 2.0,
               sigma_b2: Any = 0.0, activation: str = "relu") -> Array:
  """Neural tangent kernel of a deep fully-connected net, ``[N, M]``.

  ``x2 = None`` (or the same array object as ``x1``) computes the self-kernel
  ``[N, N]`` with an exact unit diagonal cosine (as neural-tangents'
  ``kernel_fn(x, None)``).
  Same conventions, arguments and errors as :func:`nngp_kernel` (``depth``
  hidden layers and a linear readout, NTK parameterisation, see
  :class:`NTKMLP`); returns ``Theta^depth(x1_i, x2_j)`` (Jacot et al. 2018,
  Theorem 1; Arora et al. 2019, Eqs. 10-11). ``depth = 0`` gives the linear
  kernel, equal to the NNGP kernel.
  """
  same = x2 is None or x2 is x1
  kernels_lib.validate_inputs(x1, x1 if same else x2, "ntk_kernel")
  _validate_structure(depth, activation)
  _validate_variances(sigma_w2, sigma_b2)
  return _ntk_kernel(jnp.asarray(x1), None if same else jnp.asarray(x2),
                     int(depth), sigma_w2, sigma_b2, activation)[1]


def make_ntk_kernel_fn(depth: int, activation: str = "relu"
                       ) -> Callable[[Mapping[str, Any], Array, Array], Array]:
  """Returns ``kernel_fn(params, x1, x2) -> [N, M]`` (NTK) for GP code."""
  _validate_structure(depth, activation)

  def kernel_fn(params: Mapping[str, Any], x1: Array, x2: Array) -> Array:
    return ntk_kernel(x1, x2, depth, params["sigma_w2"], params["sigma_b2"],
                      activation)

  kernel_fn.__name__ = f"ntk_{activation}_depth{depth}_kernel_fn"
  return kernel_fn


# ----------------------------------------------------------------------------
# Finite random networks (Monte Carlo oracle for the analytic kernel).
# ----------------------------------------------------------------------------


class RandomMLP(nn.Module):
  """Fully-connected net in NNGP parameterisation, for sampling at initialisation.

  ``depth`` hidden layers of ``width`` units, then a linear readout of
  ``out_features``. Every Dense layer has weights ~ N(0, sigma_w2 / fan_in)
  (``variance_scaling(sigma_w2, "fan_in", "normal")``, untruncated) and biases
  ~ N(0, sigma_b2), so at any width the first layer's pre-activations have
  covariance ``K^0`` and, as width -> infinity, the outputs have covariance
  ``nngp_kernel(x, x', depth, sigma_w2, sigma_b2, activation)``.

  Attributes:
    depth: number of hidden layers (>= 0).
    width: hidden units per layer.
    sigma_w2: weight variance times fan_in.
    sigma_b2: bias variance.
    activation: one of ``ACTIVATIONS``.
    out_features: readout units (independent GP samples given the features).
  """
  depth: int
  width: int
  sigma_w2: float = 2.0
  sigma_b2: float = 0.0
  activation: str = "relu"
  out_features: int = 1

  def setup(self):
    kernel_init = nn.initializers.variance_scaling(self.sigma_w2, "fan_in",
                                                   "normal")
    bias_init = nn.initializers.normal(math.sqrt(self.sigma_b2))
    self.hidden = [nn.Dense(self.width, kernel_init=kernel_init,
                            bias_init=bias_init) for _ in range(self.depth)]
    self.readout = nn.Dense(self.out_features, kernel_init=kernel_init,
                            bias_init=bias_init)

  def features(self, x: Array) -> Array:
    """Post-activations of the last hidden layer (the readout's input), ``[N, width]``.

    For ``depth = 0`` returns ``x`` ``[N, D]``.
    """
    phi = _ACTIVATION_FNS[self.activation]
    h = x
    for layer in self.hidden:
      h = phi(layer(h))
    return h

  def __call__(self, x: Array) -> Array:
    """Outputs ``[N, out_features]``."""
    return self.readout(self.features(x))


def empirical_kernel(features1: Array, features2: Array, sigma_w2: Any,
                     sigma_b2: Any) -> Array:
  """Readout covariance given the last hidden layer, ``[N, M]``.

  ``E[f(x) f(x') | features] = sigma_b2 + sigma_w2 * phi(x).phi(x') / n`` for
  the linear readout ``f = w.phi + b`` with ``w ~ N(0, sigma_w2 / n)``,
  ``b ~ N(0, sigma_b2)``, ``features1 [N, n]``, ``features2 [M, n]``. This is
  the empirical NNGP kernel of one finite network; averaging it over
  initialisations estimates ``E_init[f(x) f(x')]`` with lower variance than
  products of sampled outputs (the readout is integrated out exactly).
  """
  n = features1.shape[-1]
  return sigma_b2 + sigma_w2 * (features1 @ features2.T) / n


@functools.partial(jax.jit, static_argnames=(
    "num_inits", "depth", "width", "sigma_w2", "sigma_b2", "activation",
    "batch_size"))
def _sample_empirical_kernels(key, x, num_inits, depth, width, sigma_w2,
                              sigma_b2, activation, batch_size):
  model = RandomMLP(depth=depth, width=width, sigma_w2=sigma_w2,
                    sigma_b2=sigma_b2, activation=activation)

  def one(k):
    variables = model.init(k, x)
    feats = model.apply(variables, x, method=RandomMLP.features)
    return empirical_kernel(feats, feats, sigma_w2, sigma_b2)

  keys = jax.random.split(key, num_inits)
  return jax.lax.map(one, keys, batch_size=batch_size)


def sample_empirical_kernels(key: Array, x: Array, *, num_inits: int,
                             depth: int, width: int, sigma_w2: float = 2.0,
                             sigma_b2: float = 0.0, activation: str = "relu",
                             batch_size: int | None = None) -> Array:
  """Empirical NNGP kernels of ``num_inits`` independent random nets, ``[S, N, N]``.

  Each slice is :func:`empirical_kernel` of one :class:`RandomMLP` drawn with
  ``jax.random.split(key, num_inits)``; inits are vmapped in chunks of
  ``batch_size`` (``jax.lax.map``) to bound memory (a chunk holds
  ``batch_size * width^2`` weights). Their mean over inits converges to
  :func:`nngp_kernel` as ``num_inits * width -> infinity`` (with an O(1/width)
  bias for depth >= 2 and a nonlinear activation).
  """
  kernels_lib.validate_inputs(x, x, "sample_empirical_kernels")
  _validate_structure(depth, activation)
  _validate_variances(sigma_w2, sigma_b2)
  if int(num_inits) < 1 or int(width) < 1:
    raise ValueError(f"sample_empirical_kernels: num_inits and width must be "
                     f">= 1, got {num_inits} and {width}")
  if batch_size is not None and int(batch_size) < 1:
    raise ValueError(f"sample_empirical_kernels: batch_size must be >= 1, got "
                     f"{batch_size}")
  return _sample_empirical_kernels(
      key, jnp.asarray(x), int(num_inits), int(depth), int(width),
      float(sigma_w2), float(sigma_b2), activation,
      None if batch_size is None else int(batch_size))


# ----------------------------------------------------------------------------
# NTK: finite networks, empirical kernel and gradient-flow predictive.
# ----------------------------------------------------------------------------


class _NTKDense(nn.Module):
  """Dense layer in NTK parameterisation: ``sqrt(sw2 / fan_in) x.omega + sqrt(sb2) beta``."""
  features: int
  sigma_w2: float
  sigma_b2: float

  @nn.compact
  def __call__(self, x: Array) -> Array:
    omega = self.param("omega", nn.initializers.normal(1.0),
                       (x.shape[-1], self.features))
    beta = self.param("beta", nn.initializers.normal(1.0), (self.features,))
    return (math.sqrt(self.sigma_w2 / x.shape[-1]) * (x @ omega)
            + math.sqrt(self.sigma_b2) * beta[None, :])


class NTKMLP(nn.Module):
  """Fully-connected net in NTK parameterisation (trainable omega, beta ~ N(0, 1)).

  Same architecture and attributes as :class:`RandomMLP`; at initialisation
  its outputs have the same distribution, and its empirical NTK
  (:func:`empirical_ntk` w.r.t. all parameters) converges to
  :func:`ntk_kernel` as ``width -> infinity``. Outputs ``[N, out_features]``.
  """
  depth: int
  width: int
  sigma_w2: float = 2.0
  sigma_b2: float = 0.0
  activation: str = "relu"
  out_features: int = 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    phi = _ACTIVATION_FNS[self.activation]
    h = x
    for _ in range(self.depth):
      h = phi(_NTKDense(self.width, self.sigma_w2, self.sigma_b2)(h))
    return _NTKDense(self.out_features, self.sigma_w2, self.sigma_b2)(h)


def empirical_ntk(apply_fn: Callable[[Any, Array], Array], params: Any,
                  x1: Array, x2: Array, chunk_size: int | None = None
                  ) -> Array:
  """Empirical NTK ``sum_p df(x1_i)/dp df(x2_j)/dp``, ``[N, M]``.

  Args:
    apply_fn: ``(params, x [B, D]) -> [B]`` or ``[B, K]`` (e.g.
      ``lambda p, x: model.apply({"params": p}, x)`` for any Flax model).
    params: the parameter pytree the derivatives are taken w.r.t.
    x1: inputs ``[N, D]``.
    x2: inputs ``[M, D]``.
    chunk_size: rows of ``x1`` whose Jacobian is formed at once (memory
      ``chunk_size * K * num_params``); default all. The Jacobian of ``x2`` is
      formed once.

  Returns:
    ``[N, M]``; for K outputs, the mean over outputs of the per-output NTK
    (the trace over the output axis divided by K).
  """
  kernels_lib.validate_inputs(x1, x2, "empirical_ntk")
  x1, x2 = jnp.asarray(x1), jnp.asarray(x2)
  n = x1.shape[0]
  chunk = n if chunk_size is None else int(chunk_size)
  if chunk < 1:
    raise ValueError(f"empirical_ntk: chunk_size must be >= 1, got {chunk_size}")

  def outputs(p, x):
    out = apply_fn(p, x)
    return out[:, None] if out.ndim == 1 else out                # [B, K]

  def jac(x):
    return jax.jacrev(outputs)(params, x)                         # [B, K, ...]

  j2 = jac(x2)
  num_out = jax.eval_shape(lambda: outputs(params, x2[:1])).shape[-1]

  def block(xc):
    j1 = jac(xc)
    terms = jax.tree.map(
        lambda a, b: jnp.einsum("nkp,mkp->nm", a.reshape(a.shape[:2] + (-1,)),
                                b.reshape(b.shape[:2] + (-1,))), j1, j2)
    return sum(jax.tree.leaves(terms)) / num_out

  pad = (-n) % chunk
  xp = jnp.concatenate([x1, jnp.zeros((pad, x1.shape[1]), x1.dtype)])
  blocks = jax.lax.map(block, xp.reshape(-1, chunk, x1.shape[1]))
  return blocks.reshape(-1, x2.shape[0])[:n]


def _flow_matrix(theta: Array, t: Any) -> Array:
  """``Theta^{-1} (I - exp(-Theta t))`` via eigh, stable as eigenvalues -> 0."""
  lam, vec = jnp.linalg.eigh(theta)
  lam = jnp.maximum(lam, 0.0)
  t = jnp.asarray(t, lam.dtype)
  small = lam * t < 1e-8
  safe = jnp.where(small, 1.0, lam)
  g = jnp.where(small, t, -jnp.expm1(-safe * t) / safe)
  g = jnp.where(jnp.isinf(t), 1.0 / safe, g)
  return (vec * g[None, :]) @ vec.T


def ntk_predictive(x_train: Array, y_train: Array, x_test: Array, t: Any,
                   depth: int, sigma_w2: Any = 2.0, sigma_b2: Any = 0.0,
                   activation: str = "relu") -> tuple[Array, Array]:
  """Infinitely wide net after gradient flow for time ``t``: (mean [M], cov [M, M]).

  Gradient flow on ``1/2 sum_i (f(x_i) - y_i)^2`` from a random
  initialisation (NTK parameterisation); a discrete run with learning rate
  ``eta`` for ``s`` steps corresponds to ``t = eta * s``. The outputs at
  ``x_test`` are Gaussian over initialisations with this mean and covariance
  (Lee et al. 2019, Eq. 16); ``t = inf`` gives the converged net.

  Args:
    x_train: ``[N, D]``; y_train: ``[N]``; x_test: ``[M, D]``.
    t: training time >= 0 (scalar; ``jnp.inf`` allowed).
    depth, sigma_w2, sigma_b2, activation: as in :func:`ntk_kernel`.
  """
  kernels_lib.validate_inputs(x_train, x_test, "ntk_predictive")
  _validate_structure(depth, activation)
  _validate_variances(sigma_w2, sigma_b2)
  if np.shape(y_train) != (np.shape(x_train)[0],):
    raise ValueError(f"ntk_predictive: y_train must be [{np.shape(x_train)[0]}]"
                     f", got shape {np.shape(y_train)}")
  if not isinstance(t, jax.core.Tracer) and not float(t) >= 0:
    raise ValueError(f"ntk_predictive: t must be >= 0, got {t}")
  x_train, x_test = jnp.asarray(x_train), jnp.asarray(x_test)
  args = (int(depth), sigma_w2, sigma_b2, activation)
  k_tt, theta_tt = _ntk_kernel(x_train, None, *args)
  k_st, theta_st = _ntk_kernel(x_test, x_train, *args)
  k_ss, _ = _ntk_kernel(x_test, None, *args)
  a = _flow_matrix(theta_tt, t)
  ta = theta_st @ a                                               # [M, N]
  mean = ta @ jnp.asarray(y_train, ta.dtype)
  cross = ta @ k_st.T
  cov = k_ss + ta @ k_tt @ ta.T - cross - cross.T
  return mean, cov


def linearised_prediction(f0_train: Array, f0_test: Array, y_train: Array,
                          theta_train: Array, theta_test_train: Array,
                          t: Any) -> Array:
  """Outputs at test points of the linearised net after gradient flow, ``[M]``.

  ``f_t(x*) = f_0(x*) + Theta(x*, X) Theta^{-1} (I - exp(-Theta t)) (y - f_0(X))``
  (Lee et al. 2019, Eqs. 9-10) for one initialisation with outputs
  ``f0_train [N]``, ``f0_test [M]`` and a kernel ``theta_train [N, N]``,
  ``theta_test_train [M, N]`` (analytic or empirical).
  """
  a = _flow_matrix(jnp.asarray(theta_train), t)
  return f0_test + theta_test_train @ (a @ (y_train - f0_train))
