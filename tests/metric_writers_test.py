"""TensorBoard event files: written by jaxbdl.evaluation.metric_writers, read back."""
import os

import numpy as np
import pytest

from experiments import fit
from experiments.configs import fit as fit_config
from jaxbdl.evaluation import metric_writers


def test_history_round_trips_through_event_file(tmp_path):
  hist = {"loss": np.array([3.0, 2.0, np.nan]),
          "elbo": np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]),
          "best_epoch": np.int32(1)}
  with metric_writers.open_run(str(tmp_path), "run") as w:
    n = w.write_history(hist, prefix="train/")
    w.write_scalars(0, {"test/rmse": 0.25, "test/bad": float("inf")})
  assert n == 5       # 2 finite loss points + 3 elbo points (mean over K)
  got = metric_writers.read_scalars(os.path.join(tmp_path, "run"))
  assert got["train/loss"] == [(1, 3.0), (2, 2.0)]
  assert got["train/elbo"] == [(1, 2.0), (2, 3.0), (3, 4.0)]
  assert got["test/rmse"] == [(0, 0.25)]
  assert "test/bad" not in got and "train/best_epoch" not in got


def test_read_scalars_names_missing_folder(tmp_path):
  with pytest.raises(FileNotFoundError, match="no events.out.tfevents"):
    metric_writers.read_scalars(str(tmp_path))


def test_fit_writes_curves_matching_results(tmp_path):
  rng = np.random.RandomState(0)
  x = rng.randn(64, 2).astype(np.float32)
  y = x @ np.array([1.0, -1.0], np.float32)
  path = os.path.join(tmp_path, "d.npz")
  np.savez(path, x_train=x, y_train=y, x_test=x[:16], y_test=y[:16])
  c = fit_config.get_config("quick")
  c.num_epochs = 3
  res = fit.run(c, str(tmp_path), path, "map")
  got = metric_writers.read_scalars(os.path.join(tmp_path, "map"))
  assert [s for s, _ in got["train/loss"]] == [1, 2, 3]
  (step, rmse), = got["test/rmse"]
  assert step == 0
  np.testing.assert_allclose(rmse, res["methods"]["map"]["rmse"], rtol=1e-6)
