"""Bayesian dense layers (Flax Linen) with lower-variance ELBO gradient estimators.

Each layer owns a mean-field Gaussian over its kernel ``W [D, K]`` and bias
``b [K]``: parameters ``kernel_loc, kernel_raw_scale, bias_loc,
bias_raw_scale`` with standard deviations ``softplus(raw_scale)``. They differ
only in how the noise enters a minibatch ``x [B, D]`` (all draw from the rng
stream ``"sample"``):

* :class:`DenseReparam` -- one weight sample ``W = mu + sigma * eps`` shared
  by the whole minibatch (the plain reparameterisation of Blundell et al.
  2015). The pre-activations of different examples are correlated through the
  shared ``eps``.
* :class:`DenseLRT` -- the local reparameterisation trick (Kingma, Salimans &
  Welling 2015, Sec. 2.3, Eq. 6): since ``a = x W + b`` is Gaussian given
  ``x``, sample it directly,
  ``a_bk = gamma_bk + sqrt(delta_bk) zeta_bk``, ``gamma = x mu_W + mu_b``,
  ``delta = x^2 sigma_W^2 + sigma_b^2``, with independent ``zeta [B, K]``.
  Same per-example marginals as above, independent across examples, so the
  minibatch gradient variance drops (their Eq. 4-5).
* :class:`DenseFlipout` -- Flipout (Wen et al. 2018, Eq. 4): one shared
  perturbation ``Delta W = sigma_W * eps`` decorrelated per example by random
  signs ``r_b [D]``, ``s_b [K]`` in {-1, +1}:
  ``a_b = x_b mu_W + ((x_b * r_b) Delta W) * s_b + b``. Per-example marginals
  are unchanged (``Delta W`` is symmetric), cross-example covariances of the
  kernel part vanish. The bias uses one shared sample.

:class:`BayesianMLP` stacks them (``layer="lrt" | "flipout" | "reparam"``),
with submodules named ``Dense_i`` like ``networks.MLP``: the layer parameters
convert with :func:`to_var_params` to the mean-field ``{"loc",
"raw_scale"}`` format of ``jaxbdl.bayes.elbo`` over an ``MLP``-shaped tree, so
the core's ELBO, KL and priors apply unchanged (``elbo.layerwise``;
``jaxbdl.bayes.mfvi.make_lrt`` / ``make_flipout``), and the same posterior can
be evaluated by explicit weight samples on a ``networks.MLP``. The KL must be
closed form here (the weights are never sampled explicitly under LRT).

References:
  D. P. Kingma, T. Salimans, M. Welling (2015), Variational dropout and the
    local reparameterization trick, NeurIPS.
  Y. Wen, P. Vicol, J. Ba, D. Tran, R. Grosse (2018), Flipout: efficient
    pseudo-independent weight perturbations on mini-batches, ICLR.
  C. Blundell et al. (2015), Weight uncertainty in neural networks, ICML.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxbdl.gradients.distributions import standard_normal
from jaxbdl.nn import networks
from jaxbdl._checks import softplus_inverse

PyTree = Any
Array = jax.Array

__all__ = [
    "DenseReparam", "DenseLRT", "DenseFlipout", "BayesianMLP", "LAYERS",
    "to_var_params", "mean_field_params", "check_input_rank",
]

_PARAM_NAMES = ("kernel_loc", "kernel_raw_scale", "bias_loc", "bias_raw_scale")


def check_input_rank(layer, x: Array, layout: str) -> None:
  """Raises ValueError unless ``x`` has as many axes as ``layout`` names
  (e.g. ``"[B, H, W, C]"``), naming the layer and the shape."""
  if x.ndim != layout.count(",") + 1:
    raise ValueError(f"{type(layer).__name__} expects inputs {layout}, got "
                     f"shape {x.shape}")


def mean_field_params(module: nn.Module, kernel_init, kernel_shape):
  """Declares a Bayesian layer's mean-field posterior parameters.

  ``kernel_loc`` (initialised by ``kernel_init``) and ``kernel_raw_scale``
  of ``kernel_shape`` (last axis: output features ``K``), ``bias_loc`` and
  ``bias_raw_scale`` ``[K]``; raw scales start at ``module.init_scale``
  through the softplus.

  Returns:
    ``(kernel mean, kernel scale, bias mean, bias scale)``.
  """
  if not module.init_scale > 0:
    raise ValueError(f"init_scale must be > 0, got {module.init_scale!r}")
  rho = softplus_inverse(module.init_scale)
  const = lambda key, shape: jnp.full(shape, rho, jnp.float32)
  k = kernel_shape[-1]
  m_w = module.param("kernel_loc", kernel_init, kernel_shape)
  r_w = module.param("kernel_raw_scale", const, kernel_shape)
  m_b = module.param("bias_loc", nn.initializers.zeros, (k,))
  r_b = module.param("bias_raw_scale", const, (k,))
  return m_w, jax.nn.softplus(r_w), m_b, jax.nn.softplus(r_b)


class _BayesDense(nn.Module):
  """Shared parameters of the Bayesian dense layers (``[B, D] -> [B, K]``).

  Attributes:
    features: output size ``K``.
    init_scale: initial posterior standard deviation of every weight.
    kernel_init: initialiser name for the kernel MEANS
      (``networks.get_initializer``).
    rng_name: the rng stream the layer samples from.
  """
  features: int
  init_scale: float = 1e-3
  kernel_init: str = "lecun"
  rng_name: str = "sample"

  def _params(self, x: Array):
    check_input_rank(self, x, "[B, D]")
    return mean_field_params(self, networks.get_initializer(self.kernel_init),
                             (x.shape[-1], int(self.features)))


class DenseReparam(_BayesDense):
  """One weight sample per call, shared across the minibatch."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    m_w, s_w, m_b, s_b = self._params(x)
    d, k = m_w.shape
    # One random call (few threefry calls keep CPU compile times low).
    eps = standard_normal(self.make_rng(self.rng_name), (d * k + k,),
                          m_w.dtype)
    w = m_w + s_w * eps[:d * k].reshape(d, k)
    b = m_b + s_b * eps[d * k:]
    return x @ w + b[None, :]


