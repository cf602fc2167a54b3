"""Data sets: the UCI 20-split regression benchmark, scikit-learn data, toys.

Three families, all returned as float32 / int32 arrays (numpy for files and
scikit-learn data, ``jax.Array`` for the key-driven synthetic generators, which
are pure and jittable):

* **UCI regression benchmark** in the standard layout of Hernández-Lobato &
  Adams (2015) and Gal & Ghahramani (2016): :func:`load_uci` reads a folder,
  :func:`uci_split` standardises one split with *training* statistics and
  :func:`uci_stacked_splits` stacks splits on a leading axis ``[S, ...]`` so
  that all splits train as one ``jax.vmap``-ed program. The data path is always
  given by the caller; nothing is downloaded or copied.
* **scikit-learn shipped data** (no downloads): :func:`load_digits`,
  :func:`load_breast_cancer`, :func:`load_diabetes`, plus
  :func:`train_test_split_arrays` and :func:`standardise`.
* **Synthetic**: :func:`gap_regression` (1-D regression with a hole in the
  inputs, for in-between uncertainty), :func:`sinusoid_tasks` (the MAML
  sinusoid task distribution of Finn et al. 2017) and
  :func:`noisy_sinusoid_sequences` (next-value forecasting for RNNs).

Validation happens here, at the boundary: a missing file, a NaN, a ragged row
or an index out of range raises ``FileNotFoundError`` / ``ValueError`` with a
message naming the file, row and column.

References:
  Hernández-Lobato & Adams (2015), Probabilistic backpropagation for scalable
    learning of Bayesian neural networks, ICML (the UCI splits).
  Gal & Ghahramani (2016), Dropout as a Bayesian approximation, ICML.
  Finn, Abbeel & Levine (2017), Model-agnostic meta-learning, ICML, Sec. 5.1.
"""
from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np


__all__ = [
    "UCIDataset", "UCISplit", "load_uci", "uci_split", "uci_stacked_splits",
    "list_uci_datasets", "load_digits", "load_breast_cancer", "load_diabetes",
    "train_test_split_arrays", "standardise", "GapData", "gap_regression",
    "sine_2pi",
    "sinusoid_tasks", "noisy_sinusoid_sequences", "check_finite",
    "check_shape",
]

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
# UCI benchmark (standard 20-split layout).


class UCIDataset(NamedTuple):
  """One UCI data set in the standard split layout, as read from its folder.

  Attributes:
    name: folder name, e.g. ``"yacht"``.
    data: ``[R, C]`` float64, the raw table ``data.txt``.
    feature_idx: ``[D]`` int64, 0-based input columns.
    target_idx: int, 0-based target column.
    train_idx: list of ``n_splits`` int64 arrays ``[N_tr]`` of 0-based rows.
    test_idx: list of ``n_splits`` int64 arrays ``[N_te]`` of 0-based rows.
    n_splits: number of splits.
    meta: optional files: ``n_hidden``, ``n_epochs`` (ints),
      ``tau_values``, ``dropout_rates`` (lists of floats), when present.
  """
  name: str
  data: np.ndarray
  feature_idx: np.ndarray
  target_idx: int
  train_idx: list
  test_idx: list
  n_splits: int
  meta: dict


class UCISplit(NamedTuple):
  """One train/test split, standardised with the TRAINING split's statistics.

  Inputs: ``x = (x_raw - x_mean) / x_std`` with ``x_std = 1`` for a constant
  training column. Targets: ``y = (y_raw - y_mean) / y_std`` for both train and
  test, so a model is fitted and evaluated in standardised units; metrics
  de-normalise (RMSE times ``y_std``, log-likelihood minus ``log(y_std)``, see
  :mod:`jaxbdl.evaluation.metrics`). ``y_test_raw`` keeps the original test targets.
  All fields are float32 numpy arrays; :func:`uci_stacked_splits` adds a
  leading split axis ``[S]`` to every field.

  Attributes:
    x_train: ``[N_tr, D]``.
    y_train: ``[N_tr]``.
    x_test: ``[N_te, D]``.
    y_test: ``[N_te]`` (standardised).
    x_mean, x_std: ``[D]``.
    y_mean, y_std: scalars ``[]``.
    y_test_raw: ``[N_te]`` test targets in original units.
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  x_mean: np.ndarray
  x_std: np.ndarray
  y_mean: np.ndarray
  y_std: np.ndarray
  y_test_raw: np.ndarray


def _require_file(path: str) -> str:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"UCI file not found: {path}")
  return path


def _lines(path: str):
  """Yields ``(line_no, text)`` of a text file; a byte that is not UTF-8
  raises ValueError naming the file, line and byte."""
  with open(_require_file(path), "rb") as f:
    for line_no, raw in enumerate(f, start=1):
      try:
        yield line_no, raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: line {line_no}: byte {raw[e.start:e.start + 1]!r} at "
            f"column {e.start + 1} is not UTF-8 text (a number file must be "
            "plain ASCII)") from None


def _read_numbers_with_lines(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Whitespace-separated numbers of ``path`` (float64) and their lines."""
  values, lines = [], []
  for line_no, text in _lines(path):
    for token in text.split():
      try:
        values.append(float(token))
      except ValueError:
        raise ValueError(f"{path}: line {line_no}: cannot parse {token!r} "
                         "as a number") from None
      lines.append(line_no)
  return np.array(values, dtype=np.float64), np.array(lines, dtype=np.int64)


