"""Smoke test of experiments.curve_fitting on its quick config."""
import json
import os

from experiments import curve_fitting
from experiments.configs import curve_fitting as config_lib


def test_quick_run_shows_overfitting_and_regularisation(tmp_path):
  res = curve_fitting.run(config_lib.get_config("quick"), str(tmp_path))
  for name in ("results.json", "results.md", "curve_fitting.png"):
    assert os.path.exists(tmp_path / name)
  poly = res["polynomial"]
  # ML training error cannot increase with degree (nested least squares);
  # exact float64 least squares: slack at float64 rounding of O(1) targets.
  train = [r["ml train"] for r in poly]
  assert all(b <= a + 1e-9 for a, b in zip(train, train[1:]))
  # Degree 9 on 10 points interpolates: no hidden ridge holds it back.
  assert poly[9]["ml train"] < 1e-8
  # Degree 9 on 10 points overfits; either prior brings test error down.
  assert poly[9]["ml test"] > 2 * poly[9]["gaussian test"]
  assert poly[9]["ml test"] > 2 * poly[9]["laplace test"]
  assert all(r["loss fell"] for r in res["mlp"])
  # results.json says where its numbers came from.
  with open(tmp_path / "results.json") as f:
    prov = json.load(f)["provenance"]
  assert len(prov["git_commit"]) == 40 and prov["versions"]["jax"]
  assert prov["command"]  # sys.argv of the process (pytest workers: "-c")
