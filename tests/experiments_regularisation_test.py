"""Smoke test of experiments.regularisation on its quick config."""
import os

import numpy as np

from experiments import regularisation
from experiments.configs import regularisation as config_lib


def test_quick_run_trains_every_variant(tmp_path):
  config = config_lib.get_config("quick")
  res = regularisation.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "regularisation.png"):
    assert os.path.exists(tmp_path / name)
  rows = {r["variant"]: r for r in res["rows"]}
  assert set(rows) == set(config.variants)
  # Chance is 0.1; a few epochs of Adam on digits reach well above 0.7.
  for r in rows.values():
    assert r["test acc"] > 0.7, r
  # The best epoch (1-based) is what early stopping restored; it lies in
  # the run.
  assert 1 <= rows["early_stopping"]["best epoch"] <= config.num_epochs
  loss = np.asarray(res["curves"]["plain"]["loss"], np.float64)
  assert np.all(loss[:, -1] < loss[:, 0])
