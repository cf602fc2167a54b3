"""Smoke test of experiments.nngp_regression on its quick config.

Each method is a separately compiled program per data shape (~5-10 s CPU), so
the default-suite test runs the NNGP GP alone on the gap data and on a tiny
synthetic folder in the standard UCI layout; the tests marked ``experiment``
run all four methods (synthetic folder, and the real yacht data if present).
"""
import math
import os

import numpy as np
import pytest

from experiments import nngp_regression
from experiments.configs import nngp_regression as config_lib

UCI_YACHT = os.path.join(os.environ.get("JAXBDL_UCI_ROOT", "../shared/data/uci"),
                         "yacht")  # an experiment-marked test; set the root


def _write_uci_folder(path, rows, train, features=1, splits=1, seed=0):
  """A synthetic data set in the standard layout (y = 3 x0 + noise + 10)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(rows, features))
  y = 10.0 + 3.0 * x[:, 0] + 0.3 * rng.normal(size=rows)
  os.makedirs(path)
  np.savetxt(os.path.join(path, "data.txt"), np.c_[x, y])
  np.savetxt(os.path.join(path, "index_features.txt"), np.arange(features),
             fmt="%d")
  np.savetxt(os.path.join(path, "index_target.txt"), [features], fmt="%d")
  np.savetxt(os.path.join(path, "n_splits.txt"), [splits], fmt="%d")
  for k in range(splits):
    perm = np.random.default_rng(k).permutation(rows)
    np.savetxt(os.path.join(path, f"index_train_{k}.txt"), perm[:train],
               fmt="%d")
    np.savetxt(os.path.join(path, f"index_test_{k}.txt"), perm[train:],
               fmt="%d")
  return path, float(np.std(y))


def _check_quick_run(config, tmp_path):
  # One 1-feature split with the gap data's shapes (train 40, evaluation
  # 40 + 50 + 20 + 50 = 160 points), so the compiled programs are reused.
  g = config.gap
  n_eval = g.num_train + g.num_test + g.num_gap_test + g.num_grid
  uci_dir, y_std = _write_uci_folder(str(tmp_path / "synthetic"),
                                     rows=g.num_train + n_eval,
                                     train=g.num_train)
  res = nngp_regression.run(config, str(tmp_path / "out"), [uci_dir])
  for name in ("results.json", "results.md", "gap_predictive.png"):
    assert os.path.exists(tmp_path / "out" / name)
  gap = {(r["method"], r["split"]): r for r in res["gap_rows"]}
  info = res["gap_info"]
  # Type-II ML and MAP/VI training improved their objectives.
  for method in config.methods:
    if method.endswith("_gp"):
      assert info[method]["neg_lml_last"] < info[method]["neg_lml_first"]
    else:
      assert info[method]["loss_last"] < info[method]["loss_first"]
  # Each beats the best constant Gaussian predictor of y = sin(2 pi x) + 0.1 eps
  # on the training inputs (var ~ 1/2 + 0.01, LL = -log(2 pi e 0.51) / 2 =
  # -1.08 nats): a clear margin of 0.1 nats.
  # Not mean-field VI: with an N(0, 1) prior on a 16 x 16 net and 40 points
  # the KL term dominates and its predictive stays at the constant predictor
  # (measured train LL -1.07, -1.24, -1.23 after 400, 1500, 4000 epochs while
  # its ELBO loss fell 2.73 -> 2.07), the known pathology of mean-field BNNs
  # on small data (Trippe & Turner 2018, "Overpruning in variational BNNs";
  # Coker et al. 2022, "Wide mean-field BNNs ignore the data"). Its claim
  # here is only the objective's improvement, asserted above.
  const_ll = -0.5 * math.log(2 * math.pi * math.e * 0.51)
  for method in config.methods:
    if method != "mfvi_bnn":
      assert gap[(method, "train")]["log_lik"] > const_ll + 0.1, gap
  # UCI path: original units, finite, and better than predicting the mean
  # (RMSE y_std) on the near-linear synthetic data.
  uci = {r["method"]: r for r in res["uci_rows"]}
  assert set(uci) == set(config.methods)
  for r in uci.values():
    assert r["num_splits"] == 1 and np.isfinite(r["log_lik"])
    assert r["rmse"] < 0.5 * y_std, r


def test_quick_run_nngp_gp_gap_and_uci_layout(tmp_path):
  config = config_lib.get_config("quick")
  with config.unlocked():
    config.methods = ("nngp_gp",)
  _check_quick_run(config, tmp_path)


@pytest.mark.experiment
def test_quick_run_all_methods(tmp_path):
  _check_quick_run(config_lib.get_config("quick"), tmp_path)


def test_missing_data_dir_raises_before_training(tmp_path):
  config = config_lib.get_config("quick")
  with pytest.raises(FileNotFoundError, match="not found"):
    nngp_regression.run(config, str(tmp_path), [str(tmp_path / "nope")])


@pytest.mark.experiment
@pytest.mark.skipif(not os.path.isdir(UCI_YACHT), reason="no UCI yacht data")
def test_quick_run_all_methods_on_yacht(tmp_path):
  config = config_lib.get_config("quick")
  res = nngp_regression.run(config, str(tmp_path), [UCI_YACHT])
  rows = {r["method"]: r for r in res["uci_rows"]}
  assert set(rows) == set(nngp_regression.METHODS)
  for r in rows.values():
    assert np.isfinite(r["rmse"]) and np.isfinite(r["log_lik"])
    assert r["rmse"] < 15.0     # yacht target std ~15: better than the mean
