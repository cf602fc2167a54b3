"""Smoke test of ``experiments/laplace_regression.py`` on its quick config.

Asserts numbers: the evidence-fitted noise scale of the full Laplace is
within 0.1 of the true 0.3 (N = 150: its sampling SE is ``0.3 / sqrt(300) =
0.017``, and the MAP's fit adds a few hundredths), the prior precision is
positive and finite, and the files exist.
"""
import json
import os

import numpy as np

from experiments import laplace_regression
from experiments.configs import laplace_regression as cfg


def test_quick_run(tmp_path):
  res = laplace_regression.run(cfg.get_config("quick"), str(tmp_path))
  full = [r for r in res["rows"] if r["structure"] == "full"][0]
  assert abs(full["sigma_noise"] - 0.3) < 0.1, full
  assert 0 < full["prior_precision"] < np.inf
  assert np.isfinite(full["test_ll_laplace"])
  for name in ("results.json", "results.md", "predictive.png"):
    assert os.path.exists(tmp_path / name)
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["published"]["sigma_noise"] == 0.28
