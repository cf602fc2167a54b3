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
  for method in ("maml", "pretrained"):
    # The training loss (query MSE, first vs last 10% of iterations, each a
    # mean over >= 30 x 25 tasks) fell.
    training = res["training"][method]
    assert training["final_train_loss"] < 0.9 * training["initial_train_loss"]
  entry = res["by_shots"][str(config.shots[0])]
  maml_mse = entry["maml"]["mse_mean_by_step"]
  # The inner steps MAML was meta-trained for lower the test MSE (paired over
  # the same 50 test tasks), and no fine-tuning run blew up.
  assert maml_mse[1] < maml_mse[0]
  assert entry["maml"]["num_nonfinite_by_step"][-1] == 0
  assert len(res["table"]) == 2 * len(config.shots)


@pytest.mark.parametrize("field,value,match", [
    pytest.param("num_iterations", 301, "multiple of log_every",
                 id="steps_not_multiple_of_chunk"),
    pytest.param("step_weights", (1.0,), "one weight per inner step",
                 id="step_weights_length"),
])
def test_invalid_config_raises(tmp_path, field, value, match):
  config = meta_config.get_config("quick")
  setattr(config, field, value)
  with pytest.raises(ValueError, match=match):
    meta_learning.run(config, str(tmp_path))
