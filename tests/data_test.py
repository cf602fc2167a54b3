"""Tests for jaxbdl.data: UCI layout parsing, standardisation, errors, toys."""
import os

import jax
import numpy as np
import pytest

from jaxbdl import data
from tests.helpers import FIXTURES, assert_mc_close, tol

# A 10 x 4 table. Column 1 is the TARGET (not last); column 2 is constant.
_TABLE = np.array(
    [[0.5, 10.0, 7.0, 1.0],
     [1.5, 12.0, 7.0, -1.0],
     [2.0, 9.0, 7.0, 0.5],
     [3.5, 15.0, 7.0, 2.0],
     [4.0, 11.0, 7.0, -0.5],
     [5.5, 8.0, 7.0, 1.5],
     [6.0, 14.0, 7.0, 0.0],
     [7.5, 13.0, 7.0, -2.0],
     [8.0, 10.5, 7.0, 3.0],
     [9.5, 16.0, 7.0, 0.25]])
_FEATURES = [0, 2, 3]
_TARGET = 1
# Three splits of 8 train / 2 test rows.
_TEST = [[0, 1], [4, 9], [2, 7]]


def _write(path, values, as_float=False):
  with open(path, "w") as f:
    for v in values:
      f.write(f"{float(v)}\n" if as_float else f"{int(v)}\n")


def _make_folder(root, name="toy", table=_TABLE, n_splits=3, test=None,
                 float_indices=True):
  d = os.path.join(str(root), name)
  os.makedirs(d)
  np.savetxt(os.path.join(d, "data.txt"), table, fmt="%.6g", delimiter="\t")
  with open(os.path.join(d, "data.txt"), "a") as f:
    f.write("\n")  # A trailing blank line, as in the real files.
  _write(os.path.join(d, "index_features.txt"), _FEATURES)
  _write(os.path.join(d, "index_target.txt"), [_TARGET])
  _write(os.path.join(d, "n_splits.txt"), [n_splits])
  _write(os.path.join(d, "n_hidden.txt"), [50])
  with open(os.path.join(d, "tau_values.txt"), "w") as f:
    f.write("0.25\n0.5\n")
  test = test or _TEST
  for k in range(n_splits):
    te = test[k]
    tr = [r for r in range(table.shape[0]) if r not in te]
    # Split 0 uses float indices ("3.0"), the others ints: both must parse.
    _write(os.path.join(d, f"index_train_{k}.txt"), tr,
           as_float=float_indices and k == 0)
    _write(os.path.join(d, f"index_test_{k}.txt"), te,
           as_float=float_indices and k == 0)
  return d


def test_load_uci_parses_layout(tmp_path):
  ds = data.load_uci(_make_folder(tmp_path))
  assert ds.name == "toy"
  assert ds.n_splits == 3
  np.testing.assert_array_equal(ds.data, _TABLE)
  np.testing.assert_array_equal(ds.feature_idx, _FEATURES)
  assert ds.target_idx == _TARGET
  np.testing.assert_array_equal(ds.test_idx[0], [0, 1])
  np.testing.assert_array_equal(ds.train_idx[1], [0, 1, 2, 3, 5, 6, 7, 8])
  assert ds.meta == {"n_hidden": 50, "tau_values": [0.25, 0.5]}


