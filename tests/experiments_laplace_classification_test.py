"""Smoke test of ``experiments/laplace_classification.py`` on its quick config.

Asserts numbers: 10 balanced classes, so chance accuracy is 0.1; a 1 x 16
MLP after 6 epochs is far above it: the MAP and the KFAC Laplace (GLM +
probit) must both exceed 0.5 (the binomial SE of an accuracy on 359 test
digits is at most 0.026, so 0.5 is > 15 SE above chance); the Laplace NLL,
ECE, Brier and fitted prior precision are finite (and the precision > 0);
the output files and TensorBoard scalars exist.
"""
import json
import os

import numpy as np

from experiments import laplace_classification
from experiments.configs import laplace_classification as cfg
from jaxbdl.evaluation import metric_writers


def test_quick_run(tmp_path):
  res = laplace_classification.run(cfg.get_config("quick"), str(tmp_path))
  mlp = res["networks"]["mlp"]
  acc_map = mlp["map"]["scores"]["accuracy"]["mean"]
  acc_la = mlp["kfac"]["scores"]["accuracy"]["mean"]
  assert acc_map > 0.5, acc_map
  assert acc_la > 0.5, acc_la
  for k in ("nll", "ece", "brier"):
    assert np.isfinite(mlp["kfac"]["scores"][k]["mean"]), k
  assert np.all(np.isfinite(mlp["kfac"]["prior_precision"]))
  assert np.all(np.asarray(mlp["kfac"]["prior_precision"]) > 0)
  for name in ("results.json", "results.md", "reliability.png"):
    assert os.path.exists(tmp_path / name), name
  with open(tmp_path / "results.json") as f:
    stored = json.load(f)
  assert stored["published"]["ece_laplace"] == 0.008
  assert "git_commit" in stored["provenance"]
  tags = metric_writers.read_scalars(str(tmp_path / "mlp_kfac"))
  assert "test/ece" in tags
