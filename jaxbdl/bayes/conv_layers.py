"""Bayesian convolution layers (Flax Linen): reparameterised, LRT, Flipout.

The convolutional counterparts of :mod:`jaxbdl.bayes.bayesian_layers`. Each layer
owns a mean-field Gaussian over its kernel ``W [kh, kw, C_in, C_out]`` (HWIO)
and bias ``b [C_out]`` with the SAME parameter names as the dense layers
(``kernel_loc, kernel_raw_scale, bias_loc, bias_raw_scale``; standard
deviations ``softplus(raw_scale)``), so ``bayesian_layers.to_var_params``,
the core's closed-form KL (``elbo.analytic_kl``) and every prior with a
``kl`` apply unchanged. Inputs are
``x [B, H, W, C_in]`` (NHWC); outputs ``[B, H', W', C_out]``; noise comes from
the rng stream ``"sample"``:

* :class:`ConvReparam` -- one weight sample ``W = mu + sigma * eps`` shared by
  the minibatch (Blundell et al. 2015).
* :class:`ConvLRT` -- the local reparameterisation trick applied to the conv
  OUTPUT (Kingma, Salimans & Welling 2015, Sec. 2.3 and Eq. 6; as used for
  convolutions by Molchanov et al. 2017): every output unit is Gaussian given
  ``x``, ``a = conv(x, mu) + mu_b + sqrt(conv(x^2, sigma^2) + sigma_b^2) *
  zeta`` with independent ``zeta [B, H', W', C_out]``. Each unit's marginal is
  exact, so the gradient of any loss that is a SUM OF PER-UNIT terms is
  unbiased; but a sampled kernel is shared by all spatial positions of an
  image, which LRT ignores: the joint over positions (e.g. of a pooled sum)
  is a different, less correlated distribution. The ELBO it optimises is
  then that of a model with independent per-position noise.
* :class:`ConvFlipout` -- Flipout (Wen et al. 2018, Sec. 3 and Eq. 4): one
  shared perturbation ``Delta W = sigma * eps`` decorrelated per example by
  random signs on the input channels ``r_b [C_in]`` and output channels
  ``s_b [C_out]``:
  ``a_b = conv(x_b, mu) + conv(x_b * r_b, Delta W) * s_b + b``. Given the
  signs, ``r_i s_j Delta W_..ij`` has the distribution of ``Delta W`` (a
  symmetric, independent perturbation), so each example's joint over ALL its
  output units equals weight sampling's: the gradient of any per-example loss
  is unbiased, and across examples the kernel noise is decorrelated. The bias
  is one shared sample.

:class:`BayesianCNN` is ``jaxbdl.nn.networks.CNN`` with every layer Bayesian:
submodules ``convs_i``, ``dense``, ``head`` (so ``to_var_params`` gives a
``networks.CNN``-shaped ``loc`` tree and the same posterior can be evaluated
by sampling weights into a plain ``CNN``).

Registry methods ``mfvi_conv_lrt`` / ``mfvi_conv_flipout``
(:func:`make_lrt`, :func:`make_flipout`): mean-field VI through the core's
one ELBO (``jaxbdl.bayes.elbo.layerwise``, closed-form KL) with the
``BayesianCNN`` built from the model's ``networks.CNN`` (same sizes and
pooling; its dropout is not used). Config fields as ``mfvi_lrt``:
``init_scale``, ``num_train_samples``, ``num_epochs``, ``batch_size``,
``num_predict_samples``, ``predict_batch_size``.

References:
  D. P. Kingma, T. Salimans, M. Welling (2015), Variational dropout and the
    local reparameterization trick, NeurIPS, Sec. 2.3, Eq. 6.
  D. Molchanov, A. Ashukha, D. Vetrov (2017), Variational dropout sparsifies
    deep neural networks, ICML (LRT for convolutional layers).
  Y. Wen, P. Vicol, J. Ba, D. Tran, R. Grosse (2018), Flipout: efficient
    pseudo-independent weight perturbations on mini-batches, ICLR, Eq. 4.
  C. Blundell et al. (2015), Weight uncertainty in neural networks, ICML.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxbdl.gradients.distributions import standard_normal
from jaxbdl.bayes import bayesian_layers
from jaxbdl.nn import networks
from jaxbdl.bayes import elbo
from jaxbdl.bayes import mfvi
from jaxbdl.bayes import posterior as post_lib

Array = jax.Array

__all__ = ["ConvReparam", "ConvLRT", "ConvFlipout", "CONV_LAYERS",
           "BayesianCNN", "bayesian_cnn_for", "make_lrt", "make_flipout"]

_DN = ("NHWC", "HWIO", "NHWC")


class _BayesConv(nn.Module):
  """Shared parameters of the Bayesian conv layers (``[B, H, W, C_in] ->
  [B, H', W', C_out]``).

  Attributes:
    features: output channels ``C_out``.
    kernel_size: ``(kh, kw)``.
    strides: ``(sh, sw)``.
    padding: "SAME" or "VALID".
    init_scale: initial posterior standard deviation of every weight.
    kernel_init: initialiser name for the kernel MEANS
      (``networks.get_initializer``; fans as for a dense ``[kh kw C_in,
      C_out]`` matrix).
    rng_name: the rng stream the layer samples from.
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: str = "SAME"
  init_scale: float = 1e-3
  kernel_init: str = "lecun"
  rng_name: str = "sample"

  def _params(self, x: Array):
    bayesian_layers.check_input_rank(self, x, "[B, H, W, C]")
    if not self.init_scale > 0:
      raise ValueError(f"init_scale must be > 0, got {self.init_scale!r}")
    if self.padding not in ("SAME", "VALID"):
      raise ValueError(f"padding must be 'SAME' or 'VALID', got "
                       f"{self.padding!r}")
    kh, kw = (int(k) for k in self.kernel_size)
    shape = (kh, kw, x.shape[-1], int(self.features))
    init = networks.get_initializer(self.kernel_init)

    def kernel_init(key, shp):  # fans of the [kh kw C_in, C_out] matrix.
      return jnp.reshape(init(key, (kh * kw * shp[2], shp[3])), shp)

    return bayesian_layers.mean_field_params(self, kernel_init, shape)

  def _conv(self, x: Array, w: Array) -> Array:
    return jax.lax.conv_general_dilated(
        x, w, tuple(int(s) for s in self.strides), self.padding,
        dimension_numbers=_DN)


