"""Faults a hostile user found in jaxbdl.training.resume, each pinned by a test.

Every case asserts the error (``match=``) AND that nothing on disk was lost
(:func:`_snapshot` of every file's bytes before and after, or the fallback
checkpoint moved aside intact). The fits reuse ``resume_test``'s fitter and
data (one compiled program per chunk length), and resumed runs are compared
BITWISE with its uninterrupted 6-epoch reference.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from unittest import mock

import jax
import numpy as np
import pytest

import resume_test as rt
from jaxbdl.training import resume


def _snapshot(root):
  """``{relative path: sha256}`` of every regular file under ``root``."""
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      p = os.path.join(d, f)
      if os.path.isfile(p) and not os.path.islink(p):
        out[os.path.relpath(p, root)] = hashlib.sha256(
            open(p, "rb").read()).hexdigest()
  return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return rt._fit(str(tmp_path_factory.mktemp("ref")))


def _fp(**config):
  return resume.run_fingerprint(dict(dict(learning_rate=0.05, batch_size=16),
                                     **config))


@pytest.mark.parametrize("change,message", [
    (dict(config=dict(learning_rate=0.1)),
     r"differing fields: config.learning_rate: checkpoint 0.05, now 0.1\."),
    (dict(config=dict(batch_size=32)),
     r"config.batch_size: checkpoint 16, now 32"),
    (dict(data="shift"), r"differing fields: data.train_data\['y'\]"),
], ids=["learning_rate", "batch_size", "data"])
def test_changed_run_is_refused_and_disk_kept(tmp_path, change, message):
  ckdir = str(tmp_path / "ck")
  rt._fit(ckdir, num_epochs=4, fingerprint=_fp())
  before = _snapshot(ckdir)
  data = rt._data()
  if change.get("data") == "shift":
    data["y"] = data["y"] + 1.0
  with pytest.raises(resume.RunMismatchError, match=message) as e:
    resume.resumable_fit(rt.FITTER, rt._state(), data, rt.KEY, num_epochs=6,
                         checkpoint_dir=ckdir, checkpoint_every_epochs=rt.EVERY,
                         fingerprint=_fp(**change.get("config", {})))
  assert "--overwrite" in str(e.value) and e.value.checkpoint.endswith(
      "ckpt_000004")
  assert _snapshot(ckdir) == before  # nothing written, moved or deleted


def test_finished_run_with_new_settings_is_refused(tmp_path):
  """A finished workdir re-run with a new learning rate used to relabel the
  old weights without training; now it is refused (and --overwrite trains)."""
  ckdir = str(tmp_path / "ck")
  rt._fit(ckdir, num_epochs=2, fingerprint=_fp())
  with pytest.raises(resume.RunMismatchError,
                     match="config.learning_rate: checkpoint 0.05, now 0.1"):
    rt._fit(ckdir, num_epochs=2, fingerprint=_fp(learning_rate=0.1))
  again = rt._fit(ckdir, num_epochs=2, fingerprint=_fp(learning_rate=0.1),
                  overwrite=True)
  assert again.resumed_from == 0  # trained from scratch
  with pytest.raises(resume.RunMismatchError, match="learning_rate"):
    rt._fit(ckdir, num_epochs=2, fingerprint=_fp())


def test_fingerprint_fields():
  fp = resume.run_fingerprint({"lr": 0.1, "hidden": (16, 8),
                               "nested": {"a": 1}}, train={"x": np.zeros(3)})
  assert fp["config.lr"] == 0.1 and fp["config.hidden"] == [16, 8]
  assert fp["config.nested.a"] == 1
  assert fp["data.train['x']"].startswith("float64[3] sha256:")
  assert {k for k in fp if k.startswith("versions.")} == {
      "versions.jax", "versions.jaxlib", "versions.flax", "versions.optax"}
  assert fp["versions.jax"] == jax.__version__


def test_locked_directory_is_refused_in_process(tmp_path):
  ckdir = str(tmp_path / "ck")
  rt._fit(ckdir, num_epochs=2)
  before = _snapshot(ckdir)
  with resume.workdir_lock(ckdir):
    before = _snapshot(ckdir)
    with pytest.raises(resume.WorkdirLockedError,
                       match=rf"in use by another process \(pid {os.getpid()},"):
      rt._fit(ckdir, num_epochs=4)
  assert _snapshot(ckdir) == before


def test_locked_directory_keeps_the_holders_checkpoint(tmp_path):
  """Another process holds the lock and is writing ``.tmp_ckpt_000004``: a
  second fit exits at once naming its pid and deletes nothing (it used to
  clean the holder's in-progress checkpoint away)."""
  ckdir = str(tmp_path / "ck")
  rt._fit(ckdir, num_epochs=2)
  tmp = os.path.join(ckdir, ".tmp_ckpt_000004", "fit")
  os.makedirs(tmp)
  open(os.path.join(tmp, "data"), "w").write("in progress")
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import fcntl, os, sys, time\n"
       "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
       "fcntl.flock(fd, fcntl.LOCK_EX)\n"
       "os.ftruncate(fd, 0); os.write(fd, b'%d' % os.getpid())\n"
       "print('locked', flush=True); time.sleep(60)\n",
       os.path.join(ckdir, "LOCK")], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    before = _snapshot(ckdir)
    t0 = time.time()
    with pytest.raises(resume.WorkdirLockedError,
                       match=rf"pid {holder.pid}, lock file {ckdir}/LOCK"):
      rt._fit(ckdir, num_epochs=4)
    assert time.time() - t0 < 5.0  # at once, no training
    assert _snapshot(ckdir) == before
  finally:
    holder.kill()
    holder.wait()
  assert rt._fit(ckdir, num_epochs=2).resumed_from == 2  # lock released


