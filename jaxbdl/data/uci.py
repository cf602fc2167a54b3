"""The UCI regression benchmark in its standard 20-split layout.

The layout of Hernández-Lobato & Adams (2015) and Gal & Ghahramani (2016):
:func:`load_uci` reads a folder, :func:`uci_split` standardises one split with
*training* statistics and :func:`uci_stacked_splits` stacks splits on a
leading axis ``[S, ...]`` so that all splits train as one ``jax.vmap``-ed
program. The data path is always given by the caller; nothing is downloaded
or copied. A missing file, a NaN, a ragged row or an index out of range
raises ``FileNotFoundError`` / ``ValueError`` naming the file, row and
column.

References:
  Hernández-Lobato & Adams (2015), Probabilistic backpropagation for scalable
    learning of Bayesian neural networks, ICML (the UCI splits).
  Gal & Ghahramani (2016), Dropout as a Bayesian approximation, ICML.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Optional, Sequence

import numpy as np

from jaxbdl.data.preprocessing import training_mean_std

__all__ = ["UCIDataset", "UCISplit", "load_uci", "uci_split",
           "uci_stacked_splits", "list_uci_datasets"]


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
  x_mean, x_std = training_mean_std(x[tr], f"{where}: feature column")
  y_mean, y_std = training_mean_std(y[tr], f"{where}: target")
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

