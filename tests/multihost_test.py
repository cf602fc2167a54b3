"""Multi-process training for real: two processes on localhost, CPU devices.

``experiments.train_resumable`` (quick config, ``parallel="data"``) is
launched as two processes joined by ``jax.distributed.initialize`` with
cross-process CPU collectives (gloo, :func:`jaxbdl.training.distributed.initialize`),
one CPU device each; the minibatch is sharded over the two devices and the
fit state is checkpointed with orbax's multi-host save. The oracle is a
single process with two CPU devices
(``--xla_force_host_platform_device_count=2``) running the same config: the
same SPMD program, and the only cross-device reduction is a sum of two
partial gradients, which is commutative in floating point, so the final
parameters must agree BITWISE. The multi-process run is first killed with
SIGKILL (process 1, then process 0, which would otherwise wait on its peer)
after its second checkpoint and restarted as two processes; it must resume
from a checkpoint and still end bitwise on the oracle.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs",
                      "train_resumable.py") + ":quick"
# Quick config, shortened: 4 epochs, a checkpoint after each.
OVERRIDES = ["--config.parallel=data", "--config.num_epochs=4",
             "--config.checkpoint_every_epochs=1"]
# The suite-wide XLA flags (tests/conftest.py: O0, unless the default-level
# lane unset them); the child processes get them explicitly.
SUITE_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(xla_flags: str) -> dict:
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get("PYTHONPATH", ""), XLA_FLAGS=xla_flags)
  env.pop("JAX_NUM_CPU_DEVICES", None)
  return env


def _command(workdir, *extra, overrides=None):
  return [sys.executable, "-m", "experiments.train_resumable", "--workdir",
          workdir, "--config", CONFIG, *(overrides or OVERRIDES),
          "--verbosity=-1", *extra]


def _launch_pair(workdir, logdir, tag, *extra, overrides=None):
  port = _free_port()
  procs = []
  for i in range(2):
    log = open(os.path.join(logdir, f"{tag}_{i}.log"), "w")
    procs.append(subprocess.Popen(
        _command(workdir, "--coordinator_address", f"127.0.0.1:{port}",
                 "--num_processes", "2", "--process_id", str(i), *extra,
                 overrides=overrides),
        cwd=ROOT, env=_env(SUITE_XLA_FLAGS), stdout=log,
        stderr=subprocess.STDOUT))
    log.close()
  return procs


def _log(logdir, tag, i):
  with open(os.path.join(logdir, f"{tag}_{i}.log")) as f:
    return f.read()[-3000:]


def _params(workdir):
  with np.load(os.path.join(workdir, "final_params.npz")) as z:
    return {k: z[k] for k in z.files}


@pytest.mark.slow
def test_two_processes_equal_one_and_survive_kill9(tmp_path):
  t0 = time.time()
  logdir = str(tmp_path)
  # The oracle: one process, two CPU devices (started alongside).
  ref_dir = str(tmp_path / "single")
  ref = subprocess.Popen(_command(ref_dir), cwd=ROOT,
                         env=_env(SUITE_XLA_FLAGS
                                  + " --xla_force_host_platform_device_count=2"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  # 1. Two processes, slowed down; SIGKILL both after the 2nd checkpoint.
  workdir = str(tmp_path / "multi")
  procs = _launch_pair(workdir, logdir, "killed", "--sleep_per_chunk", "1.5")
  marker = os.path.join(workdir, "checkpoints", "ckpt_000002")
  deadline = time.time() + 240
  while not os.path.isdir(marker):
    for i, p in enumerate(procs):
      assert p.poll() is None, _log(logdir, "killed", i)
    assert time.time() < deadline, "no checkpoint within 240 s"
    time.sleep(0.1)
  for p in reversed(procs):
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  assert not os.path.isdir(os.path.join(workdir, "checkpoints",
                                        "ckpt_000004"))
  # 2. Restart both (a fresh coordinator port): resume and finish.
  procs = _launch_pair(workdir, logdir, "restart")
  for i, p in enumerate(procs):
    assert p.wait(timeout=300) == 0, _log(logdir, "restart", i)
  _, err = ref.communicate(timeout=300)
  assert ref.returncode == 0, err.decode()[-3000:]
  res = json.load(open(os.path.join(workdir, "results.json")))
  assert res["num_processes"] == 2 and res["num_devices"] == 2
  assert 2 <= res["resumed_from"] < 4
  single = json.load(open(os.path.join(ref_dir, "results.json")))
  assert single["num_processes"] == 1 and single["num_devices"] == 2
  # 3. Bitwise equal to the single-process oracle.
  got, want = _params(workdir), _params(ref_dir)
  assert sorted(got) == sorted(want)
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  np.testing.assert_array_equal(np.asarray(res["train_loss"], np.float32),
                                np.asarray(single["train_loss"], np.float32))
  # Only process 0 wrote results (process 1's lock file is all it left).
  assert sorted(n for n in os.listdir(workdir) if not n.startswith("LOCK")) \
      == ["checkpoints", "final_params.npz", "loss.png", "results.json",
          "results.md"]
  print(f"multihost test wall time {time.time() - t0:.1f}s, load "
        f"{open('/proc/loadavg').read().split()[:3]}")


@pytest.mark.slow
def test_replicated_pair_stops_together_on_one_sigterm(tmp_path):
  from experiments.configs import train_resumable as config_lib
  import experiments_train_resumable_test as exp_test
  t0 = time.time()
  logdir = str(tmp_path)
  overrides = ["--config.parallel=none", "--config.num_epochs=3",
               "--config.checkpoint_every_epochs=1"]
  workdir = str(tmp_path / "multi")
  procs = _launch_pair(workdir, logdir, "term", "--sleep_per_chunk", "3.0",
                       overrides=overrides)
  # Meanwhile, the oracle in this process: one process, one device.
  config = config_lib.get_config("quick")
  config.num_epochs, config.checkpoint_every_epochs = 3, 1
  ref_dir = str(tmp_path / "single")
  exp_test.train_resumable.run(config, ref_dir)
  marker = os.path.join(workdir, "checkpoints", "ckpt_000001")
  deadline = time.time() + 240
  while not os.path.isdir(marker):
    for i, p in enumerate(procs):
      assert p.poll() is None, _log(logdir, "term", i)
    assert time.time() < deadline, "no checkpoint within 240 s"
    time.sleep(0.1)
  assert all(p.poll() is None for p in procs), "finished before the signal"
  procs[1].send_signal(signal.SIGTERM)  # process 1 only
  for i, p in enumerate(procs):
    assert p.wait(timeout=120) == 75, _log(logdir, "term", i)
    assert "Preempted by SIGTERM: stopped after epoch" in _log(logdir, "term",
                                                                i)
  done = max(int(n[5:]) for n in os.listdir(os.path.join(
      workdir, "checkpoints")) if n.startswith("ckpt_"))
  assert 1 <= done < 3
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  procs = _launch_pair(workdir, logdir, "resume", overrides=overrides)
  for i, p in enumerate(procs):
    assert p.wait(timeout=300) == 0, _log(logdir, "resume", i)
  res = json.load(open(os.path.join(workdir, "results.json")))
  assert res["num_processes"] == 2 and res["resumed_from"] == done
  steps = config.num_epochs * -(-res["num_train"] // config.batch_size)
  atol = steps * config.learning_rate * 64 * np.finfo(np.float32).eps
  got, want = _params(workdir), _params(ref_dir)
  assert sorted(got) == sorted(want)
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=0, atol=atol,
                               err_msg=name)
  print(f"multihost SIGTERM test wall time {time.time() - t0:.1f}s, load "
        f"{open('/proc/loadavg').read().split()[:3]}")
