"""End-to-end smoke test of experiments.meta_learning on its quick config."""
import os

import pytest

from experiments import meta_learning
from experiments.configs import meta_learning as meta_config


def test_quick_run_writes_outputs_and_adapts(tmp_path):
  config = meta_config.get_config("quick")
  res = meta_learning.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "adaptation_curves.png",
               "adapted_fits.png"):
    assert os.path.exists(tmp_path / name), name
  entry = res["by_shots"][str(config.shots[0])]
  for method in ("maml", "pretrained"):
    # The meta-training loss (query MSE, first vs last 10% of iterations,
    # each a mean over >= 30 x 25 tasks) fell.
    assert (entry[method]["final_train_loss"]
            < 0.9 * entry[method]["initial_train_loss"]), method
  maml_mse = entry["maml"]["mse_mean_by_step"]
  # The one inner step MAML was meta-trained for lowers the test MSE (paired
  # over the same 50 test tasks).
  assert maml_mse[1] < maml_mse[0]


def test_steps_not_multiple_of_chunk_raises(tmp_path):
  config = meta_config.get_config("quick")
  config.num_iterations = 301
  with pytest.raises(ValueError, match="multiple of log_every"):
    meta_learning.run(config, str(tmp_path))