@pytest.mark.parametrize("split", [0, 1, 2])
def test_uci_split_standardises_with_training_statistics(tmp_path, split):
  ds = data.load_uci(_make_folder(tmp_path))
  s = data.uci_split(ds, split)
  te = np.array(_TEST[split])
  tr = np.setdiff1d(np.arange(10), te)
  x, y = _TABLE[:, _FEATURES], _TABLE[:, _TARGET]
  mean, std = x[tr].mean(0), x[tr].std(0)
  std[1] = 1.0  # The constant column gets std 1.
  # float32 storage of float64 arithmetic: a few float32 roundings.
  t32 = tol(np.float32, 8)
  np.testing.assert_allclose(s.x_mean, mean, **t32)
  np.testing.assert_allclose(s.x_std, std, **t32)
  assert s.x_std[1] == 1.0
  np.testing.assert_allclose(s.x_train, (x[tr] - mean) / std, **t32)
  np.testing.assert_allclose(s.x_test, (x[te] - mean) / std, **t32)
  np.testing.assert_allclose(s.x_train[:, 1], 0.0)
  np.testing.assert_allclose(s.y_mean, y[tr].mean(), **t32)
  np.testing.assert_allclose(s.y_std, y[tr].std(), **t32)
  # Training inputs/targets have mean 0, std 1 (except the constant column).
  np.testing.assert_allclose(s.y_train.mean(), 0.0, **t32)
  np.testing.assert_allclose(s.y_train.std(), 1.0, **t32)
  # De-normalisation round-trip.
  np.testing.assert_allclose(s.y_test * s.y_std + s.y_mean, y[te], **t32)
  np.testing.assert_allclose(s.y_test_raw, y[te], **t32)
  np.testing.assert_allclose(s.x_test * s.x_std + s.x_mean, x[te], **t32)
  assert s.x_train.dtype == np.float32 and s.y_std.dtype == np.float32
  assert s.x_train.shape == (8, 3) and s.y_test.shape == (2,)


def test_uci_stacked_splits(tmp_path):
  ds = data.load_uci(_make_folder(tmp_path))
  st = data.uci_stacked_splits(ds)
  assert st.x_train.shape == (3, 8, 3)
  assert st.y_test.shape == (3, 2)
  assert st.y_std.shape == (3,)
  one = data.uci_split(ds, 2)
  for a, b in zip(st, one):
    np.testing.assert_array_equal(a[2], b)
  sub = data.uci_stacked_splits(ds, [2, 0])
  np.testing.assert_array_equal(sub.x_test[0], one.x_test)


def test_uci_stacked_splits_rejects_unequal_sizes(tmp_path):
  d = _make_folder(tmp_path, test=[[0, 1], [4, 9, 5], [2, 7]])
  ds = data.load_uci(d)
  with pytest.raises(ValueError, match="sizes differ"):
    data.uci_stacked_splits(ds)
  assert data.uci_stacked_splits(ds, [0, 2]).x_train.shape == (2, 8, 3)


def test_list_uci_datasets(tmp_path):
  _make_folder(tmp_path, "b")
  _make_folder(tmp_path, "a")
  os.makedirs(tmp_path / "not_a_dataset")
  assert data.list_uci_datasets(str(tmp_path)) == ["a", "b"]
  with pytest.raises(FileNotFoundError, match="missing_root"):
    data.list_uci_datasets(str(tmp_path / "missing_root"))


def _corrupt(d, name, text):
  with open(os.path.join(d, name), "w") as f:
    f.write(text)


@pytest.mark.parametrize(
    "case, error, pattern",
    [("missing_dir", FileNotFoundError, "nope"),
     ("missing_index", FileNotFoundError, "index_test_2.txt"),
     ("missing_n_splits", FileNotFoundError, "n_splits.txt"),
     ("missing_data", FileNotFoundError, "data.txt"),
     ("nan", ValueError, r"data\.txt.*row 3.*column 2"),
     ("inf", ValueError, r"row 0.*column 0"),
     ("ragged", ValueError, "ragged"),
     ("row_out_of_range", ValueError,
      r"index_train_1\.txt.*10 is out of range"),
     ("column_out_of_range", ValueError, r"index_features\.txt.*7"),
     ("overlap", ValueError, "both train and test"),
     ("target_is_feature", ValueError, "also listed"),
     ("non_integer_index", ValueError, r"2\.5 is not an integer")])
