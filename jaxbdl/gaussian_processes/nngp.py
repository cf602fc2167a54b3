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

The closed-form expectations E[phi(u) phi(v)] per activation (ReLU, erf,
identity) are :mod:`jaxbdl.gaussian_processes.dual_activations`.

Neural tangent kernel (NTK parameterisation: every weight is
``sqrt(sigma_w2 / fan_in) * omega`` and every bias ``sqrt(sigma_b2) * beta`` with
trainable ``omega, beta ~ N(0, 1)``; :class:`NTKMLP`). With Kdot^l the
derivative expectation E[phi'(u) phi'(v)] under the same Gaussian,

    Theta^0     = K^0
    Theta^{l+1} = K^{l+1} + sigma_w2 * Kdot^l(x, x') * Theta^l

(Jacot et al. 2018, Theorem 1; Arora et al. 2019, Eq. 10-11), with
relu: Kdot = (pi - theta) / (2 pi); erf: (4 / pi) / sqrt((1 + 2 K11)(1 + 2 K22)
- 4 K12^2); identity: 1. :func:`ntk_kernel` returns ``Theta^depth``.
The empirical kernels of finite networks (:func:`sample_empirical_kernels`,
:func:`empirical_ntk`, :class:`RandomMLP`, :class:`NTKMLP`) are
:mod:`jaxbdl.gaussian_processes.empirical_kernels` (re-exported here).
:func:`ntk_predictive` is the
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

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.gaussian_processes import kernels as kernels_lib
from jaxbdl.gaussian_processes.dual_activations import ACTIVATIONS
from jaxbdl.gaussian_processes.dual_activations import EXPECTATIONS
from jaxbdl.gaussian_processes.dual_activations import NTK_LAYERS
from jaxbdl.gaussian_processes.dual_activations import validate_structure
from jaxbdl.gaussian_processes.dual_activations import validate_variances
# Re-exported: the kernels of finite networks.
from jaxbdl.gaussian_processes.empirical_kernels import NTKMLP
from jaxbdl.gaussian_processes.empirical_kernels import RandomMLP
from jaxbdl.gaussian_processes.empirical_kernels import empirical_kernel
from jaxbdl.gaussian_processes.empirical_kernels import empirical_ntk
from jaxbdl.gaussian_processes.empirical_kernels import (
    sample_empirical_kernels)

Array = jax.Array

__all__ = [
    "ACTIVATIONS", "nngp_kernel", "nngp_kernel_diag", "make_kernel_fn",
    "make_kernel_diag_fn", "RandomMLP", "empirical_kernel",
    "sample_empirical_kernels", "ntk_kernel", "make_ntk_kernel_fn", "NTKMLP",
    "empirical_ntk", "ntk_predictive", "linearised_prediction",
]


# ----------------------------------------------------------------------------
# Analytic kernels.
# ----------------------------------------------------------------------------


def _nngp_kernel(x1: Array, x2: Array, depth: int, sigma_w2: Any,
                 sigma_b2: Any, activation: str) -> Array:
  expectation, expectation_diag = EXPECTATIONS[activation]
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
  _, expectation_diag = EXPECTATIONS[activation]
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
  validate_structure(depth, activation)
  validate_variances(sigma_w2, sigma_b2)
  return _nngp_kernel(jnp.asarray(x1), jnp.asarray(x2), int(depth), sigma_w2,
                      sigma_b2, activation)


def nngp_kernel_diag(x: Array, depth: int, sigma_w2: Any = 2.0,
                     sigma_b2: Any = 0.0, activation: str = "relu") -> Array:
  """Diagonal ``K^depth(x_i, x_i)``, ``[N]``, in O(N D) (for predictive variances).

  Same conventions and errors as :func:`nngp_kernel`; equals
  ``jnp.diag(nngp_kernel(x, x, ...))``.
  """
  kernels_lib.validate_inputs(x, x, "nngp_kernel_diag")
  validate_structure(depth, activation)
  validate_variances(sigma_w2, sigma_b2)
  return _nngp_kernel_diag(jnp.asarray(x), int(depth), sigma_w2, sigma_b2,
                           activation)


def make_kernel_fn(depth: int, activation: str = "relu"
                   ) -> Callable[[Mapping[str, Any], Array, Array], Array]:
  """Returns ``kernel_fn(params, x1, x2) -> [N, M]`` for GP code.

  ``params = {"sigma_w2": scalar, "sigma_b2": scalar}`` (both >= 0), the form
  used by :func:`jaxbdl.gaussian_processes.gp.optimise_hyperparameters`.
  """
  return _params_kernel_fn(nngp_kernel, "nngp", depth, activation)


def _params_kernel_fn(kernel, name: str, depth: int, activation: str):
  """``kernel_fn(params, x1, x2)`` calling ``kernel(x1, x2, depth, sigma_w2,
  sigma_b2, activation)`` with the variances read from ``params``."""
  validate_structure(depth, activation)

  def kernel_fn(params: Mapping[str, Any], x1: Array, x2: Array) -> Array:
    return kernel(x1, x2, depth, params["sigma_w2"], params["sigma_b2"],
                  activation)

  kernel_fn.__name__ = f"{name}_{activation}_depth{depth}_kernel_fn"
  return kernel_fn


def make_kernel_diag_fn(depth: int, activation: str = "relu"
                        ) -> Callable[[Mapping[str, Any], Array], Array]:
  """Returns ``diag_fn(params, x) -> [N]``, the diagonal of :func:`make_kernel_fn`."""
  validate_structure(depth, activation)

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
  _, expectation_diag = EXPECTATIONS[activation]
  layer = NTK_LAYERS[activation]
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
  validate_structure(depth, activation)
  validate_variances(sigma_w2, sigma_b2)
  return _ntk_kernel(jnp.asarray(x1), None if same else jnp.asarray(x2),
                     int(depth), sigma_w2, sigma_b2, activation)[1]


def make_ntk_kernel_fn(depth: int, activation: str = "relu"
                       ) -> Callable[[Mapping[str, Any], Array, Array], Array]:
  """Returns ``kernel_fn(params, x1, x2) -> [N, M]`` (NTK) for GP code."""
  return _params_kernel_fn(ntk_kernel, "ntk", depth, activation)


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
  validate_structure(depth, activation)
  validate_variances(sigma_w2, sigma_b2)
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
