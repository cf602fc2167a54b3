"""Tests of experiments.sgld_digits: per-chain scores and a quick run."""
import json
import os

import numpy as np
import pytest

from experiments import sgld_digits
from experiments.configs import sgld_digits as config_lib


def test_chain_scores_against_hand_computation():
  # 1 chain, 2 draws, 2 points, 2 classes; labels [0, 1].
  probs = np.array([[[[0.6, 0.4], [0.7, 0.3]],
                     [[0.2, 0.8], [0.1, 0.9]]]])
  y = np.array([0, 1])
  s = sgld_digits.chain_scores(probs, y)
  np.testing.assert_allclose(s["acc_last"], [0.5])   # draw 2: [1, 1]
  np.testing.assert_allclose(s["acc_avg"], [0.5])    # mean: [.4 .6], [.4 .6]
  np.testing.assert_allclose(s["nll_last"], [-(np.log(0.2) + np.log(0.9)) / 2])
  np.testing.assert_allclose(s["nll_avg"], [-(np.log(0.4) + np.log(0.6)) / 2])
  np.testing.assert_allclose(s["acc_running"], [[0.5, 0.5]])


def test_quick_run_writes_outputs_and_beats_chance(tmp_path):
  config = config_lib.get_config("quick")
  res = sgld_digits.run(config, str(tmp_path))
  rows = {r["predictive"]: r for r in res["rows"]}
  # Chance is 0.1; 360 test images: SE of an accuracy near 0.9 is 0.016, so
  # > 0.8 is far above chance and well within reach of 15 epochs.
  assert rows["averaged"]["test_accuracy"] > 0.8
  assert rows["last draw"]["test_accuracy"] > 0.8
  assert res["learning_rate"] == pytest.approx(0.1)
  assert res["num_test"] == 359  # round(0.2 * 1797)
  for name in ("results.json", "results.md", "sgld_digits.png"):
    assert os.path.exists(tmp_path / name)
  with open(tmp_path / "results.json") as f:
    assert "provenance" in json.load(f)