class DenseLRT(_BayesDense):
  """Local reparameterisation: pre-activations ``N(x mu + mu_b, x^2 sigma^2 +
  sigma_b^2)`` sampled independently per example (Kingma et al. 2015, Eq. 6)."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    m_w, s_w, m_b, s_b = self._params(x)
    mean = x @ m_w + m_b[None, :]
    var = jnp.square(x) @ jnp.square(s_w) + jnp.square(s_b)[None, :]
    eps = standard_normal(self.make_rng(self.rng_name), mean.shape, mean.dtype)
    return mean + jnp.sqrt(var) * eps


class DenseFlipout(_BayesDense):
  """Flipout: shared ``Delta W`` with per-example sign flips (Wen et al. 2018,
  Eq. 4); the bias is one shared sample."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    m_w, s_w, m_b, s_b = self._params(x)
    d, k = m_w.shape
    n = x.shape[0]
    # One random call: Gaussian noise for Delta W and b, and the signs of
    # further standard normals as the Rademacher variables r [B, D], s [B, K].
    u = standard_normal(self.make_rng(self.rng_name),
                        (d * k + k + n * d + n * k,), m_w.dtype)
    delta = s_w * u[:d * k].reshape(d, k)
    b = m_b + s_b * u[d * k:d * k + k]
    o = d * k + k
    r = jnp.where(u[o:o + n * d] >= 0, 1.0, -1.0).astype(x.dtype).reshape(n, d)
    s = jnp.where(u[o + n * d:] >= 0, 1.0, -1.0).astype(x.dtype).reshape(n, k)
    return x @ m_w + ((x * r) @ delta) * s + b[None, :]


LAYERS = {"reparam": DenseReparam, "lrt": DenseLRT, "flipout": DenseFlipout}


class BayesianMLP(nn.Module):
  """MLP ``[B, D] -> [B, features[-1]]`` of Bayesian dense layers.

  Hidden layers ``Dense_i -> activation``; the output layer has no
  activation. Every layer (output included) is Bayesian.

  Attributes:
    features: hidden sizes then the output size, e.g. ``(50, 1)``.
    activation: name for ``networks.get_activation``.
    layer: "lrt", "flipout" or "reparam".
    init_scale: initial posterior standard deviation.
    kernel_init: initialiser name for the kernel means.
  """
  features: Sequence[int]
  activation: str = "relu"
  layer: str = "lrt"
  init_scale: float = 1e-3
  kernel_init: str = "lecun"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.layer not in LAYERS:
      raise ValueError(f"unknown Bayesian layer {self.layer!r}; valid: "
                       f"{sorted(LAYERS)}")
    if len(self.features) == 0:
      raise ValueError("BayesianMLP.features must be non-empty")
    cls = LAYERS[self.layer]
    act = networks.get_activation(self.activation)
    h = x
    for i, width in enumerate(self.features):
      h = cls(int(width), init_scale=self.init_scale,
              kernel_init=self.kernel_init, name=f"Dense_{i}")(h)
      if i < len(self.features) - 1:
        h = act(h)
    return h


def _is_layer(tree: Any) -> bool:
  return isinstance(tree, dict) and set(tree) == set(_PARAM_NAMES)


def to_var_params(params: PyTree) -> dict:
  """Bayesian-layer params -> ``jaxbdl.vi`` variational params.

  Every layer dict ``{kernel_loc, kernel_raw_scale, bias_loc, bias_raw_scale}``
  becomes ``{"kernel", "bias"}`` inside ``{"loc": ..., "raw_scale": ...}``;
  the resulting ``loc`` tree has the structure of a ``networks.MLP``'s params.

  Raises:
    ValueError: if ``params`` holds no Bayesian layer.
  """
  found = []

  def conv(tree, which):
    if _is_layer(tree):
      found.append(True)
      return {"kernel": tree[f"kernel_{which}"], "bias": tree[f"bias_{which}"]}
    if isinstance(tree, dict):
      return {k: conv(v, which) for k, v in tree.items()}
    raise ValueError("Bayesian-layer params hold a leaf outside a layer dict "
                     f"with keys {list(_PARAM_NAMES)}")

  out = {"loc": conv(dict(params), "loc"),
         "raw_scale": conv(dict(params), "raw_scale")}
  if not found:
    raise ValueError("no Bayesian layer parameters found (expected dicts with "
                     f"keys {list(_PARAM_NAMES)})")
  return out