def _read_numbers(path: str) -> np.ndarray:
  """Reads whitespace-separated numbers in ``path`` as a flat float64 array."""
  return _read_numbers_with_lines(path)[0]


def _read_indices(path: str, upper: int, what: str) -> np.ndarray:
  """Reads 0-based indices (ints or integral floats such as ``3.0``).

  Range is checked on the float values, before any integer conversion, so
  ``1e20`` is reported as itself (not as a wrapped int64).
  """
  values, lines = _read_numbers_with_lines(path)
  if values.size == 0:
    raise ValueError(f"{path}: no indices in the file")
  bad = ~np.isfinite(values) | (values != np.round(values))
  if np.any(bad):
    i = int(np.argmax(bad))
    raise ValueError(f"{path}: line {lines[i]}: index {float(values[i])!r} is not "
                     "an integer")
  out = (values < 0) | (values >= upper)
  if np.any(out):
    i = int(np.argmax(out))
    shown = (int(values[i]) if abs(values[i]) < 2 ** 53 else float(values[i]))
    raise ValueError(f"{path}: line {lines[i]}: {what} index {shown} is out "
                     f"of range [0, {upper})")
  idx = values.astype(np.int64)
  if np.unique(idx).size != idx.size:
    uniq, counts = np.unique(idx, return_counts=True)
    raise ValueError(f"{path}: duplicate {what} indices (first: "
                     f"{int(uniq[counts > 1][0])})")
  return idx


def _read_scalar_int(path: str) -> int:
  values = _read_numbers(path)
  if (values.size != 1 or not np.isfinite(values[0])
      or values[0] != round(values[0]) or abs(values[0]) > 2 ** 31):
    raise ValueError(f"{path}: expected one integer, got {values.tolist()}")
  return int(values[0])


def _read_table(path: str) -> np.ndarray:
  """Reads ``data.txt``: rectangular, finite; errors name row and column."""
  rows = []
  width = None
  for line_no, line in _lines(path):
    tokens = line.split()
    if not tokens:
      continue  # Blank lines (e.g. a trailing one) carry no row.
    if width is None:
      width = len(tokens)
    elif len(tokens) != width:
      raise ValueError(f"{path}: ragged rows: line {line_no} has "
                       f"{len(tokens)} columns, the first row has {width}")
    try:
      rows.append([float(t) for t in tokens])
    except ValueError as e:
      raise ValueError(f"{path}: line {line_no}: {e}") from None
  if not rows:
    raise ValueError(f"{path}: no data rows")
  data = np.array(rows, dtype=np.float64)
  if not np.all(np.isfinite(data)):
    r, c = np.argwhere(~np.isfinite(data))[0]
    raise ValueError(f"{path}: non-finite value {data[r, c]} at row {r} "
                     f"(0-based, blank lines skipped), column {c}")
  return data


