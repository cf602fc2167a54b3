"""Smoke test of experiments/discrete_variance.py on its quick config.

Asserts numbers: on the toy (t = 0.45, optimum p = 0) REINFORCE and RELAX
both move p = sigmoid(theta) from 0.5 to below 0.3 in 200 Adam steps (lr
0.05; the exact gradient at p = 0.5 is 0.025 per step, so a stalled run
stays near 0.5), and RELAX's bias is never resolved at 4 SE; the SBN's test
ELBO rises with REBAR.
"""
import os

import numpy as np

from experiments import discrete_variance
from experiments.configs import discrete_variance as config_lib


def test_quick_run(tmp_path):
  config = config_lib.get_config("quick")
  res = discrete_variance.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "toy.png", "sbn.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  toy = {r["estimator"]: r for r in res["toy"]}
  for name in ("reinforce", "relax"):
    assert toy[name]["final_p_max"] < 0.3, toy[name]
  assert toy["relax"]["frac_bias_gt_4se"] == 0.0
  tr = res["toy_traces"]["relax@0.45"]
  assert np.all(np.isfinite(tr["variance"]))
  sbn = {r["estimator"]: r for r in res["sbn"]}
  assert sbn["rebar"]["final_test_elbo"] > sbn["rebar"]["initial_test_elbo"]
