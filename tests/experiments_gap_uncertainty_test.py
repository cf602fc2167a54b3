"""Smoke tests of experiments.gap_uncertainty on its quick config."""
import os

import pytest

from experiments import gap_uncertainty
from experiments.configs import gap_uncertainty as config_lib

# Predicting the mean gives RMSE ~0.7 against f = sin(2 pi x); a network stuck
# with all its ReLU kinks in the gap (one line per cluster) gives 0.43.
RMSE_BOUND = 0.25


def test_quick_run_fits_every_method(tmp_path):
  config = config_lib.get_config("quick")
  res = gap_uncertainty.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "gap_uncertainty.png"):
    assert os.path.exists(tmp_path / name)
  rows = {r["method"]: r for r in res["rows"]}
  assert set(rows) == set(config.methods)
  for name, r in rows.items():
    assert r["finite"], name
    assert r["loss fell"], name
    assert r["rmse vs f (data)"] < RMSE_BOUND, (name, r["rmse vs f (data)"])
    assert r["noise sd"] == pytest.approx(config.model.noise_scale, rel=1e-4)
  # MAP's predictive is the fixed noise alone; the others add epistemic sd.
  for region in ("data", "gap", "outside"):
    assert rows["map"][f"sd {region}"] == pytest.approx(
        config.model.noise_scale, rel=1e-4)
  # MAP's "epistemic" sd is the float residual of sqrt(var - noise^2); the
  # others must be well above it (20x) everywhere.
  resid = max(rows["map"]["epistemic sd data"], 1e-6)
  for name in ("mfvi", "mc_dropout", "ensemble"):
    assert rows[name]["epistemic sd data"] > 20 * resid, name
    assert rows[name]["sd outside"] > rows[name]["sd data"], name


def test_quick_run_learns_noise(tmp_path):
  config = config_lib.get_config("quick")
  config.methods = ("map",)
  config.model.noise_scale = 0.0  # Learned, initialised at 0.5 y-sd (~0.35).
  (row,) = gap_uncertainty.run(config, str(tmp_path))["rows"]
  assert row["loss fell"] and row["finite"]
  assert 0.05 < row["noise sd"] < 0.2, row["noise sd"]
  assert row["rmse vs f (data)"] < RMSE_BOUND