def test_load_uci_errors(tmp_path, case, error, pattern):
  d = _make_folder(tmp_path)
  if case == "missing_dir":
    d = os.path.join(str(tmp_path), "nope")
  elif case == "missing_index":
    os.remove(os.path.join(d, "index_test_2.txt"))
  elif case == "missing_n_splits":
    os.remove(os.path.join(d, "n_splits.txt"))
  elif case == "missing_data":
    os.remove(os.path.join(d, "data.txt"))
  elif case in ("nan", "inf"):
    table = _TABLE.copy()
    if case == "nan":
      table[3, 2] = np.nan
    else:
      table[0, 0] = np.inf
    np.savetxt(os.path.join(d, "data.txt"), table)
  elif case == "ragged":
    _corrupt(d, "data.txt", "1 2 3 4\n1 2 3\n")
  elif case == "row_out_of_range":
    _corrupt(d, "index_train_1.txt", "0\n10\n")
  elif case == "column_out_of_range":
    _corrupt(d, "index_features.txt", "0\n7\n")
  elif case == "overlap":
    _corrupt(d, "index_train_0.txt", "0\n2\n3\n")
  elif case == "target_is_feature":
    _corrupt(d, "index_target.txt", "3\n")
  elif case == "non_integer_index":
    _corrupt(d, "index_test_1.txt", "2.5\n")
  with pytest.raises(error, match=pattern):
    data.load_uci(d)


@pytest.mark.parametrize("split", [-1, 3])
def test_uci_split_out_of_range(tmp_path, split):
  ds = data.load_uci(_make_folder(tmp_path))
  with pytest.raises(ValueError, match="out of range"):
    data.uci_split(ds, split)


_FORMAT_HEAD = os.path.join(FIXTURES, "uci", "format_head")


def test_real_format_fixture():
  """A synthetic 20-row data set in the real file layout (tests/fixtures/uci)."""
  assert data.list_uci_datasets(os.path.dirname(_FORMAT_HEAD)) == ["format_head"]
  ds = data.load_uci(_FORMAT_HEAD)
  assert ds.data.shape == (20, 7) and ds.n_splits == 2
  np.testing.assert_array_equal(ds.feature_idx, np.arange(6))
  assert ds.target_idx == 6
  np.testing.assert_array_equal(
      ds.data, np.loadtxt(os.path.join(_FORMAT_HEAD, "data.txt")))
  s = data.uci_split(ds, 1)
  tr = ds.train_idx[1]
  y = ds.data[tr, 6]
  np.testing.assert_allclose(s.y_mean, y.mean(), **tol(np.float32))
  np.testing.assert_allclose(s.y_std, y.std(), **tol(np.float32))
  # Column 0 is constant (-2.3): std set to 1.
  assert s.x_std[0] == 1.0


_UCI_ROWS = {"concrete": 1030, "energy": 768, "kin8nm": 8192,
             "power-plant": 9568, "wine-quality-red": 1599, "yacht": 308}


@pytest.mark.experiment
@pytest.mark.skipif(not os.environ.get("JAXBDL_UCI_ROOT"),
                    reason="set JAXBDL_UCI_ROOT to the folder of UCI data sets")
@pytest.mark.parametrize("name", sorted(_UCI_ROWS))
def test_real_uci_datasets(name):
  root = os.environ["JAXBDL_UCI_ROOT"]
  assert name in data.list_uci_datasets(root)
  ds = data.load_uci(os.path.join(root, name))
  assert ds.data.shape[0] == _UCI_ROWS[name]
  assert ds.n_splits == 20 and len(ds.train_idx) == 20
  n = ds.data.shape[0]
  for tr, te in zip(ds.train_idx, ds.test_idx):
    assert tr.size + te.size == n
    assert te.size == round(0.1 * n) or te.size == int(0.1 * n) + 1
  s = data.uci_split(ds, 0)
  assert s.x_train.shape == (ds.train_idx[0].size, ds.feature_idx.size)


