"""End-to-end smoke test of experiments.dataset_shift on its quick config."""
import json
import os

import pytest

from experiments import dataset_shift
from experiments.configs import dataset_shift as dataset_shift_config


def test_quick_run_writes_outputs_and_shift_hurts(tmp_path):
  config = dataset_shift_config.get_config("quick")
  res = dataset_shift.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "shift_metrics.png",
               "selective_prediction.png", "reliability.png"):
    assert os.path.exists(tmp_path / name), name
  with open(tmp_path / "results.json") as f:
    stored = json.load(f)
  assert set(stored["methods"]) == set(config.methods)
  for name, r in stored["methods"].items():
    # 8 classes: chance 0.125; even 4 tiny epochs are well above it.
    assert r["clean"]["accuracy"]["mean"] > 0.4, name
    # Rotating digits by 90 degrees must cost accuracy.
    rot = r["shift"]["rotation"]["accuracy"]["mean"]
    assert rot[-1] < rot[0] - 0.2, (name, rot)
    for ood in r["ood"].values():
      assert 0.0 <= ood["auroc_entropy"]["mean"] <= 1.0
  assert res["methods"]["map_ts"]["temperature"]["mean"] > 0.0


def test_unknown_method_raises(tmp_path):
  config = dataset_shift_config.get_config("quick")
  config.methods = ("map", "laplace_typo")
  with pytest.raises(ValueError, match="unknown config.methods entries"):
    dataset_shift.run(config, str(tmp_path))
