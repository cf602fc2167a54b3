"""Validation at the boundary for classification metrics (concrete inputs).

Probabilities that are negative, non-finite or do not sum to 1, labels out of
range, bad bin counts, NaN scores or a single class in an AUROC raise a
one-line ``ValueError`` naming the function; traced inputs (inside ``jit`` /
``vmap``) pass unchecked. Used by :mod:`jaxbdl.evaluation.calibration` and
:mod:`jaxbdl.evaluation.ranking`.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np

__all__ = ["is_concrete", "check_probs", "check_labels",
           "check_classification", "check_bins", "check_scores"]


def is_concrete(*arrays) -> bool:
  """False if any argument is a tracer (inside jit / vmap): skip checks."""
  return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def check_probs(fn: str, probs: Any, ndim: int = 2) -> None:
  if not is_concrete(probs):
    return
  p = np.asarray(probs)
  if p.ndim != ndim:
    want = "[N, C]" if ndim == 2 else "[S, N, C]"
    raise ValueError(f"{fn}: probs must be {want}, got shape {list(p.shape)}")
  if not np.all(np.isfinite(p)):
    raise ValueError(f"{fn}: probs contain NaN or inf")
  if np.any(p < 0):
    raise ValueError(f"{fn}: probs must be >= 0, got min {float(p.min())}")
  # Sums of C rounded values: tolerance sqrt(eps) of the dtype (3e-4 float32).
  dtype = p.dtype if np.issubdtype(p.dtype, np.floating) else np.float32
  tol = float(np.sqrt(np.finfo(dtype).eps))
  worst = float(np.max(np.abs(p.sum(-1) - 1.0))) if p.size else 0.0
  if worst > tol:
    raise ValueError(f"{fn}: probs must sum to 1 over the last axis (C), "
                     f"worst |sum - 1| = {worst:.3g} > {tol:.1e}")


def check_labels(fn: str, labels: Any, probs: Any) -> None:
  if not is_concrete(labels, probs):
    return
  y = np.asarray(labels)
  n, c = np.shape(probs)[-2:]
  if y.shape != (n,):
    raise ValueError(f"{fn}: labels must be [N] = [{n}] to match probs "
                     f"{list(np.shape(probs))}, got {list(y.shape)}")
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{fn}: labels must be integers, got dtype {y.dtype}")
  if y.size and (y.min() < 0 or y.max() >= c):
    raise ValueError(f"{fn}: labels must be in [0, C={c}), got range "
                     f"[{int(y.min())}, {int(y.max())}]")


def check_classification(fn: str, labels: Any, probs: Any) -> None:
  check_probs(fn, probs)
  check_labels(fn, labels, probs)


def check_bins(fn: str, num_bins: int, n: Optional[int] = None,
                adaptive: bool = False) -> None:
  if not (isinstance(num_bins, (int, np.integer)) and num_bins >= 1):
    raise ValueError(f"{fn}: num_bins must be an int >= 1, got {num_bins!r}")
  if adaptive and n is not None and n < num_bins:
    raise ValueError(f"{fn}: adaptive bins need N >= num_bins, got N={n} < "
                     f"{num_bins}")


def check_scores(fn: str, is_positive: Any, scores: Any) -> None:
  if not is_concrete(is_positive, scores):
    return
  s, t = np.asarray(scores), np.asarray(is_positive)
  if s.ndim != 1 or t.shape != s.shape:
    raise ValueError(f"{fn}: need is_positive [N] and scores [N], got "
                     f"{list(t.shape)} and {list(s.shape)}")
  if np.any(np.isnan(s)):
    raise ValueError(f"{fn}: scores contain NaN ({int(np.isnan(s).sum())} of "
                     f"{s.size})")
  t = t.astype(bool)
  if t.all() or not t.any():
    raise ValueError(f"{fn}: need both classes in is_positive, got "
                     f"{int(t.sum())} positives of {t.size}")

