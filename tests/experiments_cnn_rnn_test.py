"""End-to-end smoke test of experiments.cnn_rnn on its quick config."""
import json
import os

import pytest

from experiments import cnn_rnn
from experiments.configs import cnn_rnn as cnn_rnn_config


def test_quick_run_writes_outputs_and_learns(tmp_path):
  config = cnn_rnn_config.get_config("quick")
  res = cnn_rnn.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "learning_curves.png",
               "forecast.png"):
    assert os.path.exists(tmp_path / name), name
  with open(tmp_path / "results.json") as f:
    stored = json.load(f)
  # 10 classes: chance is 0.1; even 3 tiny epochs must be well above it.
  assert stored["cnn"]["test_accuracy"]["mean"] > 0.3
  for cell in config.rnn_digits.cells:
    assert res["rnn_digits"][cell]["test_accuracy"]["mean"] > 0.2
  # Predicting 0 has MSE E[s^2] ~ E[A^2] / 2 ~ 0.54; a trained RNN must beat it.
  for cell in config.forecast.cells:
    assert res["forecast"][cell]["test_mse"]["mean"] < 0.5


def test_unknown_cell_raises(tmp_path):
  config = cnn_rnn_config.get_config("quick")
  config.forecast.cells = ("transformer",)
  with pytest.raises(ValueError, match="unknown forecast.cells entry"):
    cnn_rnn.run(config, str(tmp_path))