class ConvReparam(_BayesConv):
  """One kernel sample per call, shared across the minibatch."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    m_w, s_w, m_b, s_b = self._params(x)
    n_w = m_w.size
    eps = standard_normal(self.make_rng(self.rng_name),
                          (n_w + m_b.shape[0],), m_w.dtype)
    w = m_w + s_w * eps[:n_w].reshape(m_w.shape)
    b = m_b + s_b * eps[n_w:]
    return self._conv(x, w) + b[None, None, None, :]


class ConvLRT(_BayesConv):
  """Local reparameterisation on the conv output: independent Gaussian units
  ``N(conv(x, mu) + mu_b, conv(x^2, sigma^2) + sigma_b^2)``."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    m_w, s_w, m_b, s_b = self._params(x)
    mean = self._conv(x, m_w) + m_b[None, None, None, :]
    var = (self._conv(jnp.square(x), jnp.square(s_w))
           + jnp.square(s_b)[None, None, None, :])
    zeta = standard_normal(self.make_rng(self.rng_name), mean.shape,
                           mean.dtype)
    return mean + jnp.sqrt(var) * zeta


class ConvFlipout(_BayesConv):
  """Flipout: shared ``Delta W`` with per-example channel sign flips; the bias
  is one shared sample."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    m_w, s_w, m_b, s_b = self._params(x)
    n, c_in, c_out = x.shape[0], m_w.shape[2], m_w.shape[3]
    n_w = m_w.size
    # One random call: Delta W, b, and signs of normals as r [B, C_in],
    # s [B, C_out].
    u = standard_normal(self.make_rng(self.rng_name),
                        (n_w + c_out + n * c_in + n * c_out,), m_w.dtype)
    delta = s_w * u[:n_w].reshape(m_w.shape)
    b = m_b + s_b * u[n_w:n_w + c_out]
    o = n_w + c_out
    sign = jnp.where(u[o:] >= 0, 1.0, -1.0).astype(x.dtype)
    r = sign[:n * c_in].reshape(n, 1, 1, c_in)
    s = sign[n * c_in:].reshape(n, 1, 1, c_out)
    return (self._conv(x, m_w) + self._conv(x * r, delta) * s
            + b[None, None, None, :])


CONV_LAYERS = {"reparam": ConvReparam, "lrt": ConvLRT, "flipout": ConvFlipout}


class BayesianCNN(nn.Module):
  """``networks.CNN`` for 8x8 images with every layer Bayesian.

  ``[BayesConv 3x3 SAME -> relu -> pool 2x2] x len(features) -> flatten ->
  BayesDense(hidden) -> relu -> BayesDense(num_classes)``; conv layers from
  :data:`CONV_LAYERS`, dense layers from ``bayesian_layers.LAYERS``, both of
  kind ``layer``. Parameter tree: ``{"convs_i", "dense", "head"}``, each
  ``{kernel_loc, kernel_raw_scale, bias_loc, bias_raw_scale}``.

  Attributes:
    num_classes: number of output logits.
    features: output channels of each conv layer.
    hidden: width of the penultimate layer.
    layer: "lrt", "flipout" or "reparam".
    init_scale: initial posterior standard deviation.
    pool: "avg" or "max".
  """
  num_classes: int = 10
  features: Sequence[int] = (32, 64)
  hidden: int = 128
  layer: str = "flipout"
  init_scale: float = 1e-3
  pool: str = "avg"

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """Logits ``[N, num_classes]`` for images ``[N, 8, 8(, 1)]`` or ``[N, 64]``
    (``train`` is unused: the layers always sample)."""
    del train
    if self.layer not in CONV_LAYERS:
      raise ValueError(f"unknown Bayesian layer {self.layer!r}; valid: "
                       f"{sorted(CONV_LAYERS)}")
    if self.pool not in ("avg", "max"):
      raise ValueError(f"unknown BayesianCNN.pool {self.pool!r}; valid: "
                       "['avg', 'max']")
    x = networks.digit_images(x, "BayesianCNN")
    conv_cls = CONV_LAYERS[self.layer]
    dense_cls = bayesian_layers.LAYERS[self.layer]
    pool = nn.avg_pool if self.pool == "avg" else nn.max_pool
    h = x
    for i, f in enumerate(self.features):
      h = conv_cls(int(f), init_scale=self.init_scale, name=f"convs_{i}")(h)
      h = pool(jax.nn.relu(h), window_shape=(2, 2), strides=(2, 2),
               padding="SAME")
    h = jnp.reshape(h, (h.shape[0], -1))
    h = jax.nn.relu(dense_cls(int(self.hidden), init_scale=self.init_scale,
                              name="dense")(h))
    return dense_cls(int(self.num_classes), init_scale=self.init_scale,
                     name="head")(h)


def bayesian_cnn_for(cnn: networks.CNN, layer: str,
                     init_scale: float) -> BayesianCNN:
  """The :class:`BayesianCNN` with ``cnn``'s sizes and pooling."""
  if not isinstance(cnn, networks.CNN):
    raise ValueError(f"mfvi_conv_{layer} needs a networks.CNN module, got "
                     f"{type(cnn).__name__}")
  return BayesianCNN(num_classes=cnn.num_classes,
                     features=tuple(int(f) for f in cnn.features),
                     hidden=int(cnn.hidden), layer=layer,
                     init_scale=float(init_scale), pool=cnn.pool)


def _make(layer: str, model: post_lib.Model, config) -> post_lib.Posterior:
  bcnn = bayesian_cnn_for(model.module, layer, config.init_scale)
  vmodel = elbo.layerwise(
      lambda q, x, key: bcnn.apply({"params": q}, x, rngs={"sample": key}),
      bayesian_layers.to_var_params)

  def init_q(key, xshape):
    k1, k2 = jax.random.split(key)
    return bcnn.init({"params": k1, "sample": k2},
                     jnp.zeros((1,) + tuple(xshape), jnp.float32))["params"]

  return mfvi.variational(f"mfvi_conv_{layer}", model, config,
                          lambda xshape: vmodel, init_q)


def make_lrt(model: post_lib.Model, config) -> post_lib.Posterior:
  """Mean-field VI of a CNN with LRT conv and dense layers."""
  return _make("lrt", model, config)


def make_flipout(model: post_lib.Model, config) -> post_lib.Posterior:
  """Mean-field VI of a CNN with Flipout conv and dense layers."""
  return _make("flipout", model, config)
