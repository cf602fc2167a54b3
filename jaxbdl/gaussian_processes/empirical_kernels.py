"""Kernels of finite networks: Monte Carlo NNGP and the empirical NTK.

:func:`sample_empirical_kernels` averages ``phi(z) phi(z')`` over random
initialisations of :class:`RandomMLP` (NNGP parameterisation), a Monte Carlo
oracle for :func:`jaxbdl.gaussian_processes.nngp.nngp_kernel`;
:func:`empirical_ntk` contracts parameter Jacobians of any ``apply_fn``
(``J(x1) J(x2)^T``, chunked over rows) and converges to the analytic
:func:`jaxbdl.gaussian_processes.nngp.ntk_kernel` of :class:`NTKMLP` (NTK
parameterisation) as the width grows (fluctuations O(width^-1/2)).

References:
  Lee, Bahri, Novak, Schoenholz, Pennington & Sohl-Dickstein (2018), "Deep
    Neural Networks as Gaussian Processes", ICLR.
  Jacot, Gabriel & Hongler (2018), "Neural Tangent Kernel: Convergence and
    Generalization in Neural Networks", NeurIPS, Theorem 1.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxbdl.gaussian_processes import dual_activations
from jaxbdl.gaussian_processes import kernels as kernels_lib

Array = jax.Array

__all__ = ["RandomMLP", "empirical_kernel", "sample_empirical_kernels",
           "NTKMLP", "empirical_ntk"]

# ----------------------------------------------------------------------------
# Finite random networks (Monte Carlo oracle for the analytic kernel).
# ----------------------------------------------------------------------------


class _FullyConnected(nn.Module):
  """The architecture of :class:`RandomMLP` and :class:`NTKMLP` (their
  attributes); they differ in the parameterisation only."""
  depth: int
  width: int
  sigma_w2: float = 2.0
  sigma_b2: float = 0.0
  activation: str = "relu"
  out_features: int = 1


class RandomMLP(_FullyConnected):
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
    phi = dual_activations.ACTIVATION_FNS[self.activation]
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
  dual_activations.validate_structure(depth, activation)
  dual_activations.validate_variances(sigma_w2, sigma_b2)
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
# NTK parameterisation and the empirical NTK.
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


class NTKMLP(_FullyConnected):
  """Fully-connected net in NTK parameterisation (trainable omega, beta ~ N(0, 1)).

  Same architecture and attributes as :class:`RandomMLP`; at initialisation
  its outputs have the same distribution, and its empirical NTK
  (:func:`empirical_ntk` w.r.t. all parameters) converges to
  :func:`ntk_kernel` as ``width -> infinity``. Outputs ``[N, out_features]``.
  """

  @nn.compact
  def __call__(self, x: Array) -> Array:
    phi = dual_activations.ACTIVATION_FNS[self.activation]
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


