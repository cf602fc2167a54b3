"""End-to-end smoke test of experiments/uci_regression.py on a tiny data set."""
import json
import os

import numpy as np
import pytest

from experiments import uci_regression
from experiments.configs import uci_regression as config_lib
from tests.uci_layout import write_uci_folder


def test_quick_run_writes_results_and_learns(tmp_path):
  root = tmp_path / "data"
  write_uci_folder(root, "toy", rows=80, n_splits=3)
  cfg = config_lib.get_config("quick")
  cfg.data_dir = str(root)
  # The UCI core methods end to end (mc_dropout runs end to end in the grid
  # search test below; the samplers and Laplace have their own tests; "all"
  # would add minutes of CI time).
  cfg.method = "map,mfvi,ensemble"
  cfg.num_steps = 150
  cfg.max_epochs = 40
  workdir = tmp_path / "out"
  workdir.mkdir()
  res = uci_regression.run(cfg, str(workdir))
  for f in ("results.json", "results.md", "uci.png"):
    assert os.path.exists(workdir / f), f
  saved = json.loads((workdir / "results.json").read_text())
  toy = saved["datasets"]["toy"]
  assert set(toy) == set(cfg.method.split(","))
  y = np.loadtxt(root / "toy" / "data.txt")[:, 3]
  for method, r in toy.items():
    assert r["num_splits"] == 2 and len(r["per_split"]) == 2
    assert r["final_loss"] < r["first_loss"], method
    # Better than predicting the mean: RMSE below the target's std.
    assert r["rmse_mean"] < 0.9 * np.std(y), (method, r["rmse_mean"])
    assert np.isfinite(r["ll_mean"]) and r["ll_se"] >= 0
  assert "toy" in res["seconds_per_dataset"]
  # The summary method is the best VALIDATION score, whatever the test says.
  best = saved["best_by_validation"]["toy"]
  valid = {m: r["valid_ll_mean"] for m, r in toy.items()}
  assert best["method"] == max(valid, key=valid.get)
  assert best["ll_mean"] == toy[best["method"]]["ll_mean"]


@pytest.mark.parametrize("case", ["no_index_files", "nan", "unknown_dataset",
                                  "unknown_method", "missing_dir"])
def test_bad_input_gives_clear_error(tmp_path, case):
  root = tmp_path / "data"
  cfg = config_lib.get_config("quick")
  cfg.data_dir = str(root)
  if case == "no_index_files":
    cfg.data_dir = str(write_uci_folder(root, "toy", index_files=False))
    err, match = ValueError, "index"
  elif case == "nan":
    write_uci_folder(root, "toy", nan=True)
    err, match = ValueError, "non-finite"
  elif case == "unknown_dataset":
    write_uci_folder(root, "toy")
    cfg.dataset = "nope"
    err, match = ValueError, "unknown dataset 'nope'.*toy"
  elif case == "unknown_method":
    write_uci_folder(root, "toy")
    cfg.method = "nope"
    err, match = ValueError, "unknown method.*valid"
  else:
    cfg.data_dir = str(tmp_path / "absent")
    err, match = FileNotFoundError, "absent.*pass --data_dir"
  with pytest.raises(err, match=match):
    uci_regression.run(cfg, str(tmp_path))


def test_grid_search_run_records_the_selection(tmp_path):
  root = tmp_path / "data"
  write_uci_folder(root, "toy", rows=80, n_splits=2)
  cfg = config_lib.get_config("quick")
  cfg.data_dir = str(root)
  cfg.method = "mc_dropout"
  cfg.grid_search = True
  cfg.num_steps = 100
  cfg.max_epochs = 20
  workdir = tmp_path / "out"
  workdir.mkdir()
  uci_regression.run(cfg, str(workdir))
  r = json.loads((workdir / "results.json").read_text())["datasets"]["toy"][
      "mc_dropout"]
  assert r["grid"]["dropout_rate"] == pytest.approx([0.01, 0.1])
  assert len(r["grid_valid_ll_mean"]) == 2 and len(r["chosen"]) == 2
  for k, c in enumerate(r["chosen"]):
    assert r["chosen_hparams"]["dropout_rate"][k] == pytest.approx(
        r["grid"]["dropout_rate"][c])
  assert np.isfinite(r["rmse_mean"]) and r["grid_seconds"] > 0
  assert "mc_dropout (grid)" in (workdir / "results.md").read_text()


def test_grid_over_an_unknown_field_is_rejected(tmp_path):
  root = tmp_path / "data"
  write_uci_folder(root, "toy", rows=40, n_splits=2)
  cfg = config_lib.get_config("quick")
  cfg.data_dir = str(root)
  cfg.method = "map"
  cfg.grid_search = True
  cfg.grid.map = {"dropout_rate": (0.1,)}
  with pytest.raises(ValueError, match="'dropout_rate' is not a tunable.*map"):
    uci_regression.run(cfg, str(tmp_path))


def test_rerun_merges_and_broken_folder_is_reported(tmp_path):
  """A re-run keeps earlier complete entries; with --dataset all a broken
  folder is reported, the good one still runs, and the command fails."""
  root = tmp_path / "data"
  write_uci_folder(root, "good", rows=40, n_splits=2)
  cfg = config_lib.get_config("quick")
  cfg.data_dir, cfg.method, cfg.num_splits = str(root), "map", 1
  cfg.num_steps, cfg.max_epochs = 20, 5
  out = tmp_path / "out"
  out.mkdir()
  uci_regression.run(cfg, str(out))
  first = json.loads((out / "results.json").read_text())
  assert first["complete"] and first["datasets"]["good"]["map"]["complete"]
  write_uci_folder(root, "broken", index_files=False)
  with pytest.raises(ValueError, match="1 data set folder.*broken"):
    uci_regression.run(cfg, str(out))
  second = json.loads((out / "results.json").read_text())
  assert second["complete"] is False and "broken" in second["errors"]
  assert "map" in second["datasets"]["good"]  # re-run, still complete


def test_default_data_dir_is_relative_and_missing_names_the_flag(
    tmp_path, monkeypatch):
  """``../shared/data/uci`` relative to the repository root (a clean clone
  with ``shared/`` beside it), no machine path; absent, the error names
  ``--data_dir``."""
  cfg = config_lib.get_config("quick")
  assert cfg.data_dir == "../shared/data/uci"
  monkeypatch.chdir(tmp_path)  # no ../shared here
  with pytest.raises(FileNotFoundError,
                     match=r"'\.\./shared/data/uci' does not exist.*pass "
                     r"--data_dir ROOT_OF_UCI_FOLDERS"):
    uci_regression.run(cfg, str(tmp_path / "out"))