@pytest.mark.default_xla
def test_sigterm_checkpoints_and_resumes_bitwise(tmp_path, reference):
  """A real SIGTERM to this process during a fit: the chunk in flight is
  finished and checkpointed, Preempted (exit code 75) is raised, the
  previous handler is back, and resuming equals the uninterrupted run."""
  ckdir = str(tmp_path / "ck")
  sent = []

  def on_checkpoint(epoch, path):
    if epoch == 2 and not sent:
      sent.append(epoch)
      os.kill(os.getpid(), signal.SIGTERM)

  handler = signal.getsignal(signal.SIGTERM)
  with mock.patch.object(resume.logging, "warning") as warn:
    with pytest.raises(resume.Preempted,
                       match="Preempted by SIGTERM: stopped after epoch 2 of "
                             "6; last checkpoint .*ckpt_000002; exit code 75"
                       ) as e:
      rt._fit(ckdir, num_epochs=6, on_checkpoint=on_checkpoint)
  assert e.value.exit_code == resume.PREEMPTED_EXIT_CODE == 75
  assert e.value.epoch == 2 and e.value.signal == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) is handler
  messages = [c.args[0] % c.args[1:] for c in warn.call_args_list]
  assert any("Received SIGTERM" in m for m in messages), messages
  assert rt._ckpts(ckdir) == ["ckpt_000002"]
  again = rt._fit(ckdir, num_epochs=6)
  assert again.resumed_from == 2
  rt._assert_same(again, reference)


def _copy_over(path):
  """Replaces ckpt_000006 by a copy of ckpt_000004 (names say 6)."""
  shutil.rmtree(path)
  shutil.copytree(path.replace("000006", "000004"), path)
  return "manifest says epoch 4"


def _fifo(path):
  os.mkfifo(os.path.join(path, "fit", "pipe"))
  return "fit/pipe is a FIFO, not a regular file"


def _dev_zero(path):
  victim = rt._largest_file(path)
  os.remove(victim)
  os.symlink("/dev/zero", victim)
  return f"{os.path.relpath(victim, path)} is a symlink, not a regular file"


def _manifest_fifo(path):
  os.remove(os.path.join(path, "MANIFEST.json"))
  os.mkfifo(os.path.join(path, "MANIFEST.json"))
  return "MANIFEST.json is not a regular file"


@pytest.mark.parametrize("damage", [_copy_over, _fifo, _dev_zero,
                                    _manifest_fifo],
                         ids=["copied_over", "fifo", "symlink_dev_zero",
                              "manifest_fifo"])
def test_untrusted_checkpoint_is_corrupt(tmp_path, reference, damage):
  """A checkpoint copied over another is known by its manifest's epoch; a
  FIFO or a symlink inside a checkpoint is never opened (it used to hang
  resume): both mark the checkpoint corrupt, which is moved aside intact."""
  ckdir = str(tmp_path / "ck")
  rt._fit(ckdir, num_epochs=6)
  path = os.path.join(ckdir, "ckpt_000006")
  message = damage(path)
  before = sorted(os.listdir(path))
  signal.alarm(120)  # a hang fails the test instead of the suite
  try:
    with mock.patch.object(resume.logging, "warning") as warn:
      again = rt._fit(ckdir, num_epochs=6)
  finally:
    signal.alarm(0)
  messages = [c.args[0] % c.args[1:] for c in warn.call_args_list]
  assert any("Bad checkpoint" in m and message in m for m in messages), \
      messages
  assert again.resumed_from == 4
  rt._assert_same(again, reference)
  assert sorted(os.listdir(path + ".corrupt")) == before  # kept for a look
