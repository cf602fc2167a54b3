"""Data sets shipped with scikit-learn (no downloads).

:func:`load_digits` (8x8 images, 10 classes), :func:`load_breast_cancer`
(binary) and :func:`load_diabetes` (regression), as float32 / int32 numpy
arrays.
"""
from __future__ import annotations

import numpy as np

from jaxbdl.data.preprocessing import training_mean_std

__all__ = ["load_digits", "load_breast_cancer", "load_diabetes"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """The 8x8 handwritten digits (1797 images, 10 classes).

  Returns:
    images ``[1797, 8, 8]`` float32 in ``[0, 1]`` (pixel counts 0..16 / 16),
    labels ``[1797]`` int32 in ``0..9``.
  """
  from sklearn import datasets
  d = datasets.load_digits()
  images = np.asarray(d.images, np.float32) / np.float32(16.0)
  return images, np.asarray(d.target, np.int32)


def load_breast_cancer(add_bias: bool = False,
                       standardised: bool = True) -> tuple[np.ndarray,
                                                           np.ndarray]:
  """The Wisconsin breast cancer data (569 examples, 30 features, 2 classes).

  Args:
    add_bias: append a constant-1 column (``D = 31``) for models without an
      intercept, e.g. Bayesian logistic regression.
    standardised: standardise each feature with the statistics of the whole
      data set (for a held-out evaluation use :func:`standardise` on a split).

  Returns:
    x ``[569, D]`` float32 and labels ``[569]`` int32 (1 = benign).
  """
  from sklearn import datasets
  d = datasets.load_breast_cancer()
  x = np.asarray(d.data, np.float64)
  if standardised:
    mean, std = training_mean_std(x, "breast cancer feature")
    x = (x - mean) / std
  if add_bias:
    x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
  return x.astype(np.float32), np.asarray(d.target, np.int32)


def load_diabetes() -> tuple[np.ndarray, np.ndarray]:
  """The diabetes regression data (442 examples, 10 features).

  Returns:
    x ``[442, 10]`` float32 (scikit-learn's mean-centred, scaled features),
    y ``[442]`` float32 (disease progression, original units 25..346).
  """
  from sklearn import datasets
  d = datasets.load_diabetes()
  return np.asarray(d.data, np.float32), np.asarray(d.target, np.float32)


