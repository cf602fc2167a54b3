"""Uncertainty as a ranking: OOD detection and selective prediction.

* out-of-distribution detection from any score (higher = more OOD): AUROC
  (the Mann-Whitney statistic with ties counted 1/2) and AUPR (average
  precision, scikit-learn's step-wise definition);
* selective prediction: accuracy on the ``k`` most confident examples
  against coverage ``k / N`` and the area under that curve.

Concrete inputs are validated (:mod:`jaxbdl.evaluation.probability_checks`);
traced ones go straight to the jitted core, so every function batches with
``jax.vmap``. Re-exported by :mod:`jaxbdl.evaluation.calibration`.

References:
  Y. Ovadia et al. (2019), Can you trust your model's uncertainty? Evaluating
    predictive uncertainty under dataset shift, NeurIPS.
  Y. Geifman, R. El-Yaniv (2017), Selective classification for deep neural
    networks, NeurIPS (risk-coverage curves).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.evaluation.probability_checks import check_classification
from jaxbdl.evaluation.probability_checks import check_scores
from jaxbdl.evaluation.probability_checks import is_concrete

Array = jax.Array

__all__ = ["auroc", "average_precision", "ood_detection", "accuracy_coverage"]


# --------------------------------------------------------------------------
# Ranking metrics: OOD detection.


@jax.jit
def _auroc(is_positive, scores):
  pos = is_positive.astype(scores.dtype)
  n = scores.shape[0]
  srt = jnp.sort(scores)
  # Mid-ranks (1-based) with ties averaged: the Mann-Whitney U statistic.
  lo = jnp.searchsorted(srt, scores, side="left")
  hi = jnp.searchsorted(srt, scores, side="right")
  rank = 0.5 * (lo + hi + 1).astype(scores.dtype)
  n_pos = jnp.sum(pos)
  n_neg = n - n_pos
  u = jnp.sum(pos * rank) - n_pos * (n_pos + 1.0) / 2.0
  return u / (n_pos * n_neg)


def auroc(is_positive: Array, scores: Array) -> Array:
  """Area under the ROC curve of ``scores`` separating positives.

  ``P(s_pos > s_neg) + 0.5 P(s_pos = s_neg)`` (Mann-Whitney U / (n+ n-)),
  equal to scikit-learn's ``roc_auc_score``.

  Args:
    is_positive: ``[N]`` bool (or 0 / 1).
    scores: ``[N]``; higher means "more positive".

  Returns:
    scalar in ``[0, 1]``.
  """
  check_scores("auroc", is_positive, scores)
  return _auroc(jnp.asarray(is_positive), jnp.asarray(scores))


@jax.jit
def _average_precision(is_positive, scores):
  pos = is_positive.astype(scores.dtype)
  n = scores.shape[0]
  order = jnp.argsort(scores)
  srt = scores[order]
  # before[j]: positives among the j smallest scores.
  before = jnp.concatenate([jnp.zeros((1,), scores.dtype),
                            jnp.cumsum(pos[order])])
  lo = jnp.searchsorted(srt, scores, side="left")   # scores < s_i
  n_pos = jnp.sum(pos)
  tp = n_pos - before[lo]                           # positives >= s_i
  precision = tp / (n - lo).astype(scores.dtype)
  return jnp.sum(pos * precision) / n_pos


def average_precision(is_positive: Array, scores: Array) -> Array:
  """Average precision (area under the precision-recall curve).

  ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds, as
  scikit-learn's ``average_precision_score``; equivalently the mean over
  positives ``j`` of the precision of the threshold ``s_j`` (ties included).

  Arguments and result as :func:`auroc`.
  """
  check_scores("average_precision", is_positive, scores)
  return _average_precision(jnp.asarray(is_positive, bool),
                            jnp.asarray(scores))


def ood_detection(score_in: Array, score_out: Array) -> dict[str, Array]:
  """AUROC and AUPR of an uncertainty score for in- vs out-of-distribution.

  OOD inputs are the positives (AUPR-out); any score where larger means "more
  uncertain" works: predictive entropy, mutual information, ``1 - max p``.

  Args:
    score_in: ``[N]`` scores of in-distribution inputs.
    score_out: ``[M]`` scores of OOD inputs.

  Returns:
    ``{"auroc", "aupr"}`` scalars.
  """
  s_in, s_out = np.asarray(score_in), np.asarray(score_out)
  if s_in.ndim != 1 or s_out.ndim != 1 or not s_in.size or not s_out.size:
    raise ValueError("ood_detection: need non-empty score_in [N] and "
                     f"score_out [M], got {list(s_in.shape)} and "
                     f"{list(s_out.shape)}")
  scores = np.concatenate([s_in, s_out])
  is_out = np.concatenate([np.zeros(s_in.size, bool), np.ones(s_out.size, bool)])
  return {"auroc": auroc(is_out, scores),
          "aupr": average_precision(is_out, scores)}


# --------------------------------------------------------------------------
# Selective prediction.


@jax.jit
def _accuracy_coverage(labels, probs, confidence):
  n = probs.shape[0]
  correct = (jnp.argmax(probs, axis=-1) == labels).astype(probs.dtype)
  order = jnp.argsort(-confidence, stable=True)
  k = jnp.arange(1, n + 1, dtype=probs.dtype)
  acc = jnp.cumsum(correct[order]) / k
  return {"coverage": k / n, "accuracy": acc, "area": jnp.mean(acc)}


def accuracy_coverage(labels: Array, probs: Array,
                      confidence: Optional[Array] = None) -> dict[str, Array]:
  """Accuracy-vs-coverage curve of selective prediction and its area.

  Examples are sorted by decreasing ``confidence`` (default ``max_c p_ic``;
  ties keep input order); ``accuracy[k-1]`` is the accuracy on the ``k``
  most confident, at ``coverage[k-1] = k / N``. ``area = (1/N) sum_k
  accuracy[k-1]`` (the area under the curve, 1 for a perfect ranking of a
  perfect classifier; its complement is the AURC of Geifman & El-Yaniv).

  Args:
    labels: ``[N]`` ints; probs: ``[N, C]``.
    confidence: ``[N]`` (higher = keep first), e.g. ``-entropy``.

  Returns:
    ``{"coverage": [N], "accuracy": [N], "area": scalar}``.
  """
  check_classification("accuracy_coverage", labels, probs)
  probs = jnp.asarray(probs)
  if confidence is None:
    confidence = jnp.max(probs, axis=-1)
  elif is_concrete(confidence):
    c = np.asarray(confidence)
    if c.shape != probs.shape[:1] or np.any(np.isnan(c)):
      raise ValueError("accuracy_coverage: confidence must be [N] = "
                       f"[{probs.shape[0]}] without NaN, got shape "
                       f"{list(c.shape)}")
  return _accuracy_coverage(jnp.asarray(labels), probs,
                            jnp.asarray(confidence, probs.dtype))
