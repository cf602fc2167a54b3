"""End-to-end smoke test of experiments.transfer, and checkpoint errors."""
import json
import os

import numpy as np
import pytest

from experiments import transfer as transfer_exp
from experiments.configs import transfer as transfer_config


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("transfer")
  config = transfer_config.get_config("quick")
  return config, workdir, transfer_exp.run(config, str(workdir))


def test_quick_run_writes_outputs_and_transfers(quick_run):
  config, workdir, res = quick_run
  for name in ("results.json", "results.md", "accuracy_vs_k.png"):
    assert os.path.exists(workdir / name), name
  assert os.path.isdir(workdir / "pretrained")
  with open(workdir / "results.json") as f:
    stored = json.load(f)
  # 5 classes, chance 0.2: the pre-trained CNN must be far above it.
  assert stored["source_test_accuracy"] > 0.6
  acc = {m: np.asarray(a) for m, a in res["accuracy"].items()}
  assert acc["frozen"].shape == (len(config.shots), config.num_seeds)
  # Pre-trained features carry over: frozen-feature heads beat chance.
  assert acc["frozen"].mean() > 0.3
  # The adaptation fits the few-shot sets (5 classes: chance 0.2).
  for method, a in res["train_accuracy"].items():
    assert np.mean(a) > 0.8, method
  assert set(res["valid_accuracy"]) == set(config.methods)
  for name, stats in stored["features"].items():
    assert 1.0 <= stats["effective_rank"] <= stats["dim"], name


def test_restore_with_mismatched_network_raises(quick_run):
  config, workdir, _ = quick_run
  wrong = transfer_exp._model(config, 5).clone(hidden=config.cnn.hidden + 1)
  x = np.zeros((1, 8, 8), np.float32)
  with pytest.raises(ValueError, match="does not match target"):
    transfer_exp.load_pretrained(str(workdir / "pretrained"), wrong, x)
  params = transfer_exp.load_pretrained(
      str(workdir / "pretrained"), transfer_exp._model(config, 5), x)
  assert params["head"]["kernel"].shape == (config.cnn.hidden, 5)


def test_restore_missing_checkpoint_raises(tmp_path):
  config = transfer_config.get_config("quick")
  with pytest.raises(FileNotFoundError, match="checkpoint not found"):
    transfer_exp.load_pretrained(str(tmp_path / "nope"),
                                 transfer_exp._model(config, 5),
                                 np.zeros((1, 8, 8), np.float32))


def test_unknown_method_raises(tmp_path):
  config = transfer_config.get_config("quick")
  config.methods = ("frozen", "lora")
  with pytest.raises(ValueError, match="unknown methods"):
    transfer_exp.run(config, str(tmp_path))
