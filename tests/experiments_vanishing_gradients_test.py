"""Smoke test of experiments.vanishing_gradients on its quick config."""
import os

import numpy as np

from experiments import vanishing_gradients
from experiments.configs import vanishing_gradients as config_lib


def test_quick_run_shows_vanishing_sigmoid_and_flat_relu_he(tmp_path):
  config = config_lib.get_config("quick")
  res = vanishing_gradients.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "vanishing_gradients.png"):
    assert os.path.exists(tmp_path / name)
  rows = {(r["activation"], r["init"]): r for r in res["rows"]}
  # Sigmoid with N(0, 0.01^2) weights: each layer multiplies the error term by
  # about 0.01 * sqrt(width) * max sigmoid' (0.25) = 0.01, so the first-layer
  # delta is orders of magnitude below the last; ReLU + He keeps it O(1).
  assert rows[("sigmoid", "normal(0.01)")]["delta ratio (init)"] < 1e-3
  assert 0.2 < rows[("relu", "he(1)")]["delta ratio (init)"] < 5.0
  assert np.isfinite(rows[("relu", "he(1)")]["train loss"])
