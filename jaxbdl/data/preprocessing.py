"""Preparing arrays at the boundary: validation, standardisation, splits.

:func:`check_finite` / :func:`check_shape` raise errors naming the array;
:func:`training_mean_std` and :func:`standardise` standardise with the
*training* statistics (float64, overflow- and underflow-safe, refusing
statistics that float32 cannot hold); :func:`train_test_split_arrays` is a
deterministic random split.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import jax
import numpy as np

__all__ = ["check_finite", "check_shape", "training_mean_std", "standardise",
           "train_test_split_arrays"]

# --------------------------------------------------------------------------
# Validation helpers. ``check_finite(name, array)`` is the one in
# ``jaxbdl.bayes.likelihoods`` (re-exported here for data-side callers).


def check_finite(name: str, array) -> np.ndarray:
  """Raises ValueError if ``array`` has NaN/inf; returns it as a numpy array.

  Call outside jit (it reads the values). The message names ``name``, the count
  of bad entries and the index of the first.
  """
  arr = np.asarray(array)
  if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
    raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
  if np.issubdtype(arr.dtype, np.inexact):
    bad = ~np.isfinite(arr)
    if bad.any():
      first = tuple(int(i) for i in np.argwhere(bad)[0])
      raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s) "
                       f"(NaN/inf) out of {arr.size}; first at index {first}")
  return arr


def check_shape(name: str, array: Any,
                expected: Sequence[Optional[int]]) -> None:
  """Raises ValueError unless ``array.shape`` matches ``expected``.

  Args:
    name: the name used in the message.
    array: anything with a ``.shape``.
    expected: one entry per axis; ``None`` matches any size.
  """
  shape = tuple(np.shape(array))
  ok = len(shape) == len(expected) and all(
      e is None or e == s for s, e in zip(shape, expected))
  if not ok:
    want = "[" + ", ".join("?" if e is None else str(e) for e in expected) + "]"
    raise ValueError(f"{name} has shape {list(shape)}, expected {want}")


# --------------------------------------------------------------------------
# Standardisation with training statistics.

_F32 = np.finfo(np.float32)


def training_mean_std(a: np.ndarray, name: str = "x") -> tuple[np.ndarray,
                                                      np.ndarray]:
  """Training mean and std (ddof 0, float64); a zero std becomes 1.

  Computed on ``a / max|a|`` per feature, so values near 1e300 do not
  overflow the squares and values near 1e-300 do not underflow them. The
  statistics must be representable in float32 (the dtype of the returned
  splits): a feature whose mean or std is beyond ``3.4e38`` or whose std is
  below float32's smallest normal ``1.2e-38`` (but not 0) raises ValueError
  naming the feature, rather than silently giving inf / 0 / all-zero data.
  """
  a = np.asarray(a, np.float64)
  scale = np.max(np.abs(a), axis=0) if a.shape[0] else np.ones(a.shape[1:])
  scale = np.where(scale > 0, scale, 1.0)
  z = a / scale
  mean_z = z.mean(axis=0)
  std_z = z.std(axis=0)
  mean, std = mean_z * scale, std_z * scale
  for stat, values in (("mean", mean), ("std", std), ("max |value|", scale)):
    big = np.atleast_1d(np.abs(values) > _F32.max)
    if np.any(big):
      i = int(np.argmax(big))
      raise ValueError(
          f"{name}{_index(a, i)}: training {stat} "
          f"{float(np.atleast_1d(values)[i]):.3g} is beyond float32's range "
          f"(max {float(_F32.max):.3g}); rescale the data (change units)")
  tiny = np.atleast_1d((std > 0) & (std < _F32.tiny))
  if np.any(tiny):
    i = int(np.argmax(tiny))
    raise ValueError(
        f"{name}{_index(a, i)}: training std {float(np.atleast_1d(std)[i]):.3g}"
        f" is below float32's smallest normal {float(_F32.tiny):.3g}; rescale "
        "the data (change units) rather than treat it as constant")
  std = np.where(std > 0, std, 1.0)
  return mean, std


def _index(a: np.ndarray, flat: int) -> str:
  if a.ndim <= 1:
    return ""
  return str([int(i) for i in np.unravel_index(flat, a.shape[1:])])


def train_test_split_arrays(key_or_seed: Union[jax.Array, int],
                            x: Any, y: Any,
                            test_fraction: float = 0.2):
  """Deterministic random split into train and test.

  Args:
    key_or_seed: a JAX key (``jax.random.key``) or an int seed (numpy
      ``default_rng``); the same value always gives the same split.
    x: ``[N, ...]``.
    y: ``[N, ...]``.
    test_fraction: in ``(0, 1)``; ``round(test_fraction * N)`` test examples
      (at least 1, leaving at least 1 for training).

  Returns:
    ``(x_train, y_train, x_test, y_test)`` as numpy arrays.
  """
  x, y = np.asarray(x), np.asarray(y)
  if x.shape[:1] != y.shape[:1]:
    raise ValueError(f"x and y need the same number of examples, got x "
                     f"{list(x.shape)} and y {list(y.shape)}")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  n = x.shape[0]
  n_test = min(max(int(round(test_fraction * n)), 1), n - 1)
  if n < 2:
    raise ValueError(f"need at least 2 examples to split, got {n}")
  if isinstance(key_or_seed, (int, np.integer)):
    perm = np.random.default_rng(int(key_or_seed)).permutation(n)
  else:
    perm = np.asarray(jax.random.permutation(key_or_seed, n))
  te, tr = perm[:n_test], perm[n_test:]
  return x[tr], y[tr], x[te], y[te]


def standardise(x_train: Any, *x_others: Any):
  """Standardises arrays with the training statistics (per feature, axis 0).

  A constant training feature gets std 1. Statistics are computed in
  float64 on values divided by each feature's max magnitude, so neither
  1e200 nor 1e-300 overflows or underflows silently; statistics that float32
  cannot hold raise instead (see Raises).

  Example::

    (x_tr, x_te), mean, std = standardise(x_tr, x_te)

  Args:
    x_train: ``[N, ...]``, whose mean and std (ddof 0) are used.
    *x_others: arrays ``[M, ...]`` with the same trailing shape.

  Returns:
    ``(arrays, mean, std)``: a list ``[x_train_s, *x_others_s]`` in float32,
    and ``mean``, ``std`` of shape ``x_train.shape[1:]``.

  Raises:
    ValueError: NaN/inf, mismatched trailing shapes, no examples, or a
      feature whose mean / std / standardised values are outside float32's
      range (|v| > 3.4e38, or 0 < std < 1.2e-38), naming the column.
  """
  x_train = np.asarray(check_finite("x_train", x_train), np.float64)
  others = [np.asarray(check_finite(f"x_others[{i}]", a), np.float64)
            for i, a in enumerate(x_others)]
  for i, a in enumerate(others):
    if a.shape[1:] != x_train.shape[1:]:
      raise ValueError(f"x_others[{i}] has trailing shape {list(a.shape[1:])}"
                       f", x_train has {list(x_train.shape[1:])}")
  if x_train.shape[:1] == (0,):
    raise ValueError("standardise: x_train has no examples (shape "
                     f"{list(x_train.shape)})")
  mean, std = training_mean_std(x_train, "standardise: x_train column")
  arrays = []
  for name, a in [("x_train", x_train)] + [(f"x_others[{i}]", o)
                                           for i, o in enumerate(others)]:
    with np.errstate(over="ignore"):
      s = (a - mean) / std
    if not np.all(np.abs(s) <= _F32.max):
      i = np.argwhere(~(np.abs(s) <= _F32.max))[0]
      raise ValueError(f"standardise: {name}{[int(j) for j in i]} "
                       f"standardises to {float(s[tuple(i)]):.3g}, beyond "
                       "float32's range")
    arrays.append(s.astype(np.float32))
  return arrays, mean.astype(np.float32), std.astype(np.float32)

