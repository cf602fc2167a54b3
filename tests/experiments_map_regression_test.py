"""End-to-end smoke test of experiments/map_regression.py (quick config)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import map_regression
from experiments.configs import map_regression as config_lib


def test_quick_run_trains_and_writes_outputs(tmp_path):
  config = config_lib.get_config("quick")
  res = map_regression.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "predictive.png", "loss.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  with open(tmp_path / "results.json") as f:
    saved = json.load(f)
  assert len(saved["rows"]) == 3 * len(config.noise_models)
  assert config.noise_models  # the quick config trains at least one
  for name in config.noise_models:
    s = res["summary"][name]
    assert s["loss_last"] < s["loss_first"], (name, s)
    assert s["train_nll_last"] < s["train_nll_first"] - 0.5, (name, s)
  for row in res["rows"]:
    if row["split"] == "train":
      # The targets sin(2 pi x) have std ~0.7 and noise std 0.1; predicting
      # zero gives RMSE ~0.7, a good fit ~0.1 (0.16 measured on this config).
      assert row["rmse"] < 0.3, row
    if row["split"] in ("train", "test"):
      # A Gaussian with std 0.25 on residuals of std 0.16 gives LL ~0.2
      # (0.26 / 0.21 measured); a poor fit falls below -0.5.
      assert row["log_lik"] > -0.5, row
  with open(tmp_path / "results.md") as f:
    assert config.noise_models[0] in f.read()


def test_unknown_noise_model_is_rejected(tmp_path):
  config = config_lib.get_config("quick")
  with config.unlocked():
    config.noise_models = ("homoscedastic", "student_t")
  with pytest.raises(ValueError, match="student_t"):
    map_regression.run(config, str(tmp_path))


def test_unknown_config_variant():
  with pytest.raises(ValueError, match="unknown config variant"):
    config_lib.get_config("huge")


@pytest.mark.parametrize("name", sorted(map_regression.NOISE_MODELS))
def test_noise_model_outputs(name):
  # Every noise model gives member means and variances [M, N] > 0; the
  # homoscedastic one starts at the configured noise std.
  config = config_lib.get_config("quick")
  with config.unlocked():
    config.num_members, config.num_epochs, config.batch_size = 1, 1, 5
    config.learning_rate = 1e-12  # one step that changes nothing visible
  x = jnp.linspace(-1.0, 1.0, 5)[:, None]
  state, _ = map_regression.train_ensemble(config, name, x, jnp.zeros(5),
                                           jax.random.key(0))
  means, variances = map_regression.predict(config, name, state, x)
  assert means.shape == (1, 5) and variances.shape == (1, 5)
  assert bool(jnp.all(variances > 0))
  if name == "homoscedastic":
    np.testing.assert_allclose(np.sqrt(variances), config.init_noise_scale,
                               rtol=1e-5)