def load_uci(data_dir: str) -> UCIDataset:
  """Reads one data set in the standard UCI split layout.

  The folder holds ``data.txt``, ``index_features.txt``, ``index_target.txt``,
  ``n_splits.txt`` and ``index_train_K.txt`` / ``index_test_K.txt`` for
  ``K = 0..n_splits-1``; optionally ``n_hidden.txt``, ``n_epochs.txt``,
  ``tau_values.txt``, ``dropout_rates.txt``. Any folder in this layout works
  (any number of splits, the target in any column).

  Args:
    data_dir: path of the folder.

  Returns:
    The raw :class:`UCIDataset`.

  Raises:
    FileNotFoundError: the folder or a required file is missing (named).
    ValueError: NaN/inf or ragged rows in ``data.txt``, an index out of range,
      a non-integer index, train/test overlap in a split, or a target column
      that is also a feature.
  """
  data_dir = os.path.expanduser(data_dir)
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"UCI data directory not found: {data_dir}")
  join = lambda f: os.path.join(data_dir, f)
  # Small index files first, so that a missing one is reported without first
  # parsing a large table.
  for f in ("index_features.txt", "index_target.txt", "n_splits.txt"):
    _require_file(join(f))
  n_splits = _read_scalar_int(join("n_splits.txt"))
  if n_splits < 1:
    raise ValueError(f"{join('n_splits.txt')}: n_splits must be >= 1, "
                     f"got {n_splits}")
  for k in range(n_splits):
    _require_file(join(f"index_train_{k}.txt"))
    _require_file(join(f"index_test_{k}.txt"))
  data = _read_table(join("data.txt"))
  num_rows, num_cols = data.shape
  feature_idx = _read_indices(join("index_features.txt"), num_cols, "column")
  target = _read_indices(join("index_target.txt"), num_cols, "column")
  if target.size != 1:
    raise ValueError(f"{join('index_target.txt')}: expected one target column, "
                     f"got {target.tolist()}")
  target_idx = int(target[0])
  if target_idx in set(feature_idx.tolist()):
    raise ValueError(f"{join('index_target.txt')}: target column {target_idx} "
                     f"is also listed in index_features.txt")
  train_idx, test_idx = [], []
  for k in range(n_splits):
    tr = _read_indices(join(f"index_train_{k}.txt"), num_rows, "row")
    te = _read_indices(join(f"index_test_{k}.txt"), num_rows, "row")
    overlap = np.intersect1d(tr, te)
    if overlap.size:
      raise ValueError(f"split {k} of {data_dir}: {overlap.size} rows are in "
                       f"both train and test (first: row {int(overlap[0])})")
    train_idx.append(tr)
    test_idx.append(te)
  meta = {}
  for key, kind in (("n_hidden", int), ("n_epochs", int),
                    ("tau_values", float), ("dropout_rates", float)):
    path = join(f"{key}.txt")
    if os.path.isfile(path):
      values = _read_numbers(path)
      if kind is int:
        meta[key] = (int(values[0]) if values.size == 1
                     else [int(v) for v in values])
      else:
        meta[key] = [float(v) for v in values]
  name = os.path.basename(os.path.normpath(data_dir))
  return UCIDataset(name=name, data=data, feature_idx=feature_idx,
                    target_idx=target_idx, train_idx=train_idx,
                    test_idx=test_idx, n_splits=n_splits, meta=meta)


_F32 = np.finfo(np.float32)


