"""End-to-end smoke test of experiments.posterior_quality on its quick config."""
import json
import os

import numpy as np
import pytest

from experiments import posterior_quality
from experiments.configs import posterior_quality as config_lib


@pytest.mark.slow  # a NUTS reference + MAP: compile-bound
def test_quick_run_writes_results_and_reference_beats_map(tmp_path):
  config = config_lib.get_config("quick")
  # MAP only: ``compare`` is method-agnostic (a predictive mixture against
  # the reference's); SWAG's fit and predictive are checked by
  # tests/swag_test.py, and each method costs a compile here.
  config.methods = "map"
  res = posterior_quality.run(config, str(tmp_path))
  rows = {(r["task"], r["method"]): r for r in res["rows"]}
  assert set(rows) == {("gap", "reference"), ("gap", "map")}
  assert rows[("gap", "reference")]["w2"] == 0.0
  assert rows[("gap", "reference")]["rhat_max"] >= 0.99  # split R-hat, preds
  assert all(np.isfinite(r["w2"]) and r["w2"] >= 0 for r in rows.values())
  # A point estimate is overconfident in the gap and beyond the data: its
  # test NLL on the grid is far worse than the NUTS predictive's (quick run:
  # ~45 vs ~1.3 nats).
  assert (rows[("gap", "map")]["test_nll"]
          > rows[("gap", "reference")]["test_nll"] + 5.0)
  for name in ("results.json", "results.md", "posterior_quality.png"):
    assert os.path.exists(tmp_path / name)
  with open(tmp_path / "results.json") as f:
    assert len(json.load(f)["rows"]) == 2


def test_w2_gaussian_closed_form():
  # W2(N(0, 1), N(3, 4)) = sqrt(3^2 + (1 - 2)^2).
  np.testing.assert_allclose(
      posterior_quality.w2_gaussian(0.0, 1.0, 3.0, 4.0), np.sqrt(10.0),
      rtol=1e-6)
