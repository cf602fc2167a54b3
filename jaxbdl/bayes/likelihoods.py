"""Observation models ``p(y | f(x, W))``: the ONE likelihood protocol.

A :class:`Likelihood` is a NamedTuple of pure functions; every posterior
approximation (MAP, VI, MC dropout, ensembles, Laplace, samplers), every
experiment and ``experiments.fit`` use it, for regression and classification
alike:

* ``log_prob(lik_params, y [N], outputs [N, K]) -> [N]``: per-example log
  densities (STYLE rule 7: the caller reduces, e.g. ``(N / B) * sum`` for a
  minibatch estimate of the full-data term);
* ``init() -> lik_params``: its own trainable parameters (a learned noise
  scale), ``{}`` when it has none;
* ``predictive(lik_params, outputs [..., N, K]) -> components``: the
  predictive distribution that one network output implies, regression
  ``{"mean": [..., N], "variance": [..., N]}`` (observation noise included),
  classification ``{"probs": [..., N, C]}``;
* ``classification`` and ``num_outputs`` are capabilities as data.

A method's predictive is an equal-weight mixture over a leading sample axis
``S`` of such components; :func:`mixture_log_prob` scores it and
:func:`mixture_summary` collapses it.

Factories: :func:`gaussian` (fixed or learned homoscedastic noise),
:func:`heteroscedastic_gaussian`, :func:`categorical`, :func:`bernoulli`.
The noise scale may be a traced value (vmapped hyper-parameter grids).

References:
  Bishop (2006): Gaussian noise Eq. 3.8, logistic regression Eq. 4.90,
  softmax cross-entropy Eq. 4.108.
  Nix & Weigend (1994); Kendall & Gal (2017), Eq. 5 (heteroscedastic).
  Lakshminarayanan et al. (2017), Eq. 1 (heteroscedastic ensembles).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxbdl._gaussian import normal_log_density
from jaxbdl._checks import check_positive, softplus_inverse

PyTree = Any
Array = jax.Array

__all__ = ["Likelihood", "gaussian", "heteroscedastic_gaussian",
           "categorical", "bernoulli", "normal_log_prob",
           "categorical_log_prob", "bernoulli_log_prob", "mixture_log_prob",
           "mixture_summary"]


class Likelihood(NamedTuple):
  """An observation model (see the module docstring for the contract).

  Attributes:
    name: for messages and results.
    classification: True for class labels (integer ``y``), False for real
      targets.
    num_outputs: network outputs ``K`` per example it reads.
    init: ``init() -> lik_params`` (trainable; ``{}`` when none).
    log_prob: ``(lik_params, y [N], outputs [N, K]) -> [N]``.
    predictive: ``(lik_params, outputs [..., N, K]) -> {"mean", "variance"}``
      ``[..., N]`` or ``{"probs"}`` ``[..., N, C]``.
  """
  name: str
  classification: bool
  num_outputs: int
  init: Callable[[], PyTree]
  log_prob: Callable[[PyTree, Array, Array], Array]
  predictive: Callable[[PyTree, Array], dict]


# ---------------------------------------------------------------------------
# Per-example log densities.


def normal_log_prob(y: Array, mean: Array, scale: Any) -> Array:
  """Elementwise ``log N(y; mean, scale^2)`` (``scale`` a standard deviation)."""
  return normal_log_density(y, mean, scale)


def categorical_log_prob(labels: Array, logits: Array) -> Array:
  """``log softmax(logits)[label]``: labels ``[N]`` ints, logits ``[N, C]``."""
  labels = jnp.asarray(labels)
  if logits.ndim != 2 or labels.shape != logits.shape[:1]:
    raise ValueError(f"categorical: labels must be [N] and logits [N, C], got "
                     f"{labels.shape} and {logits.shape}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"categorical: labels must be integers, got {labels.dtype}")
  logp = jax.nn.log_softmax(logits, axis=-1)
  return jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]


def bernoulli_log_prob(labels: Array, logits: Array) -> Array:
  """``y log sigmoid(l) + (1 - y) log sigmoid(-l)``, elementwise and stable."""
  labels = jnp.asarray(labels).astype(logits.dtype)
  return (labels * jax.nn.log_sigmoid(logits)
          + (1.0 - labels) * jax.nn.log_sigmoid(-logits))


def _column(y: Array, outputs: Array, k: int, what: str) -> tuple[Array, Array]:
  """Checks ``y [N]`` against ``outputs [N, k]`` (trace time)."""
  y = jnp.asarray(y)
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if outputs.ndim != 2 or y.ndim != 1 or outputs.shape != (y.shape[0], k):
    raise ValueError(f"{what}: targets must be [N] and outputs [N, {k}], got "
                     f"{tuple(y.shape)} and {tuple(outputs.shape)}")
  return y, outputs


# ---------------------------------------------------------------------------
# Factories.


def gaussian(noise_scale: Any = None, *, init_scale: float = 0.5,
             min_scale: float = 1e-3) -> Likelihood:
  """Homoscedastic Gaussian noise ``y ~ N(f(x), s^2)``, one output.

  Args:
    noise_scale: FIXED standard deviation ``s`` (a float or a traced scalar);
      ``None`` LEARNS it as a point estimate (type-II ML): ``lik_params =
      {"raw_scale": r}``, ``s = softplus(r) + min_scale``.
    init_scale: initial learned ``s`` (``> min_scale``).
    min_scale: floor of the learned ``s`` (keeps the density bounded).
  """
  if noise_scale is not None:
    check_positive("gaussian noise_scale", noise_scale)
    scale = lambda lp: jnp.asarray(noise_scale, jnp.float32)
    init = lambda: {}
    name = "gaussian(fixed)"
  else:
    if not init_scale > min_scale >= 0:
      raise ValueError(f"gaussian: need init_scale > min_scale >= 0, got "
                       f"{init_scale!r}, {min_scale!r}")
    r0 = softplus_inverse(float(init_scale - min_scale))
    scale = lambda lp: jax.nn.softplus(lp["raw_scale"]) + min_scale
    init = lambda: {"raw_scale": jnp.float32(r0)}
    name = "gaussian(learned)"

  def log_prob(lp, y, outputs):
    y, outputs = _column(y, outputs, 1, name)
    return normal_log_prob(y, outputs[:, 0], scale(lp))

  def predictive(lp, outputs):
    mean = outputs[..., 0]
    return {"mean": mean,
            "variance": jnp.broadcast_to(jnp.square(scale(lp)), mean.shape)}

  return Likelihood(name, False, 1, init, log_prob, predictive)


def heteroscedastic_gaussian(min_scale: float = 1e-3) -> Likelihood:
  """Input-dependent noise: outputs ``[mean, raw]``, ``s = softplus(raw) +
  min_scale`` (Nix & Weigend 1994; Kendall & Gal 2017, Eq. 5)."""
  if isinstance(min_scale, (int, float)) and min_scale < 0:
    raise ValueError(f"min_scale must be >= 0, got {min_scale!r}")

  def scale(outputs):
    return jax.nn.softplus(outputs[..., 1]) + min_scale

  def log_prob(lp, y, outputs):
    del lp
    y, outputs = _column(y, outputs, 2, "heteroscedastic_gaussian")
    return normal_log_prob(y, outputs[:, 0], scale(outputs))

  def predictive(lp, outputs):
    del lp
    return {"mean": outputs[..., 0], "variance": jnp.square(scale(outputs))}

  return Likelihood("heteroscedastic_gaussian", False, 2, lambda: {},
                    log_prob, predictive)


def categorical(num_classes: int) -> Likelihood:
  """Softmax over ``C = num_classes`` logits; labels are ints in ``[0, C)``."""
  if not (isinstance(num_classes, int) and num_classes >= 2):
    raise ValueError(f"categorical: num_classes must be an int >= 2, got "
                     f"{num_classes!r}")

  def log_prob(lp, y, outputs):
    del lp
    if outputs.shape[-1] != num_classes:
      raise ValueError(f"categorical({num_classes}): outputs must be [N, "
                       f"{num_classes}], got {tuple(outputs.shape)}")
    return categorical_log_prob(y, outputs)

  def predictive(lp, outputs):
    del lp
    return {"probs": jax.nn.softmax(outputs, axis=-1)}

  return Likelihood(f"categorical({num_classes})", True, num_classes,
                    lambda: {}, log_prob, predictive)


def bernoulli() -> Likelihood:
  """One logit per example; labels in ``{0, 1}``; ``probs [..., N, 2]``."""

  def log_prob(lp, y, outputs):
    del lp
    y, outputs = _column(y, outputs, 1, "bernoulli")
    return bernoulli_log_prob(y, outputs[:, 0])

  def predictive(lp, outputs):
    del lp
    p1 = jax.nn.sigmoid(outputs[..., 0])
    return {"probs": jnp.stack([1.0 - p1, p1], axis=-1)}

  return Likelihood("bernoulli", True, 1, lambda: {}, log_prob, predictive)


# ---------------------------------------------------------------------------
# Equal-weight mixtures over a leading sample axis S.


def mixture_log_prob(pred: dict, y: Array) -> Array:
  """Per-point log density of the S-component predictive ``pred`` at ``y``.

  Regression: ``logsumexp_s log N(y; m_s, v_s) - log S``; classification:
  ``log mean_s p_s[y]``. Returns ``[N]``.
  """
  if "probs" in pred:
    probs = pred["probs"]  # [S, N, C]
    p = jnp.take_along_axis(probs, jnp.asarray(y)[None, :, None], axis=-1)
    return jnp.log(jnp.clip(jnp.mean(p[..., 0], axis=0), 1e-38, None))
  means, variances = pred["mean"], pred["variance"]  # [S, N]
  lp = normal_log_prob(jnp.asarray(y)[None, :], means, jnp.sqrt(variances))
  return jax.nn.logsumexp(lp, axis=0) - jnp.log(float(means.shape[0]))


def mixture_summary(pred: dict) -> dict:
  """Collapses the sample axis: ``{"mean", "variance"} [N]`` (law of total
  variance) or ``{"probs": [N, C]}`` (the averaged probabilities)."""
  if "probs" in pred:
    return {"probs": jnp.mean(pred["probs"], axis=0)}
  mean = jnp.mean(pred["mean"], axis=0)
  var = (jnp.mean(pred["variance"], axis=0)
         + jnp.mean(jnp.square(pred["mean"]), axis=0) - jnp.square(mean))
  return {"mean": mean, "variance": jnp.maximum(var, 0.0)}