def _mean_std(a: np.ndarray, name: str = "x") -> tuple[np.ndarray,
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


def uci_split(dataset: UCIDataset, split: int) -> UCISplit:
  """Returns split ``split`` standardised with its training statistics.

  Args:
    dataset: from :func:`load_uci`.
    split: 0-based split number, ``0 <= split < dataset.n_splits``.

  Returns:
    :class:`UCISplit` of float32 arrays (statistics computed in float64).
  """
  if isinstance(split, bool) or not isinstance(split, (int, np.integer)):
    raise ValueError(f"split must be an int, got {split!r}")
  if not 0 <= split < dataset.n_splits:
    raise ValueError(f"split {split} out of range for {dataset.name!r} "
                     f"with {dataset.n_splits} splits")
  x = dataset.data[:, dataset.feature_idx]
  y = dataset.data[:, dataset.target_idx]
  tr, te = dataset.train_idx[split], dataset.test_idx[split]
  where = f"{dataset.name} split {split}"
  x_mean, x_std = _mean_std(x[tr], f"{where}: feature column")
  y_mean, y_std = _mean_std(y[tr], f"{where}: target")
  f32 = lambda a: np.asarray(a, dtype=np.float32)
  return UCISplit(
      x_train=f32((x[tr] - x_mean) / x_std),
      y_train=f32((y[tr] - y_mean) / y_std),
      x_test=f32((x[te] - x_mean) / x_std),
      y_test=f32((y[te] - y_mean) / y_std),
      x_mean=f32(x_mean), x_std=f32(x_std),
      y_mean=f32(y_mean), y_std=f32(y_std),
      y_test_raw=f32(y[te]))


def uci_stacked_splits(dataset: UCIDataset,
                       splits: Optional[Sequence[int]] = None) -> UCISplit:
  """Stacks splits on a leading axis: every field gets shape ``[S, ...]``.

  Use with ``jax.vmap`` to train all splits as one program.

  Args:
    dataset: from :func:`load_uci`.
    splits: split numbers; all of them when ``None``.

  Raises:
    ValueError: the splits differ in train or test size (cannot stack), or
      ``splits`` is empty.
  """
  splits = list(range(dataset.n_splits)) if splits is None else list(splits)
  if not splits:
    raise ValueError("uci_stacked_splits needs at least one split")
  parts = [uci_split(dataset, s) for s in splits]
  sizes = {(p.x_train.shape[0], p.x_test.shape[0]) for p in parts}
  if len(sizes) != 1:
    raise ValueError(f"cannot stack splits of {dataset.name!r}: their "
                     f"(train, test) sizes differ: {sorted(sizes)}; use "
                     "uci_split per split instead")
  return UCISplit(*[np.stack(fields) for fields in zip(*parts)])


def list_uci_datasets(data_root: str) -> list[str]:
  """Sorted names of sub-folders of ``data_root`` in the standard layout.

  A folder qualifies if it holds ``data.txt`` and ``n_splits.txt``.
  """
  data_root = os.path.expanduser(data_root)
  if not os.path.isdir(data_root):
    raise FileNotFoundError(f"UCI data root not found: {data_root}")
  return sorted(
      d for d in os.listdir(data_root)
      if os.path.isfile(os.path.join(data_root, d, "data.txt"))
      and os.path.isfile(os.path.join(data_root, d, "n_splits.txt")))


# --------------------------------------------------------------------------
# scikit-learn shipped data (no downloads).


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
    mean, std = _mean_std(x, "breast cancer feature")
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
  mean, std = _mean_std(x_train, "standardise: x_train column")
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


# --------------------------------------------------------------------------
# Synthetic data (pure functions of a key; jittable with static sizes).


class GapData(NamedTuple):
  """1-D regression data with a gap in the inputs.

  Attributes:
    x: ``[N, 1]`` training inputs.
    y: ``[N]`` noisy targets ``f(x) + noise_std * eps``.
    x_grid: ``[G, 1]`` dense grid covering the data, the gap and beyond.
    f_grid: ``[G]`` noise-free ``f`` on the grid.
  """
  x: jax.Array
  y: jax.Array
  x_grid: jax.Array
  f_grid: jax.Array


def sine_2pi(x: jax.Array) -> jax.Array:
  """``sin(2 pi x)``, the default regression function of gap_regression."""
  return jnp.sin(2.0 * jnp.pi * x)


def gap_regression(key: jax.Array,
                   n: int = 100,
                   noise_std: float = 0.1,
                   *,
                   function: Callable[[jax.Array], jax.Array] = sine_2pi,
                   gap: tuple[float, float] = (-0.3, 0.3),
                   domain: tuple[float, float] = (-1.0, 1.0),
                   grid_range: tuple[float, float] = (-1.5, 1.5),
                   num_grid: int = 200) -> GapData:
  """1-D regression with no data in a gap: tests "in-between" uncertainty.

  Inputs are uniform on ``[domain[0], gap[0]] U [gap[1], domain[1]]``, half of
  the points (``n // 2``) on each side; by default
  ``x in [-1, -0.3] U [0.3, 1]`` and ``y = sin(2 pi x) + 0.1 eps``. A good
  predictive is confident near the data and uncertain inside the gap and
  outside the domain (Foong et al. 2019, "'In-between' uncertainty in Bayesian
  neural networks").

  Args:
    key: a JAX PRNG key.
    n: number of training points (static).
    noise_std: standard deviation of the Gaussian observation noise.
    function: the noise-free regression function ``f(x [N]) -> [N]``.
    gap: the interval left empty.
    domain: where training inputs live.
    grid_range: range of the test grid.
    num_grid: grid size ``G`` (static).

  Returns:
    :class:`GapData`.
  """
  lo, hi = domain
  g_lo, g_hi = gap
  if not lo < g_lo < g_hi < hi:
    raise ValueError(f"need domain[0] < gap[0] < gap[1] < domain[1], got "
                     f"domain={domain}, gap={gap}")
  if n < 2:
    raise ValueError(f"n must be >= 2, got {n}")
  return _gap_regression(key, n, noise_std, function, tuple(gap),
                         tuple(domain), tuple(grid_range), num_grid)


@functools.partial(jax.jit, static_argnums=(1, 3, 4, 5, 6, 7))
def _gap_regression(key, n, noise_std, function, gap, domain, grid_range,
                    num_grid) -> GapData:
  k_left, k_right, k_noise = jax.random.split(key, 3)
  n_left = n // 2
  left = jax.random.uniform(k_left, (n_left,), minval=domain[0],
                            maxval=gap[0])
  right = jax.random.uniform(k_right, (n - n_left,), minval=gap[1],
                             maxval=domain[1])
  x = jnp.concatenate([left, right])
  y = function(x) + noise_std * jax.random.normal(k_noise, (n,))
  grid = jnp.linspace(grid_range[0], grid_range[1], num_grid)
  return GapData(x=x[:, None], y=y, x_grid=grid[:, None], f_grid=function(grid))


@functools.partial(jax.jit, static_argnames=("num_tasks", "num_points"))
def sinusoid_tasks(key: jax.Array,
                   num_tasks: int,
                   num_points: int,
                   amplitude_range: tuple[float, float] = (0.1, 5.0),
                   phase_range: tuple[float, float] = (0.0, math.pi),
                   x_range: tuple[float, float] = (-5.0, 5.0)):
  """The sinusoid regression task distribution of MAML (Finn et al. 2017).

  Task ``t`` has amplitude ``A_t ~ U(amplitude_range)`` and phase
  ``phi_t ~ U(phase_range)``; its points are ``x ~ U(x_range)``,
  ``y = A_t sin(x - phi_t)`` (noise-free, as in the reference code).

  Args:
    key: a JAX PRNG key.
    num_tasks: ``T`` (static).
    num_points: ``K`` points per task (static).

  Returns:
    ``(x [T, K, 1], y [T, K, 1], amplitude [T], phase [T])``.
  """
  k_amp, k_phase, k_x = jax.random.split(key, 3)
  amplitude = jax.random.uniform(k_amp, (num_tasks,),
                                 minval=amplitude_range[0],
                                 maxval=amplitude_range[1])
  phase = jax.random.uniform(k_phase, (num_tasks,), minval=phase_range[0],
                             maxval=phase_range[1])
  x = jax.random.uniform(k_x, (num_tasks, num_points, 1), minval=x_range[0],
                         maxval=x_range[1])
  y = amplitude[:, None, None] * jnp.sin(x - phase[:, None, None])
  return x, y, amplitude, phase


@functools.partial(jax.jit, static_argnames=("num_sequences", "length"))
def noisy_sinusoid_sequences(key: jax.Array,
                             num_sequences: int,
                             length: int,
                             noise_std: float = 0.1,
                             amplitude_range: tuple[float, float] = (0.5, 1.5),
                             frequency_range: tuple[float, float] = (0.1, 0.5)):
  """Noisy sine sequences for next-value forecasting with an RNN.

  Sequence ``n`` is ``s_t = A_n sin(w_n t + phi_n) + noise_std * eps_t`` for
  ``t = 0..T`` with ``A ~ U(amplitude_range)``, angular frequency
  ``w ~ U(frequency_range)`` (radians per step) and ``phi ~ U(0, 2 pi)``.
  The input at step ``t`` is ``s_t`` and the target is the next observed value
  ``s_{t+1}``.

  Args:
    key: a JAX PRNG key.
    num_sequences: ``N`` (static).
    length: ``T`` steps (static).
    noise_std: observation noise standard deviation.

  Returns:
    ``(inputs [N, T, 1], targets [N, T, 1])`` with
    ``targets[:, t] == inputs[:, t + 1]`` for ``t < T - 1``.
  """
  k_amp, k_freq, k_phase, k_noise = jax.random.split(key, 4)
  shape = (num_sequences, 1)
  amp = jax.random.uniform(k_amp, shape, minval=amplitude_range[0],
                           maxval=amplitude_range[1])
  freq = jax.random.uniform(k_freq, shape, minval=frequency_range[0],
                            maxval=frequency_range[1])
  phase = jax.random.uniform(k_phase, shape, minval=0.0, maxval=2 * jnp.pi)
  t = jnp.arange(length + 1, dtype=jnp.float32)[None, :]
  series = amp * jnp.sin(freq * t + phase)
  series = series + noise_std * jax.random.normal(k_noise, series.shape)
  return series[:, :-1, None], series[:, 1:, None]
