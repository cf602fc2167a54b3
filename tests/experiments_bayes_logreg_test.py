"""Smoke test of experiments/bayes_logreg.py on its quick config.

Asserts numbers: with the pathwise estimator the ELBO rises by more than 100
nats from its initial value (about -382 at q = N(0, 0.1^2)) and the test
accuracy of the posterior predictive exceeds 0.9; the delta-method control
variate keeps the score-function gradient variance finite and training
stable (its ELBO also rises).
"""
import os

import numpy as np

from experiments import bayes_logreg
from experiments.configs import bayes_logreg as config_lib


def test_quick_run(tmp_path):
  config = config_lib.get_config("quick")
  res = bayes_logreg.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "training.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  assert res["dim"] == 31
  rows = {r["estimator"]: r for r in res["summary"]}
  pw = rows["pathwise"]
  assert pw["final_elbo"] > pw["initial_elbo"] + 100.0
  assert pw["test_accuracy"] > 0.9
  tr = res["traces"]["pathwise"]
  assert tr["elbo"].shape == (config.num_seeds,
                              config.num_steps // config.eval_every + 1)
  assert np.all(np.isfinite(tr["grad_variance"]))
  cv = rows["score_function_delta"]
  assert cv["final_elbo"] > cv["initial_elbo"] + 100.0
  assert np.isfinite(cv["mean_log10_grad_var"])
