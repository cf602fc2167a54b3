"""End-to-end tests of experiments/train_resumable.py: smoke run, faults.

The SIGKILL test starts the experiment as a subprocess, kills it with SIGKILL
after its second checkpoint, restarts it with the same command and checks that
the final parameters and metrics are BITWISE those of an uninterrupted run
(same compiled programs on the same CPU, so no tolerance is needed). The
SIGTERM test does the same with a graceful stop (exit code 75) at XLA's
DEFAULT optimisation level (``XLA_FLAGS`` unset; the rest of the suite runs
at O0), against an uninterrupted run at that level, and checks that a second
process on the busy workdir exits at once naming the holder's pid.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.configs import train_resumable as config_lib
from jaxbdl.training import resume


# No experiment defines absl flags at import (they are defined in main()),
# so a plain import is enough, as in tests/bad_input_test.py.
train_resumable = importlib.import_module("experiments.train_resumable")


def test_no_experiment_defines_flags_at_import():
  """The plain import above relies on this: after importing every
  experiment module, no absl flag is registered by a module of
  ``experiments`` (absl records the defining module of each flag)."""
  import pkgutil

  import experiments
  from absl import flags
  for m in pkgutil.iter_modules(experiments.__path__):
    if m.name != "configs":
      importlib.import_module(f"experiments.{m.name}")
  defined = {module: [f.name for f in fs] for module, fs in
             flags.FLAGS.flags_by_module_dict().items()
             if "experiments" in module}
  assert defined == {}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs",
                      "train_resumable.py") + ":quick"


def write_uci_folder(path, num_rows=160, num_features=4, seed=0):
  """A tiny data set in the standard UCI split layout (one split).

  ``y = x @ w + 0.1 * noise`` so that a fitted MLP clearly beats the mean.
  """
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_rows, num_features))
  y = x @ rng.normal(size=num_features) + 0.1 * rng.normal(size=num_rows)
  os.makedirs(path, exist_ok=True)
  np.savetxt(os.path.join(path, "data.txt"), np.column_stack([x, y]))
  np.savetxt(os.path.join(path, "index_features.txt"),
             np.arange(num_features), fmt="%d")
  np.savetxt(os.path.join(path, "index_target.txt"), [num_features], fmt="%d")
  np.savetxt(os.path.join(path, "n_splits.txt"), [1], fmt="%d")
  perm = rng.permutation(num_rows)
  n_test = num_rows // 5
  np.savetxt(os.path.join(path, "index_test_0.txt"), perm[:n_test], fmt="%d")
  np.savetxt(os.path.join(path, "index_train_0.txt"), perm[n_test:], fmt="%d")
  return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return write_uci_folder(str(tmp_path_factory.mktemp("uci") / "tiny"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp("reference"))
  return workdir, train_resumable.run(config_lib.get_config("quick"), workdir,
                                      data_dir=data_dir)


def _targets(data_dir):
  return np.loadtxt(os.path.join(data_dir, "data.txt"))[:, -1]


def test_quick_run_writes_outputs_and_learns(reference, data_dir):
  workdir, res = reference
  for name in ("results.json", "results.md", "loss.png", "final_params.npz"):
    assert os.path.isfile(os.path.join(workdir, name)), name
  loss = np.asarray(res["train_loss"])  # [runs, epochs]
  assert loss.shape == (2, 6)
  assert np.all(loss[:, -1] < 0.8 * loss[:, 0])
  ens = res["rows"][-1]
  assert ens["run"] == "ensemble"
  # Predicting the training mean gives RMSE ~ y_std ~ 2 (sum of 4 normal
  # features times normal weights); a fitted MLP must do clearly better.
  assert res["data"] == "tiny" and res["num_train"] == 128
  assert ens["test_rmse"] < 0.5 * float(np.std(_targets(data_dir)))
  assert res["resumed_from"] == 0
  checkpoints = sorted(n for n in os.listdir(os.path.join(workdir,
                                                         "checkpoints"))
                       if n.startswith("ckpt_"))
  assert checkpoints == ["ckpt_000004", "ckpt_000005", "ckpt_000006"]


def _command(workdir, data_dir, *extra):
  return [sys.executable, "-m", "experiments.train_resumable", "--workdir",
          workdir, "--config", CONFIG, "--data_dir", data_dir,
          "--verbosity=-1", *extra]


@pytest.mark.default_xla
@pytest.mark.slow
def test_sigkill_and_restart_matches_uninterrupted(tmp_path, reference,
                                                   data_dir):
  ref_dir, ref = reference
  workdir = str(tmp_path / "killed")
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get("PYTHONPATH", ""))
  # 1. Start, wait for the 2nd checkpoint, SIGKILL mid-run.
  proc = subprocess.Popen(_command(workdir, data_dir, "--sleep_per_chunk",
                                   "2.0"),
                          cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  marker = os.path.join(workdir, "checkpoints", "ckpt_000002")
  deadline = time.time() + 240
  while not os.path.isdir(marker):
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    assert time.time() < deadline, "no checkpoint within 240 s"
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=30)
  proc.stderr.close()
  assert proc.returncode == -signal.SIGKILL
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  assert not os.path.isdir(os.path.join(workdir, "checkpoints",
                                        "ckpt_000006"))
  # 2. Restart with the same command (no sleep): it resumes and finishes.
  done = subprocess.run(_command(workdir, data_dir), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  res = json.load(open(os.path.join(workdir, "results.json")))
  assert 2 <= res["resumed_from"] < 6
  # 3. Bitwise equal to the uninterrupted run.
  got = np.load(os.path.join(workdir, "final_params.npz"))
  want = np.load(os.path.join(ref_dir, "final_params.npz"))
  assert sorted(got.files) == sorted(want.files)
  for name in want.files:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  np.testing.assert_array_equal(np.asarray(res["train_loss"], np.float32),
                                np.asarray(ref["train_loss"], np.float32))
  for a, b in zip(res["rows"], ref["rows"]):
    assert a == b


@pytest.mark.parametrize("field,value,message", [
    ("parallel", "model", "unknown config.parallel 'model'"),
    ("on_nonfinite", "ignore", "unknown config.on_nonfinite 'ignore'"),
    ("num_runs", 0, "config.num_runs must be an int >= 1"),
    ("learning_rate", -1.0, "config.learning_rate must be > 0"),
])
def test_bad_config(tmp_path, data_dir, field, value, message):
  config = config_lib.get_config("quick")
  config[field] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    train_resumable.run(config, str(tmp_path), data_dir=data_dir)


def _snapshot(root):
  """``{path: sha256}`` of every file but the lock files (a process that
  takes a lock writes its pid there)."""
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      if f.startswith("LOCK"):
        continue
      p = os.path.join(d, f)
      out[os.path.relpath(p, root)] = hashlib.sha256(
          open(p, "rb").read()).hexdigest()
  return out


@pytest.mark.parametrize("field,value,shown", [
    ("learning_rate", 0.02, "checkpoint 0.01, now 0.02"),
    ("batch_size", 16, "checkpoint 32, now 16"),
    ("split_seed", 1, "checkpoint 0, now 1"),
    ("prior_scale", 2.0, "checkpoint 1.0, now 2.0"),
    ("activation", "tanh", 'checkpoint "relu", now "tanh"'),
])
def test_changed_config_is_refused(tmp_path, reference, data_dir, field,
                                   value, shown):
  """Re-running a finished workdir with another setting used to relabel the
  old weights with the new config; now it is refused, nothing is touched."""
  workdir = str(tmp_path / "w")
  shutil.copytree(reference[0], workdir)
  before = _snapshot(workdir)
  config = config_lib.get_config("quick")
  config[field] = value
  with pytest.raises(resume.RunMismatchError,
                     match=rf"differing fields: config\.{field}: "
                           rf"{re.escape(shown)}\. .*--overwrite"):
    train_resumable.run(config, workdir, data_dir=data_dir)
  assert _snapshot(workdir) == before


def _wait_for(path, proc, deadline_s=240):
  deadline = time.time() + deadline_s
  while not os.path.exists(path):
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    assert time.time() < deadline, f"no {path} within {deadline_s} s"
    time.sleep(0.1)


@pytest.mark.default_xla
@pytest.mark.slow
def test_sigterm_and_lock_at_default_xla_level(tmp_path, reference, data_dir):
  """At XLA's default level (``make test``'s second lane unsets XLA_FLAGS; the
  child processes inherit the environment, so they run at the level of the
  in-process oracle ``reference`` whichever lane runs this)."""
  ref_dir, want_res = reference
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get("PYTHONPATH", ""))
  # 1. A slowed-down run holds the workdir ...
  workdir = str(tmp_path / "stopped")
  proc = subprocess.Popen(_command(workdir, data_dir, "--sleep_per_chunk",
                                   "4.0"),
                          cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  _wait_for(os.path.join(workdir, "checkpoints", "LOCK"), proc)
  # 2. ... so a second process on it exits at once, naming the holder.
  second = subprocess.run(_command(workdir, data_dir), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert second.returncode == train_resumable.LOCKED_EXIT_CODE == 73
  assert f"in use by another process (pid {proc.pid}," in second.stderr
  # 3. SIGTERM after the 2nd checkpoint: finish the chunk, checkpoint, 75.
  _wait_for(os.path.join(workdir, "checkpoints", "ckpt_000002"), proc)
  assert proc.poll() is None, "the run finished before the SIGTERM"
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  err = err.decode()
  assert proc.returncode == resume.PREEMPTED_EXIT_CODE == 75, err[-3000:]
  assert re.search(r"Preempted by SIGTERM: stopped after epoch [2-5] of 6",
                   err), err[-3000:]
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  stopped_at = max(int(n[5:]) for n in os.listdir(
      os.path.join(workdir, "checkpoints")) if n.startswith("ckpt_"))
  assert 2 <= stopped_at < 6
  # 4. The same command resumes and ends bitwise on the oracle.
  done = subprocess.run(_command(workdir, data_dir), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  res = json.load(open(os.path.join(workdir, "results.json")))
  assert res["resumed_from"] == stopped_at
  got = np.load(os.path.join(workdir, "final_params.npz"))
  want = np.load(os.path.join(ref_dir, "final_params.npz"))
  assert sorted(got.files) == sorted(want.files)
  for name in want.files:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  assert res["rows"] == want_res["rows"]
  # 5. The finished workdir re-run with another learning rate: refused with
  # exit code 78, the field named, nothing on disk changed.
  before = _snapshot(workdir)
  changed = subprocess.run(_command(workdir, data_dir,
                                    "--config.learning_rate=0.02"),
                           cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
  assert changed.returncode == train_resumable.MISMATCH_EXIT_CODE == 78
  assert ("differing fields: config.learning_rate: checkpoint 0.01, now 0.02"
          in changed.stderr), changed.stderr[-3000:]
  assert _snapshot(workdir) == before
