"""Classification uncertainty: calibration, proper scores, entropy.

Everything a classifier's predictive ``p(c | x)`` is judged by in the
dataset-shift literature (Ovadia et al. 2019):

* proper scoring rules: the NLL (re-used from :mod:`jaxbdl.evaluation.metrics`) and the
  Brier score ``BS = (1/N) sum_i sum_c (p_ic - 1[y_i = c])^2`` (Brier 1950)
  with Murphy's decomposition ``BS ~= REL - RES + UNC`` (Murphy 1973; the
  multi-class form of Ovadia et al. binning by predicted label);
* calibration: the expected / maximum calibration error (ECE / MCE) of the
  top-label confidence with equal-width bins (Guo et al. 2017, Eq. 3, re-used
  from :mod:`jaxbdl.evaluation.metrics`) or adaptive equal-mass bins (Nixon et al. 2019),
  and the reliability-diagram data behind them;
* uncertainty from ``S`` posterior samples ``probs [S, N, C]``: the
  predictive entropy ``H[p_bar]`` (total) = expected entropy
  ``E_s H[p_s]`` (aleatoric) + mutual information ``I[y; W | x]``
  (epistemic) (Houlsby et al. 2011; Depeweg et al. 2018, Eq. 4).

Out-of-distribution detection (AUROC / AUPR) and selective prediction
(accuracy vs coverage) are :mod:`jaxbdl.evaluation.ranking` (re-exported
here); the boundary checks :mod:`jaxbdl.evaluation.probability_checks`.

Public functions validate concrete inputs at the boundary (probabilities that
are negative, non-finite or do not sum to 1, labels out of range, NaN scores,
a single class in an AUROC) and raise a one-line ``ValueError``; traced inputs
(inside ``jit`` / ``vmap``) skip the checks and go straight to the jitted
core, so every function batches with ``jax.vmap``. Shapes: ``labels [N]``
int, ``probs [N, C]``, sample probs ``[S, N, C]``, scores ``[N]``.

References:
  G. W. Brier (1950), Verification of forecasts expressed in terms of
    probability, Monthly Weather Review 78(1).
  A. H. Murphy (1973), A new vector partition of the probability score,
    J. Applied Meteorology 12(4).
  C. Guo, G. Pleiss, Y. Sun, K. Weinberger (2017), On calibration of modern
    neural networks, ICML, Sec. 2, Eq. 3.
  J. Nixon et al. (2019), Measuring calibration in deep learning, CVPR
    workshops (adaptive / equal-mass binning).
  N. Houlsby, F. Huszar, Z. Ghahramani, M. Lengyel (2011), Bayesian active
    learning for classification and preference learning, arXiv:1112.5745.
  S. Depeweg et al. (2018), Decomposition of uncertainty in Bayesian deep
    learning for efficient and risk-sensitive learning, ICML, Eq. 4.
  Y. Ovadia et al. (2019), Can you trust your model's uncertainty? Evaluating
    predictive uncertainty under dataset shift, NeurIPS.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.evaluation import metrics
from jaxbdl.evaluation.probability_checks import check_bins
from jaxbdl.evaluation.probability_checks import check_classification
from jaxbdl.evaluation.probability_checks import check_probs
# Re-exported: OOD detection and selective prediction.
from jaxbdl.evaluation.ranking import accuracy_coverage
from jaxbdl.evaluation.ranking import auroc
from jaxbdl.evaluation.ranking import average_precision
from jaxbdl.evaluation.ranking import ood_detection

Array = jax.Array

__all__ = [
    "nll", "brier_score", "brier_decomposition", "calibration_bins",
    "expected_calibration_error", "maximum_calibration_error",
    "reliability_diagram", "plot_reliability_diagram", "predictive_entropy",
    "uncertainty_decomposition", "auroc", "average_precision",
    "ood_detection", "accuracy_coverage",
]


# --------------------------------------------------------------------------
# Proper scoring rules.


def nll(labels: Array, probs: Array) -> Array:
  """Mean categorical NLL ``-(1/N) sum_i log p_i[y_i]`` (``metrics.nll``).

  Args:
    labels: ``[N]`` ints in ``[0, C)``.
    probs: ``[N, C]``.

  Returns:
    scalar (nats per example).
  """
  check_classification("nll", labels, probs)
  return metrics.nll(labels, probs)


@jax.jit
def _brier(labels, probs):
  onehot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
  return jnp.mean(jnp.sum(jnp.square(probs - onehot), axis=-1))


def brier_score(labels: Array, probs: Array) -> Array:
  """Multi-class Brier score ``(1/N) sum_i sum_c (p_ic - 1[y_i = c])^2``.

  In ``[0, 2]``; for two classes it is twice scikit-learn's binary
  ``brier_score_loss`` (which scores only the positive class).

  Args:
    labels: ``[N]`` ints in ``[0, C)``.
    probs: ``[N, C]``.
  """
  check_classification("brier_score", labels, probs)
  return _brier(jnp.asarray(labels), jnp.asarray(probs))


@jax.jit
def _brier_decomposition(labels, probs):
  n, c = probs.shape
  pred = jnp.argmax(probs, axis=-1)
  onehot = jax.nn.one_hot(labels, c, dtype=probs.dtype)
  # counts[k, c]: examples predicted k with label c.
  counts = jax.ops.segment_sum(onehot, pred, num_segments=c)
  size = jnp.sum(counts, axis=1)                        # [C]
  base = jnp.mean(onehot, axis=0)                       # [C] label marginal
  cond = counts / jnp.maximum(size, 1.0)[:, None]       # [C, C] per-bin freq
  uncertainty = jnp.sum(base * (1.0 - base))
  resolution = jnp.sum(size * jnp.sum(jnp.square(cond - base[None, :]), -1)) / n
  reliability = jnp.mean(jnp.sum(jnp.square(probs - cond[pred]), axis=-1))
  return {"reliability": reliability, "resolution": resolution,
          "uncertainty": uncertainty}


def brier_decomposition(labels: Array, probs: Array) -> dict[str, Array]:
  """Murphy's decomposition ``BS ~= reliability - resolution + uncertainty``.

  Examples are grouped by their predicted label ``k = argmax_c p_ic`` (the
  multi-class form used by Ovadia et al. 2019); ``ybar_k [C]`` is the label
  frequency in group ``k`` and ``ybar [C]`` the overall label frequency:

    reliability = (1/N) sum_i ||p_i - ybar_{k(i)}||^2   (lower is better)
    resolution  = (1/N) sum_k N_k ||ybar_k - ybar||^2   (higher is better)
    uncertainty = sum_c ybar_c (1 - ybar_c)             (of the data alone)

  The identity is exact when the forecasts are constant within each group
  (Murphy 1973); otherwise it is off by the within-group cross term
  ``(2/N) sum_i (p_i - ybar_k) . (ybar_k - y_i)``.

  Args:
    labels: ``[N]`` ints in ``[0, C)``.
    probs: ``[N, C]``.

  Returns:
    ``{"reliability", "resolution", "uncertainty"}`` scalars.
  """
  check_classification("brier_decomposition", labels, probs)
  return _brier_decomposition(jnp.asarray(labels), jnp.asarray(probs))


# --------------------------------------------------------------------------
# Calibration of the top-label confidence.


@functools.partial(jax.jit, static_argnames=("num_bins", "adaptive"))
def _bins(labels, probs, num_bins, adaptive):
  n = probs.shape[0]
  conf = jnp.max(probs, axis=-1)
  correct = (jnp.argmax(probs, axis=-1) == labels).astype(probs.dtype)
  if adaptive:
    # Equal mass: the r-th smallest confidence goes to bin b as
    # numpy.array_split would put it (the first N mod M bins one larger).
    q, rem = divmod(n, num_bins)
    rank = jnp.zeros((n,), jnp.int32).at[jnp.argsort(conf)].set(
        jnp.arange(n, dtype=jnp.int32))
    big = (q + 1) * rem
    bins = jnp.where(rank < big, rank // (q + 1),
                     rem + (rank - big) // max(q, 1))
  else:  # Equal width: ((b-1)/M, b/M], as metrics.expected_calibration_error.
    bins = jnp.clip(jnp.ceil(conf * num_bins).astype(jnp.int32) - 1, 0,
                    num_bins - 1)
  count = jax.ops.segment_sum(jnp.ones_like(conf), bins, num_segments=num_bins)
  sum_conf = jax.ops.segment_sum(conf, bins, num_segments=num_bins)
  sum_correct = jax.ops.segment_sum(correct, bins, num_segments=num_bins)
  low = jax.ops.segment_min(conf, bins, num_segments=num_bins)
  high = jax.ops.segment_max(conf, bins, num_segments=num_bins)
  safe = jnp.maximum(count, 1.0)
  return {"count": count, "confidence": sum_conf / safe,
          "accuracy": sum_correct / safe,
          "low": jnp.where(count > 0, low, jnp.nan),
          "high": jnp.where(count > 0, high, jnp.nan)}


def calibration_bins(labels: Array, probs: Array, num_bins: int = 15,
                     adaptive: bool = False) -> dict[str, Array]:
  """Per-bin statistics of the top-label confidence ``max_c p_ic``.

  Args:
    labels: ``[N]`` ints in ``[0, C)``.
    probs: ``[N, C]``.
    num_bins: ``M`` (static).
    adaptive: equal-mass bins (sorted confidences split as
      ``numpy.array_split``; ties are split by sort order) instead of
      equal-width bins ``((b-1)/M, b/M]``.

  Returns:
    ``{"count", "confidence", "accuracy", "low", "high"}``, each ``[M]``:
    examples per bin, their mean confidence and accuracy (0 for an empty
    bin), and the smallest / largest confidence in the bin (NaN if empty).
  """
  check_classification("calibration_bins", labels, probs)
  check_bins("calibration_bins", num_bins, np.shape(probs)[0], adaptive)
  return _bins(jnp.asarray(labels), jnp.asarray(probs), int(num_bins),
               bool(adaptive))


def expected_calibration_error(labels: Array, probs: Array,
                               num_bins: int = 15,
                               adaptive: bool = False) -> Array:
  """ECE ``= sum_b (|B_b| / N) |acc(B_b) - conf(B_b)|`` (Guo et al. Eq. 3).

  Equal-width bins call :func:`jaxbdl.evaluation.metrics.expected_calibration_error`;
  ``adaptive=True`` uses equal-mass bins (Nixon et al. 2019), see
  :func:`calibration_bins`.

  Args:
    labels: ``[N]`` ints; probs: ``[N, C]``; num_bins: ``M`` (static).

  Returns:
    scalar in ``[0, 1]``.
  """
  check_classification("expected_calibration_error", labels, probs)
  check_bins("expected_calibration_error", num_bins, np.shape(probs)[0],
              adaptive)
  if not adaptive:
    return metrics.expected_calibration_error(labels, probs, int(num_bins))
  b = _bins(jnp.asarray(labels), jnp.asarray(probs), int(num_bins), True)
  return jnp.sum(b["count"] * jnp.abs(b["accuracy"] - b["confidence"])) / (
      jnp.sum(b["count"]))


def maximum_calibration_error(labels: Array, probs: Array, num_bins: int = 15,
                              adaptive: bool = False) -> Array:
  """MCE ``= max_b |acc(B_b) - conf(B_b)|`` over non-empty bins (Guo et al.).

  Args:
    labels: ``[N]`` ints; probs: ``[N, C]``; num_bins: ``M`` (static);
    adaptive: equal-mass bins (see :func:`calibration_bins`).
  """
  b = calibration_bins(labels, probs, num_bins, adaptive)
  gap = jnp.abs(b["accuracy"] - b["confidence"])
  return jnp.max(jnp.where(b["count"] > 0, gap, 0.0))


def reliability_diagram(labels: Array, probs: Array, num_bins: int = 15,
                        adaptive: bool = False) -> dict[str, np.ndarray]:
  """Reliability-diagram data as numpy arrays (for plots and JSON).

  Returns:
    :func:`calibration_bins` as numpy ``[M]`` arrays plus ``"edges"``
    ``[M + 1]`` (equal-width edges; for adaptive bins the midpoints between
    neighbouring bins' confidences, with 0 and 1 at the ends) and the scalars
    ``"ece"`` and ``"mce"``.
  """
  b = {k: np.asarray(v) for k, v in
       calibration_bins(labels, probs, num_bins, adaptive).items()}
  if adaptive:
    inner = 0.5 * (b["high"][:-1] + b["low"][1:])
    edges = np.concatenate([[0.0], inner, [1.0]])
  else:
    edges = np.linspace(0.0, 1.0, num_bins + 1)
  gap = np.abs(b["accuracy"] - b["confidence"])
  b["edges"] = edges
  b["ece"] = float(np.sum(b["count"] * gap) / np.sum(b["count"]))
  b["mce"] = float(np.max(np.where(b["count"] > 0, gap, 0.0)))
  return b


def plot_reliability_diagram(ax, diagram: dict, label: str = "",
                             color: Optional[str] = None) -> None:
  """Draws a reliability diagram on a matplotlib ``ax``.

  Bars: accuracy per bin over the bin's confidence range; the dashed diagonal
  is perfect calibration. Non-empty bins only.

  Args:
    ax: a matplotlib Axes.
    diagram: the output of :func:`reliability_diagram`.
    label: legend label (the ECE is appended).
    color: bar colour.
  """
  keep = diagram["count"] > 0
  left = diagram["edges"][:-1][keep]
  width = np.diff(diagram["edges"])[keep]
  ax.bar(left, diagram["accuracy"][keep], width=width, align="edge",
         alpha=0.5, edgecolor="k", color=color,
         label=f"{label} (ECE {diagram['ece']:.3f})".strip())
  ax.plot([0, 1], [0, 1], "k--", lw=1)
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_xlabel("confidence max_c p(c|x)")
  ax.set_ylabel("accuracy in bin")


# --------------------------------------------------------------------------
# Uncertainty from posterior samples.


def _entropy(p):
  """``-sum_c p_c log p_c`` over the last axis with ``0 log 0 = 0``."""
  return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0),
                  axis=-1)


def predictive_entropy(probs: Array) -> Array:
  """Entropy ``H[p] = -sum_c p_c log p_c`` (nats) of each row, ``[N, C] -> [N]``."""
  check_probs("predictive_entropy", probs)
  return jax.jit(_entropy)(jnp.asarray(probs))


@jax.jit
def _decomposition(sample_probs):
  total = _entropy(jnp.mean(sample_probs, axis=0))
  aleatoric = jnp.mean(_entropy(sample_probs), axis=0)
  return {"total": total, "aleatoric": aleatoric,
          "epistemic": jnp.maximum(total - aleatoric, 0.0)}


def uncertainty_decomposition(sample_probs: Array) -> dict[str, Array]:
  """Total = aleatoric + epistemic uncertainty from ``S`` posterior samples.

  ``total = H[(1/S) sum_s p_s]`` (predictive entropy), ``aleatoric =
  (1/S) sum_s H[p_s]`` (expected entropy) and ``epistemic = total -
  aleatoric``, the mutual information ``I[y; W | x]`` between label and
  weights (Depeweg et al. 2018, Eq. 4); >= 0 by Jensen (clipped at 0 against
  rounding). With ``S = 1`` the epistemic part is 0.

  Args:
    sample_probs: ``[S, N, C]`` per-sample class probabilities.

  Returns:
    ``{"total", "aleatoric", "epistemic"}``, each ``[N]`` (nats).
  """
  check_probs("uncertainty_decomposition", sample_probs, ndim=3)
  return _decomposition(jnp.asarray(sample_probs))
