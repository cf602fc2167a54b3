"""Smoke test of experiments.nngp_convergence on its quick config."""
import os

import numpy as np
import pytest

from experiments import nngp_convergence
from experiments.configs import nngp_convergence as config_lib


def test_quick_run_error_falls_like_inverse_sqrt_width(tmp_path):
  config = config_lib.get_config("quick")
  res = nngp_convergence.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "convergence.png"):
    assert os.path.exists(tmp_path / name)
  rows = res["rows"]
  assert [r["width"] for r in rows] == list(config.widths)
  errors = np.array([r["rms_rel_error"] for r in rows])
  assert np.all(np.diff(errors) < 0), errors
  slope = {(s["activation"], s["quantity"]): s for s in res["slopes"]}[
      ("relu", "rms_rel_error")]
  # Theory: -1/2 (module docstring). Each point's log-RMS has relative SE
  # ~ 1/sqrt(2 S) ~ 0.09 at S = 64 inits, i.e. slope SE ~ 0.05 over widths
  # 16..1024, plus O(1/n) curvature at small widths: accept -1/2 +- 0.25.
  assert -0.75 < slope["slope"] < -0.25, slope


def test_unknown_activation_raises(tmp_path):
  config = config_lib.get_config("quick")
  with config.unlocked():
    config.activations = ("softsign",)
  with pytest.raises(ValueError, match="unknown activation"):
    nngp_convergence.run(config, str(tmp_path))