@pytest.mark.parametrize("scale", [1e30, 1e-30, 1e-10, 1e10])
def test_standardise_is_scale_invariant(scale):
  """Oracle: standardising c * x gives the arrays of x, mean and std times c."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 3)) + 3.0
  (a,), mean, std = data.standardise(x)
  (b,), mean_c, std_c = data.standardise(scale * x)
  np.testing.assert_allclose(b, a, **tol(np.float32, 64))
  np.testing.assert_allclose(mean_c, scale * mean, **tol(np.float32, 64))
  np.testing.assert_allclose(std_c, scale * std, **tol(np.float32, 64))


@pytest.mark.parametrize("value, pattern", [
    (1e200, "training mean 2e\\+200 is beyond float32's range"),
    (1e-300, "training std 8.16e-301 is below float32's smallest normal"),
])
def test_standardise_refuses_what_float32_cannot_hold(value, pattern):
  x = value * np.array([[1.0], [2.0], [3.0]])
  with pytest.raises(ValueError, match=pattern):
    data.standardise(x)


def test_uci_split_refuses_huge_targets(tmp_path):
  table = _TABLE.copy()
  table[:, _TARGET] *= 1e200
  ds = data.load_uci(_make_folder(tmp_path, table=table))
  with pytest.raises(ValueError, match="toy split 0: target: training mean"):
    data.uci_split(ds, 0)


def test_latin1_byte_names_file_and_line(tmp_path):
  d = _make_folder(tmp_path)
  with open(os.path.join(d, "data.txt"), "ab") as f:
    f.write(b"1 2 3 4\n5 caf\xe9 7 8\n")
  with pytest.raises(ValueError, match=r"data.txt: line 13: byte b'\\xe9' "
                     "at column 6 is not UTF-8"):
    data.load_uci(d)


def test_huge_index_is_reported_as_written(tmp_path):
  d = _make_folder(tmp_path)
  with open(os.path.join(d, "index_test_1.txt"), "w") as f:
    f.write("4\n1e20\n")
  with pytest.raises(ValueError, match=r"index_test_1.txt: line 2: row index "
                     r"1e\+20 is out of range \[0, 10\)"):
    data.load_uci(d)


# ---------------------------------------------------------------------------
# scikit-learn data and helpers.


def test_sklearn_loaders():
  images, labels = data.load_digits()
  assert images.shape == (1797, 8, 8) and images.dtype == np.float32
  assert images.min() == 0.0 and images.max() == 1.0
  assert labels.dtype == np.int32 and set(np.unique(labels)) == set(range(10))
  x, y = data.load_breast_cancer(add_bias=True)
  assert x.shape == (569, 31) and y.shape == (569,)
  np.testing.assert_allclose(x[:, -1], 1.0)
  # float32 sums of 569 standardised values: <= 569 roundings (worst case).
  np.testing.assert_allclose(x[:, :-1].mean(0), 0.0, **tol(np.float32, 569))
  np.testing.assert_allclose(x[:, :-1].std(0), 1.0, **tol(np.float32, 569))
  x, y = data.load_diabetes()
  assert x.shape == (442, 10) and y.shape == (442,) and y.min() >= 25


@pytest.mark.parametrize("seed_kind", ["int", "key"])
def test_train_test_split_arrays_is_deterministic(seed_kind):
  x = np.arange(20, dtype=np.float32)[:, None]
  y = np.arange(20)
  seed = 3 if seed_kind == "int" else jax.random.key(3)
  a = data.train_test_split_arrays(seed, x, y, 0.25)
  b = data.train_test_split_arrays(seed, x, y, 0.25)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
  x_tr, y_tr, x_te, y_te = a
  assert x_tr.shape == (15, 1) and x_te.shape == (5, 1)
  np.testing.assert_array_equal(x_tr[:, 0], y_tr)
  assert sorted(np.concatenate([y_tr, y_te]).tolist()) == list(range(20))
  with pytest.raises(ValueError, match="test_fraction"):
    data.train_test_split_arrays(0, x, y, 1.0)


def test_standardise():
  x_tr = np.array([[1.0, 5.0], [3.0, 5.0]])
  x_te = np.array([[2.0, 6.0]])
  (a, b), mean, std = data.standardise(x_tr, x_te)
  np.testing.assert_allclose(mean, [2.0, 5.0])
  np.testing.assert_allclose(std, [1.0, 1.0])  # Constant column -> std 1.
  np.testing.assert_allclose(a, [[-1.0, 0.0], [1.0, 0.0]])
  np.testing.assert_allclose(b, [[0.0, 1.0]])
  with pytest.raises(ValueError, match="x_others"):
    data.standardise(x_tr, np.array([[np.nan, 1.0]]))


def test_check_shape():
  data.check_shape("x", np.zeros((3, 2)), (None, 2))
  with pytest.raises(ValueError,
                     match=r"x has shape \[3, 2\], expected \[\?, 4\]"):
    data.check_shape("x", np.zeros((3, 2)), (None, 4))


# ---------------------------------------------------------------------------
# Synthetic data.


def test_gap_regression():
  d = data.GapData(*(np.asarray(a) for a in data.gap_regression(
      jax.random.key(0), n=200, noise_std=0.1)))
  assert d.x.shape == (200, 1) and d.y.shape == (200,)
  x = np.asarray(d.x[:, 0])
  assert np.all(np.abs(x) >= 0.3) and np.all(np.abs(x) <= 1.0)
  assert np.sum(x < 0) == 100
  # Residuals are N(0, 0.1^2): their sample std is within 5 SE of 0.1, with
  # SE(std) ~= 0.1 / sqrt(2 n).
  resid = np.asarray(d.y) - np.sin(2 * np.pi * x)
  assert abs(resid.std() - 0.1) < 5 * 0.1 / np.sqrt(2 * 200)
  # Mean 0 and variance 0.01, each within k = 4 SE computed from the draws
  # (false-alarm rate ~6e-5 per check).
  assert_mc_close(resid, 0.0, k=4)
  assert_mc_close(resid ** 2, 0.1 ** 2, k=4)
  assert d.x_grid.shape == (200, 1)
  assert float(d.x_grid.min()) < -1.0 and float(d.x_grid.max()) > 1.0
  # float32 sin of arguments up to 3 pi: a few ulps of the argument.
  np.testing.assert_allclose(d.f_grid, np.sin(2 * np.pi * d.x_grid[:, 0]),
                             **tol(np.float32, 64))


def test_sinusoid_tasks():
  x, y, amp, phase = (np.asarray(a) for a in
                      data.sinusoid_tasks(jax.random.key(1), 8, 10))
  assert x.shape == (8, 10, 1) and y.shape == (8, 10, 1)
  assert amp.shape == (8,) and phase.shape == (8,)
  assert float(amp.min()) >= 0.1 and float(amp.max()) <= 5.0
  assert float(phase.min()) >= 0.0 and float(phase.max()) <= np.pi
  assert np.abs(x).max() <= 5.0
  # float32 amplitude (<= 5) times sin of arguments up to 5 + pi.
  np.testing.assert_allclose(
      y, amp[:, None, None] * np.sin(x - phase[:, None, None]),
      **tol(np.float32, 5 * 64))
  # x ~ U(-5, 5): mean 0, E[x^2] = 25/3, within k = 4 SE of the 80 draws.
  assert_mc_close(x.reshape(-1), 0.0, k=4)
  assert_mc_close(x.reshape(-1) ** 2, 25.0 / 3.0, k=4)


def test_noisy_sinusoid_sequences():
  inputs, targets = map(np.asarray, data.noisy_sinusoid_sequences(
      jax.random.key(2), 4, 12, 0.1))
  assert inputs.shape == (4, 12, 1) and targets.shape == (4, 12, 1)
  np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
