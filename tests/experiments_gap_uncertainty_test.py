"""Smoke test of experiments.gap_uncertainty on its quick config."""
import os

import numpy as np

from experiments import gap_uncertainty
from experiments.configs import gap_uncertainty as config_lib


def test_quick_run_writes_bands(tmp_path):
  res = gap_uncertainty.run(config_lib.get_config("quick"), str(tmp_path))
  for name in ("results.json", "results.md", "gap_uncertainty.png"):
    assert os.path.exists(tmp_path / name)
  rows = {r["method"]: r for r in res["rows"]}
  assert set(rows) == {"map", "mfvi"}
  assert rows["mfvi"]["loss fell"]
  for r in rows.values():
    assert np.isfinite(r["sd gap"]) and r["sd gap"] > 0
    # Predictive sd of a model with learned noise stays within sane bounds of
    # the data's scale (targets have sd ~0.7).
    assert r["sd data"] < 2.0
