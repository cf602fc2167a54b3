"""Tests for jaxbdl.evaluation.results: file modes, provenance, merged results."""
import json
import os
import stat

import numpy as np
import pytest

from jaxbdl.evaluation import results


def _mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
  old = os.umask(0o022)
  yield
  os.umask(old)


@pytest.mark.parametrize("writer", ["json", "text", "figure", "outputs"])
def test_new_files_get_the_umask_mode(tmp_path, umask_022, writer):
  """Like open(path, "w"): 0666 & ~umask = 0644, not mkstemp's 0600."""
  path = tmp_path / ("a.png" if writer == "figure" else "results.json")
  if writer == "json":
    results.atomic_write_json(str(path), {"a": 1})
  elif writer == "text":
    results.atomic_write_text(str(path), "x")
  elif writer == "figure":
    plt = results.pyplot()
    results.save_figure(plt.figure(figsize=(1, 1)), str(path), dpi=10)
  else:
    results.write_outputs(str(tmp_path), {"a": 1}, "| a |\n")
    assert _mode(tmp_path / "results.md") == 0o644
  assert _mode(path) == 0o644


def test_other_umask_is_respected(tmp_path):
  old = os.umask(0o077)
  try:
    results.atomic_write_text(str(tmp_path / "f"), "x")
  finally:
    os.umask(old)
  assert _mode(tmp_path / "f") == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o664])
def test_existing_file_keeps_its_mode(tmp_path, umask_022, mode):
  path = tmp_path / "results.json"
  path.write_text("{}")
  os.chmod(path, mode)
  results.atomic_write_json(str(path), {"b": 2})
  assert _mode(path) == mode and json.loads(path.read_text()) == {"b": 2}
  assert os.listdir(tmp_path) == ["results.json"]  # no temporary left


def test_provenance_fields():
  p = results.provenance()
  assert set(p) == {"git_commit", "git_dirty", "versions", "platform",
                    "command", "cwd", "load_average", "date_utc"}
  import jax, flax, optax  # noqa: E401
  assert p["versions"]["jax"] == jax.__version__
  assert p["versions"]["flax"] == flax.__version__
  assert p["versions"]["optax"] == optax.__version__
  assert p["platform"]["backend"] == jax.default_backend()
  assert p["platform"]["device_kind"] == jax.devices()[0].device_kind
  assert len(p["load_average"]) == 3
  # This checkout is a git work tree: a 40-hex commit.
  assert p["git_commit"] is not None and len(p["git_commit"]) == 40
  int(p["git_commit"], 16)
  assert isinstance(p["git_dirty"], bool)
  json.dumps(p, allow_nan=False)


def test_write_outputs_adds_provenance_and_keeps_an_existing_one(tmp_path):
  results.write_outputs(str(tmp_path), {"rmse": np.float32(0.5)}, "t\n")
  doc = json.loads((tmp_path / "results.json").read_text())
  assert doc["rmse"] == 0.5 and "git_commit" in doc["provenance"]
  results.write_results_json(str(tmp_path / "r.json"),
                             {"provenance": {"from": "elsewhere"}})
  assert json.loads((tmp_path / "r.json").read_text())["provenance"] == {
      "from": "elsewhere"}


def test_config_fingerprint_ignores_key_order():
  import ml_collections
  a = ml_collections.ConfigDict({"lr": 0.1, "m": {"x": 1, "y": (1, 2)}})
  b = {"m": {"y": [1, 2], "x": 1}, "lr": 0.1}
  assert results.config_fingerprint(a) == results.config_fingerprint(b)
  assert results.config_fingerprint(a) != results.config_fingerprint(
      {"lr": 0.2, "m": {"x": 1, "y": [1, 2]}})
  assert len(results.config_fingerprint(b)) == 12


def test_merge_json_accumulates_and_marks_incomplete(tmp_path):
  path = str(tmp_path / "results.json")
  results.merge_json(path, ["yacht", "mfvi", "abc"], {"rmse": 1.0},
                     complete=False)
  results.merge_json(path, ["yacht", "map", "abc"], {"rmse": 2.0})
  results.merge_json(path, ["energy", "mfvi", "abc"], {"rmse": 3.0})
  doc = json.loads(open(path).read())
  assert doc["yacht"]["mfvi"]["abc"]["complete"] is False
  assert doc["yacht"]["map"]["abc"] == {**doc["yacht"]["map"]["abc"],
                                        "rmse": 2.0, "complete": True}
  assert doc["energy"]["mfvi"]["abc"]["rmse"] == 3.0
  # A complete run replaces the partial one; the others are kept.
  results.merge_json(path, ["yacht", "mfvi", "abc"], {"rmse": 0.9})
  doc = json.loads(open(path).read())
  assert doc["yacht"]["mfvi"]["abc"]["rmse"] == 0.9
  assert doc["yacht"]["mfvi"]["abc"]["complete"] is True
  assert doc["yacht"]["map"]["abc"]["rmse"] == 2.0
  assert "git_commit" in doc["yacht"]["mfvi"]["abc"]["provenance"]
