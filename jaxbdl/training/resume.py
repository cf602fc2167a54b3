"""Checkpointed, resumable fits that survive kills, corrupt files and NaNs.

:func:`resumable_fit` runs a :class:`jaxbdl.training.train.Fitter` in chunks of
``checkpoint_every_epochs`` epochs and checkpoints the whole
:class:`jaxbdl.training.train.FitState` (parameters, optimiser state, early-stopping
state, epoch and step counters) plus the per-epoch history after every chunk.
The randomness of epoch ``e`` is ``fold_in(key, e)`` (see :mod:`jaxbdl.training.train`),
so no key state is stored: a run killed at any moment and restarted with the
same ``checkpoint_dir`` and key resumes from the latest good checkpoint and
replays exactly the computation of an uninterrupted run (bitwise on CPU; the
chunk boundaries are multiples of ``checkpoint_every_epochs`` counted from
epoch 0, so a resumed run compiles and runs the same chunks).

Checkpoint layout (one directory per checkpoint, epochs done in the name)::

  checkpoint_dir/
    LOCK              flock'ed by the running fit, holds its pid
    ckpt_000004/
      fit/            orbax checkpoint (jaxbdl.training.checkpoint) of
                      {"state": FitState, "history": per-epoch metrics so far}
      MANIFEST.json   epoch, key data, run fingerprint, history shapes, and
                      the SHA-256 and size of every file under fit/

A checkpoint is written under a temporary name, its manifest last, and renamed
into place (atomic on POSIX), so a kill never leaves a half-written
``ckpt_*``. On restart the newest checkpoint is verified against its manifest
(missing, truncated or garbled files; anything but regular files and
directories, e.g. a FIFO or a symlink, is never opened; the manifest's epoch
must match the directory's name and the restored epoch counter), restored
against the expected tree and checked for NaN/inf; a bad one is reported with
a logging warning naming the file and moved aside to ``ckpt_XXXXXX.corrupt``,
and the previous one is tried.

What cannot go wrong silently:

* Another run's checkpoint. Every manifest carries the run's fingerprint
  (:func:`run_fingerprint`: the caller's config, digests of the data, the
  versions of :data:`VERSION_PACKAGES`); a mismatch raises
  :class:`RunMismatchError` naming the fields, before anything is touched.
  ``overwrite=True`` starts over.
* Two writers. The fit holds :func:`workdir_lock` on ``checkpoint_dir``; a
  second one raises :class:`WorkdirLockedError` naming the holder's pid.
* Preemption. SIGTERM/SIGINT let the chunk in flight finish and be
  checkpointed, then :class:`Preempted` is raised (exit code
  :data:`PREEMPTED_EXIT_CODE`); the same call resumes bitwise.
* Several processes (:mod:`jaxbdl.training.distributed`). Every process calls
  :func:`resumable_fit` with global arrays; orbax writes each process's
  shards, process 0 alone writes manifests, renames, prunes and moves bad
  checkpoints aside, and a preemption signal to any process stops all of
  them after the same chunk.

Non-finite numerics: every step reports ``"finite"`` (loss and all gradients
finite). Build the fitter with ``step_wrapper=step_wrapper_for(on_nonfinite)``
(that is :func:`jaxbdl.training.train.skip_nonfinite` in both modes): a bad step then
leaves the state unchanged, so it cannot poison the later steps of its chunk,
and the epoch's mean loss tells a non-finite loss (mean loss NaN/inf) from a
non-finite gradient with a finite loss. With ``on_nonfinite="stop"`` the chunk
holding the first bad step is discarded and :class:`NonFiniteError` names the
run, epoch, global step range and quantity (loss or gradient); the last good
checkpoint stays the newest on disk. With ``on_nonfinite="skip"`` the chunk is
kept and the skipped steps are reported in a warning.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import stat
import threading
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Optional

import jax
import numpy as np
from absl import logging

from jaxbdl.training import checkpoint
from jaxbdl.training import distributed
from jaxbdl.evaluation import results as results_lib
from jaxbdl.training import train

__all__ = ["ON_NONFINITE", "PREEMPTED_EXIT_CODE", "VERSION_PACKAGES",
           "NonFiniteError", "RunMismatchError", "WorkdirLockedError",
           "Preempted", "FitResult", "step_wrapper_for", "run_fingerprint",
           "data_digests", "workdir_lock", "resumable_fit", "list_checkpoints",
           "latest_good_checkpoint"]

PyTree = Any
ON_NONFINITE = ("stop", "skip")
_CKPT_RE = re.compile(r"^ckpt_(\d{6,})$")
_MANIFEST = "MANIFEST.json"
_LOCK = "LOCK"
# os.EX_TEMPFAIL: "temporary failure, the user is invited to retry" -- a
# preempted run exits with it; the same command resumes.
PREEMPTED_EXIT_CODE = 75
# Distributions whose versions enter the fingerprint (numerics can change).
VERSION_PACKAGES = ("jax", "jaxlib", "flax", "optax")


class NonFiniteError(FloatingPointError):
  """A NaN/inf appeared in the loss or a gradient during training.

  Attributes:
    epoch: 0-based epoch of the first non-finite step.
    steps: ``(first, last)`` global step numbers of that epoch (inclusive).
    quantity: ``"loss"``, ``"gradient"``, or ``"loss or gradient"`` when the
      fitter does not skip bad steps (then NaN parameters hide which came
      first).
    run: index along the run axis of a vmapped fitter (``None`` if unbatched).
    checkpoint: path of the last good checkpoint (``None`` if none yet).
  """

  def __init__(self, message: str, *, epoch: int, steps: tuple[int, int],
               quantity: str, run: Optional[int],
               checkpoint_path: Optional[str]):
    super().__init__(message)
    self.epoch = epoch
    self.steps = steps
    self.quantity = quantity
    self.run = run
    self.checkpoint = checkpoint_path


class RunMismatchError(ValueError):
  """A checkpoint belongs to a different run (fingerprint differs).

  Attributes:
    fields: the differing fingerprint fields, e.g. ``["config.learning_rate",
      "data.train_data['x']"]``.
    checkpoint: the checkpoint's path.
  """

  def __init__(self, message: str, *, fields: list, checkpoint_path: str):
    super().__init__(message)
    self.fields = fields
    self.checkpoint = checkpoint_path


class WorkdirLockedError(RuntimeError):
  """Another live process holds the directory's lock (``holder``: its pid)."""

  def __init__(self, message: str, *, holder: Optional[int]):
    super().__init__(message)
    self.holder = holder


class Preempted(Exception):
  """SIGTERM/SIGINT arrived: the chunk was finished and checkpointed.

  The caller should exit with :data:`PREEMPTED_EXIT_CODE`; the same command
  resumes from ``checkpoint``.

  Attributes:
    signal: the signal number; epoch: epochs done (and checkpointed);
    checkpoint: path of the checkpoint holding them (``None`` if none yet).
  """

  def __init__(self, message: str, *, signum: int, epoch: int,
               checkpoint_path: Optional[str]):
    super().__init__(message)
    self.signal = signum
    self.epoch = epoch
    self.checkpoint = checkpoint_path
    self.exit_code = PREEMPTED_EXIT_CODE


class FitResult(NamedTuple):
  """What :func:`resumable_fit` returns.

  Attributes:
    state: the :class:`jaxbdl.training.train.TrainState` of ``fitter.result`` (best
      parameters under early stopping).
    history: per-epoch metrics ``[..., num_epochs]`` (the epoch axis last, a
      leading run axis for a vmapped fitter) plus ``"best_epoch"`` and
      ``"stopped_epoch"``, as returned by :func:`jaxbdl.training.train.make_fit`.
    fit_state: the final :class:`jaxbdl.training.train.FitState`.
    resumed_from: epochs restored from a checkpoint (0 for a fresh start).
  """
  state: train.TrainState
  history: dict
  fit_state: train.FitState
  resumed_from: int


def step_wrapper_for(on_nonfinite: str) -> Optional[Callable]:
  """The ``step_wrapper`` for ``make_fitter`` to use with ``on_nonfinite``.

  :func:`jaxbdl.training.train.skip_nonfinite` for both ``"stop"`` and ``"skip"``: in
  ``"stop"`` mode the chunk with a bad step is discarded anyway, and skipping
  inside it keeps the parameters finite, which lets :func:`resumable_fit`
  tell a non-finite loss from a non-finite gradient.
  """
  if on_nonfinite not in ON_NONFINITE:
    raise ValueError(f"on_nonfinite must be one of {list(ON_NONFINITE)}, got "
                     f"{on_nonfinite!r}")
  return train.skip_nonfinite


# ---------------------------------------------------------------------------
# Run fingerprints: what defines a run, stored in every manifest.


def _flatten(prefix: str, obj: Any, out: dict) -> None:
  if isinstance(obj, Mapping):
    for k in sorted(obj, key=str):
      _flatten(f"{prefix}.{k}" if prefix else str(k), obj[k], out)
  else:
    # JSON round trip: tuples and lists compare equal, as they come back.
    out[prefix] = json.loads(json.dumps(results_lib.to_jsonable(obj)))


def data_digests(data: PyTree, name: str = "data") -> dict[str, str]:
  """``{name + leaf path: "dtype[shape] sha256:hex"}`` of every array.

  The identity of the data a run trains on: a different split, subset or
  preprocessing changes a digest. Arrays sharded across processes are
  gathered first (:func:`jaxbdl.training.distributed.to_host`, a collective).
  """
  out = {}
  for kp, leaf in jax.tree_util.tree_flatten_with_path(
      distributed.to_host(data))[0]:
    arr = np.asarray(leaf)
    digest = hashlib.sha256(arr.tobytes()).hexdigest()
    out[f"{name}{jax.tree_util.keystr(kp)}"] = (
        f"{arr.dtype.name}{list(arr.shape)} sha256:{digest}")
  return out


def _versions() -> dict[str, str]:
  out = {}
  for package in VERSION_PACKAGES:
    try:
      out[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      out[package] = "absent"
  return out


def run_fingerprint(config: Optional[Mapping] = None, **data: PyTree
                    ) -> dict[str, Any]:
  """A flat ``{field: value}`` record of everything that defines a run.

  Fields are ``config.<name>`` (every entry of ``config``, nested mappings
  dotted), ``data.<name>[...]`` (:func:`data_digests` of each keyword array
  tree) and ``versions.<package>`` (:data:`VERSION_PACKAGES`). Leave out of
  ``config`` what may change between a run and its resumption (the number of
  epochs, checkpoint cadence, device layout).
  """
  out = {}
  _flatten("config", dict(config or {}), out)
  for name in sorted(data):
    for k, v in data_digests(data[name], name).items():
      out[f"data.{k}"] = v
  for k, v in _versions().items():
    out[f"versions.{k}"] = v
  return out


def _short(v: Any) -> str:
  text = json.dumps(v)
  return text if len(text) <= 48 else text[:44] + '..."'



def _check_fingerprint(path: str, stored: Optional[Mapping],
                       current: Mapping) -> None:
  """Raises :class:`RunMismatchError` naming every differing field."""
  if stored is None:
    raise RunMismatchError(
        f"checkpoint {path} has no run fingerprint (written by an older "
        "jaxbdl); it cannot be told apart from another run. Start over with "
        "overwrite=True (--overwrite) or use a new workdir",
        fields=["<missing>"], checkpoint_path=path)
  fields = sorted(set(stored) | set(current))
  diff = [f for f in fields if stored.get(f, "<absent>") !=
          current.get(f, "<absent>")]
  if diff:
    shown = "; ".join(f"{f}: checkpoint {_short(stored.get(f, '<absent>'))}"
                      f", now {_short(current.get(f, '<absent>'))}"
                      for f in diff[:8])
    more = f" (and {len(diff) - 8} more)" if len(diff) > 8 else ""
    raise RunMismatchError(
        f"checkpoint {path} belongs to a different run; differing fields: "
        f"{shown}{more}. Resuming would mix two runs. Start over with "
        "overwrite=True (--overwrite) or use a new workdir",
        fields=diff, checkpoint_path=path)


# ---------------------------------------------------------------------------
# The directory lock: one writer per checkpoint directory.


def _lock_name() -> str:
  i = jax.process_index()
  return _LOCK if i == 0 else f"{_LOCK}.p{i}"


@contextlib.contextmanager
def workdir_lock(directory: str) -> Iterator[str]:
  """Holds an exclusive advisory lock (``fcntl.flock``) on ``directory``.

  The lock file is ``directory/LOCK`` (``LOCK.p<i>`` for process ``i > 0``
  of a multi-process run, so the processes of one run do not exclude each
  other) and holds the holder's pid. The kernel drops the lock when the
  holder exits, however it dies (SIGKILL included), so no stale lock needs
  cleaning. Locks are per open file: a second ``workdir_lock`` on the same
  directory fails even inside the same process.

  Yields:
    the lock file's path.

  Raises:
    WorkdirLockedError: another holder; the message names its pid.
  """
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, _lock_name())
  fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
      holder = int(text) if text.isdigit() else None
      raise WorkdirLockedError(
          f"{directory} is in use by another process (pid "
          f"{holder if holder is not None else 'unknown'}, lock file {path}); "
          "wait for it to finish or stop it, or use another directory",
          holder=holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield path
  finally:
    os.close(fd)  # Releases the flock.


# ---------------------------------------------------------------------------
# Checkpoint directories: naming, manifests, verification.


def _ckpt_name(epoch: int) -> str:
  return f"ckpt_{epoch:06d}"


def list_checkpoints(checkpoint_dir: str) -> list[tuple[int, str]]:
  """``(epoch, path)`` of every ``ckpt_*`` entry, newest first.

  Symlinks named ``ckpt_*`` are listed too (and fail verification).
  """
  if not os.path.isdir(checkpoint_dir):
    return []
  found = []
  for name in os.listdir(checkpoint_dir):
    m = _CKPT_RE.match(name)
    path = os.path.join(checkpoint_dir, name)
    if m and (os.path.isdir(path) or os.path.islink(path)):
      found.append((int(m.group(1)), path))
  return sorted(found, reverse=True)


def _sha256_regular(path: str) -> tuple[int, str]:
  """Size and SHA-256 of the REGULAR file ``path`` (never follows links,
  never blocks on a FIFO or device)."""
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
  except OSError as e:
    raise ValueError(f"{path} cannot be opened as a regular file: {e}") from e
  with os.fdopen(fd, "rb") as fh:
    st = os.fstat(fh.fileno())
    if not stat.S_ISREG(st.st_mode):
      raise ValueError(f"{path} is not a regular file")
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
      h.update(block)
  return st.st_size, h.hexdigest()


def _file_digests(root: str) -> dict[str, list]:
  """``{relative path: [size, sha256]}`` of every file under ``root``.

  Only regular files and directories are accepted (``lstat``: nothing is
  followed); a symlink, FIFO, socket or device anywhere under ``root`` (or
  ``root`` itself a symlink) raises ``ValueError`` naming it.
  """
  if not stat.S_ISDIR(os.lstat(root).st_mode):
    raise ValueError(f"{root} is not a directory (a symlink or a file)")
  out = {}
  pending = [root]
  while pending:
    d = pending.pop()
    for entry in sorted(os.scandir(d), key=lambda e: e.name):
      mode = os.lstat(entry.path).st_mode
      rel = os.path.relpath(entry.path, root)
      if stat.S_ISDIR(mode):
        pending.append(entry.path)
      elif not stat.S_ISREG(mode):
        kind = ("symlink" if stat.S_ISLNK(mode) else "FIFO" if
                stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
                else "device or special file")
        raise ValueError(f"{entry.path} is a {kind}, not a regular file")
      elif rel != _MANIFEST:
        out[rel] = list(_sha256_regular(entry.path))
  return out


def _verify_files(path: str) -> dict:
  """Checks ``path`` against its manifest; returns the manifest.

  Raises:
    ValueError: naming the missing/truncated/garbled/unexpected/non-regular
      file, or an epoch that disagrees with the directory's name.
  """
  mpath = os.path.join(path, _MANIFEST)
  if os.path.islink(path) or not os.path.isdir(path):
    raise ValueError(f"{path} is a symlink or not a directory")
  if not os.path.lexists(mpath):
    raise ValueError(f"{mpath} is missing (incomplete checkpoint)")
  try:
    size, _ = _sha256_regular(mpath)
    if size > (16 << 20):
      raise ValueError(f"{size} bytes")
    with open(mpath) as f:
      manifest = json.load(f)
    files = manifest["files"]
    epoch = int(manifest["epoch"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{mpath} is unreadable: {e}") from e
  m = _CKPT_RE.match(os.path.basename(path))
  if m is None or int(m.group(1)) != epoch:
    raise ValueError(
        f"{path}: its manifest says epoch {epoch} but the directory's name "
        "says otherwise (a checkpoint copied or renamed over another); the "
        "manifest is trusted, the checkpoint is not")
  have = _file_digests(path)
  for rel, (size, digest) in files.items():
    full = os.path.join(path, rel)
    if rel not in have:
      raise ValueError(f"{full} is missing")
    if have[rel][0] != size:
      raise ValueError(f"{full} is truncated or extended: {have[rel][0]} "
                       f"bytes, manifest says {size}")
    if have[rel][1] != digest:
      raise ValueError(f"{full} is corrupt (SHA-256 differs from manifest)")
  extra = sorted(set(have) - set(files))
  if extra:
    raise ValueError(f"{os.path.join(path, extra[0])} is not in the manifest")
  return manifest


def _check_restored_finite(path: str, tree: PyTree) -> None:
  for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    arr = np.asarray(leaf)
    if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
      raise ValueError(f"{path}: restored state{jax.tree_util.keystr(kp)} "
                       "holds NaN/inf")


def _key_data(key: jax.Array) -> list:
  data = distributed.to_host(jax.random.key_data(key))
  return np.asarray(data).reshape(-1).tolist()


class _BadCheckpoint(Exception):
  """A checkpoint that is incomplete, damaged or unreadable."""


def _restore(path: str, target: train.FitState, key_data: list,
             fingerprint: Optional[Mapping]) -> tuple[int, train.FitState, dict]:
  """Verifies and restores one checkpoint.

  Raises:
    _BadCheckpoint: damaged (fall back to an older one).
    ValueError: a checkpoint of another run (different key, fingerprint
      (:class:`RunMismatchError`) or tree); not damage, so the caller must
      not silently fall back.
  """
  try:
    manifest = _verify_files(path)
  except (ValueError, OSError) as e:
    raise _BadCheckpoint(str(e)) from e
  if manifest.get("key_data") != key_data:
    raise ValueError(f"checkpoint {path} was written by a run with a different"
                     " PRNG key; use the same key or another checkpoint_dir")
  if fingerprint is not None:
    _check_fingerprint(path, manifest.get("fingerprint"), fingerprint)
  epoch = int(manifest["epoch"])
  state_path = os.path.join(path, "fit")
  try:
    # numpy targets: the history is host data, restored on every process.
    hist_target = {k: np.zeros(tuple(shape), np.dtype(dtype))
                   for k, (shape, dtype) in manifest["history"].items()}
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    raise _BadCheckpoint(f"{path}/{_MANIFEST} has no valid history entry: "
                         f"{e}") from e
  try:
    restored = checkpoint.restore(state_path,
                                  {"state": target, "history": hist_target})
  except ValueError as e:
    if "does not match target" in str(e) and "history" not in str(e):
      raise ValueError(f"{e}; the checkpoint was written by a different model "
                       "or optimiser: use another checkpoint_dir") from e
    raise _BadCheckpoint(f"{state_path} does not restore: {e}") from e
  except Exception as e:  # orbax/tensorstore errors on damaged data.
    raise _BadCheckpoint(f"{state_path} does not restore ({type(e).__name__}:"
                         f" {str(e)[:300]})") from e
  fit_state, history = restored["state"], restored["history"]
  host = distributed.to_host(fit_state.train)
  try:
    _check_restored_finite(path, host)
  except ValueError as e:
    raise _BadCheckpoint(str(e)) from e
  epochs = np.asarray(distributed.to_host(fit_state.epoch))
  if not np.all(epochs == epoch):
    raise _BadCheckpoint(f"{path}: restored epoch counter "
                         f"{epochs.reshape(-1).tolist()} differs from the "
                         f"manifest's epoch {epoch}")
  return epoch, fit_state, dict(history)


def _move_aside(path: str, reason: str) -> None:
  """Renames a bad checkpoint to ``*.corrupt`` (chief only) and warns."""
  aside = path + ".corrupt"
  logging.warning("Bad checkpoint %s skipped, falling back to the previous"
                  " one: %s (moved to %s)", path, reason, aside)
  if not distributed.is_chief():
    return
  if os.path.lexists(aside):
    if os.path.isdir(aside) and not os.path.islink(aside):
      shutil.rmtree(aside)
    else:
      os.remove(aside)
  os.replace(path, aside)


def latest_good_checkpoint(checkpoint_dir: str, target: train.FitState,
                           key: jax.Array,
                           fingerprint: Optional[Mapping] = None):
  """Restores the newest checkpoint that verifies; moves bad ones aside.

  Args:
    checkpoint_dir: the directory of ``ckpt_*`` checkpoints.
    target: a FitState with the expected structure, shapes, dtypes (and
      shardings), e.g. ``fitter.init(state)``.
    key: the run's key; a checkpoint written with another key is an error.
    fingerprint: the run's :func:`run_fingerprint`-style record; ``None``
      skips the check (inspection tools).

  Returns:
    ``(epoch, fit_state, history, path)`` or ``None`` if there is no good
    checkpoint. Each bad checkpoint is reported with ``logging.warning``.

  Raises:
    RunMismatchError: the newest intact checkpoint has another fingerprint.
    ValueError: a checkpoint of a run with a different key or a different
      parameter/optimiser tree (not damage, so no silent fallback).
  """
  key_data = _key_data(key)
  for epoch, path in list_checkpoints(checkpoint_dir):
    try:
      got_epoch, fit_state, history = _restore(path, target, key_data,
                                               fingerprint)
    except _BadCheckpoint as e:
      _move_aside(path, str(e))
      continue
    assert got_epoch == epoch
    distributed.barrier(f"jaxbdl_resume_restored_{epoch}")
    return epoch, fit_state, history, path
  distributed.barrier("jaxbdl_resume_restored_none")
  return None


def _write_checkpoint(checkpoint_dir: str, epoch: int,
                      fit_state: train.FitState, history: dict,
                      key_data: list, fingerprint: Mapping, keep: int) -> str:
  """Writes ``ckpt_{epoch}`` atomically and deletes all but ``keep`` newest.

  Every process calls it (orbax writes each process's shards); the chief
  writes the manifest, renames the directory into place and prunes; the
  others wait for it at a barrier.
  """
  final = os.path.join(checkpoint_dir, _ckpt_name(epoch))
  # One name for all processes of a run; the directory lock excludes
  # writers of other runs.
  tmp = os.path.join(checkpoint_dir, f".tmp_{_ckpt_name(epoch)}")
  chief = distributed.is_chief()
  if chief and os.path.lexists(tmp):
    shutil.rmtree(tmp)
  distributed.barrier(f"jaxbdl_resume_tmp_{epoch}")
  os.makedirs(tmp, exist_ok=True)
  try:
    checkpoint.save(os.path.join(tmp, "fit"),
                    {"state": fit_state, "history": history}, step=epoch)
    if chief:
      manifest = {"epoch": epoch, "key_data": key_data,
                  "fingerprint": dict(fingerprint),
                  "history": {k: [list(np.shape(v)), np.asarray(v).dtype.name]
                              for k, v in history.items()},
                  "files": _file_digests(tmp)}
      results_lib.atomic_write_json(os.path.join(tmp, _MANIFEST), manifest)
      if os.path.lexists(final):  # A stale one from before a fallback.
        shutil.rmtree(final)
      os.replace(tmp, final)
  except BaseException:
    if chief:
      shutil.rmtree(tmp, ignore_errors=True)
    raise
  if chief:
    for _, old in list_checkpoints(checkpoint_dir)[keep:]:
      shutil.rmtree(old, ignore_errors=True)
  distributed.barrier(f"jaxbdl_resume_written_{epoch}")
  return final


def _clean_tmp(checkpoint_dir: str) -> None:
  """Removes temporary checkpoints left by a killed writer (chief only; the
  directory lock guarantees that no live writer owns them)."""
  if distributed.is_chief():
    for name in os.listdir(checkpoint_dir):
      if name.startswith(".tmp_ckpt_"):
        shutil.rmtree(os.path.join(checkpoint_dir, name), ignore_errors=True)
  distributed.barrier("jaxbdl_resume_clean_tmp")


def _remove_checkpoints(checkpoint_dir: str) -> None:
  """``overwrite=True``: deletes every checkpoint of the previous run."""
  if distributed.is_chief():
    for name in os.listdir(checkpoint_dir):
      path = os.path.join(checkpoint_dir, name)
      if _CKPT_RE.match(name.removesuffix(".corrupt")) or name.startswith(
          ".tmp_ckpt_"):
        logging.warning("overwrite: deleting %s", path)
        if os.path.isdir(path) and not os.path.islink(path):
          shutil.rmtree(path)
        else:
          os.remove(path)
  distributed.barrier("jaxbdl_resume_overwrite")
# ---------------------------------------------------------------------------
# The fit.


def _concat_history(old: Optional[dict], new: dict) -> dict:
  new = {k: np.asarray(v) for k, v in new.items()}
  if not old:
    return new
  if set(old) != set(new):
    raise ValueError(f"restored history keys {sorted(old)} differ from this "
                     f"fitter's {sorted(new)}")
  return {k: np.concatenate([np.asarray(old[k]), new[k]], axis=-1)
          for k in new}


def _first_nonfinite(hist: dict, epoch0: int, steps0: np.ndarray,
                     steps1: np.ndarray, ckpt_path: Optional[str],
                     params_finite: bool) -> Optional[NonFiniteError]:
  """Builds the error for the first epoch with ``finite == 0``, if any."""
  finite = np.asarray(hist["finite"])  # [..., n]; NaN for frozen epochs.
  bad = finite == 0.0
  if not bad.any():
    return None
  n = finite.shape[-1]
  bad2 = bad.reshape(-1, n)
  first_epoch = bad2.argmax(axis=-1)
  first_epoch = np.where(bad2.any(axis=-1), first_epoch, n)
  run = int(first_epoch.argmin())
  e = int(first_epoch[run])
  loss = np.asarray(hist["loss"]).reshape(-1, n)[run, e]
  if not params_finite:  # NaN parameters: every later loss is NaN too.
    quantity = "loss or gradient"
  else:
    quantity = "gradient" if np.isfinite(loss) else "loss"
  s0 = int(np.asarray(steps0).reshape(-1)[run])
  s1 = int(np.asarray(steps1).reshape(-1)[run])
  per_epoch = max((s1 - s0) // n, 1)
  first, last = s0 + e * per_epoch, s0 + (e + 1) * per_epoch - 1
  run_txt = "" if finite.ndim == 1 else f"run {run}, "
  msg = (f"non-finite {quantity} during training ({run_txt}epoch {epoch0 + e}"
         f", global steps {first}..{last}; epoch mean loss {loss}); stopped. "
         f"Last good checkpoint: {ckpt_path or 'none'}. Lower the learning "
         "rate, check the data, or use on_nonfinite='skip'.")
  return NonFiniteError(msg, epoch=epoch0 + e, steps=(first, last),
                        quantity=quantity,
                        run=None if finite.ndim == 1 else run,
                        checkpoint_path=ckpt_path)


@functools.lru_cache(maxsize=64)
def _jitted_chunk(run_epochs: Callable, num_epochs: int) -> Callable:
  """``jax.jit`` of ``run_epochs`` for a chunk length; cached per fitter, so
  repeated fits with one fitter compile once per chunk length."""
  return jax.jit(functools.partial(run_epochs, num_epochs=num_epochs))


@functools.lru_cache(maxsize=64)
def _jitted_init(init: Callable) -> Callable:
  return jax.jit(init)


def _validate(num_epochs, checkpoint_every_epochs, keep, on_nonfinite,
              checkpoint_dir) -> None:
  for name, v in (("num_epochs", num_epochs),
                  ("checkpoint_every_epochs", checkpoint_every_epochs),
                  ("keep", keep)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f"{name} must be a positive int, got {v!r}")
  step_wrapper_for(on_nonfinite)
  if not checkpoint_dir:
    raise ValueError("checkpoint_dir must be a non-empty path")
  if os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
    raise NotADirectoryError(f"checkpoint_dir {checkpoint_dir!r} exists and "
                             "is not a directory")


@contextlib.contextmanager
def _catch_signals(enabled: bool) -> Iterator[dict]:
  """While active, SIGTERM/SIGINT only set ``caught["signum"]`` (a second
  one gets the previous handler: the default kill / KeyboardInterrupt)."""
  caught = {"signum": None}
  if not enabled or threading.current_thread() is not threading.main_thread():
    yield caught
    return
  previous = {}

  def handler(signum, frame):
    del frame
    if caught["signum"] is not None:
      signal.signal(signum, previous.get(signum, signal.SIG_DFL))
      os.kill(os.getpid(), signum)
      return
    caught["signum"] = signum
    logging.warning("Received %s: finishing the current chunk, then "
                    "checkpointing and stopping", signal.Signals(signum).name)

  for signum in (signal.SIGTERM, signal.SIGINT):
    previous[signum] = signal.signal(signum, handler)
  try:
    yield caught
  finally:
    for signum, old in previous.items():
      signal.signal(signum, old)


def resumable_fit(fitter: train.Fitter,
                  state: train.TrainState,
                  train_data: PyTree,
                  key: jax.Array,
                  valid_data: Optional[PyTree] = None,
                  *,
                  num_epochs: int,
                  checkpoint_dir: str,
                  checkpoint_every_epochs: int,
                  keep: int = 3,
                  on_nonfinite: str = "stop",
                  on_checkpoint: Optional[Callable[[int, str], None]] = None,
                  fingerprint: Optional[Mapping] = None,
                  overwrite: bool = False,
                  handle_signals: bool = True) -> FitResult:
  """Runs ``fitter`` for ``num_epochs`` with checkpoints; resumes if possible.

  Args:
    fitter: from :func:`jaxbdl.training.train.make_fitter` (or a run-vmapped one from
      :func:`jaxbdl.training.parallel.vmap_fitter`; then ``state`` and ``key`` carry a
      leading run axis ``[R]``). Build it with
      ``step_wrapper=step_wrapper_for(on_nonfinite)``.
    state: the initial train state (used fresh, and as the restore target).
      Place it (``jaxbdl.training.parallel.Strategy.state``) before calling.
    train_data: pytree of arrays ``[N, ...]`` (``[R, N, ...]`` for per-run
      data); checked for NaN/inf here.
    key: the run's PRNG key (typed, ``jax.random.key``); epoch ``e`` uses
      ``fold_in(key, e)``. Its key data is stored in each manifest and must
      match on resume.
    valid_data: for a fitter with ``eval_fn``.
    num_epochs: total epochs of the run (including restored ones).
    checkpoint_dir: directory of the checkpoints (created, and locked for
      the duration of the call: :func:`workdir_lock`).
    checkpoint_every_epochs: chunk length; a checkpoint after every chunk and
      after the last epoch.
    keep: number of newest good checkpoints kept.
    on_nonfinite: ``"stop"`` (raise :class:`NonFiniteError`) or ``"skip"``.
    on_checkpoint: optional ``on_checkpoint(epoch, path)`` called after each
      checkpoint is on disk (progress reports, tests).
    fingerprint: flat mapping of what else defines the run (e.g.
      :func:`run_fingerprint` of the config and the test data). The digests
      of ``train_data``/``valid_data`` and the versions of
      :data:`VERSION_PACKAGES` are always added. Stored in every manifest;
      resuming from a checkpoint whose fingerprint differs raises
      :class:`RunMismatchError`.
    overwrite: delete the checkpoints found in ``checkpoint_dir`` and start
      from epoch 0 (the way to re-run with changed settings).
    handle_signals: catch SIGTERM/SIGINT (main thread only): the chunk in
      flight is finished and checkpointed, then :class:`Preempted` is raised.

  Returns:
    :class:`FitResult`.

  Raises:
    ValueError: bad arguments, NaN/inf in the data, a checkpoint of a
      different run (key), or restored history that does not fit.
    RunMismatchError: the newest intact checkpoint has another fingerprint.
    WorkdirLockedError: another process holds ``checkpoint_dir``.
    Preempted: a SIGTERM/SIGINT arrived; the work so far is checkpointed.
    NonFiniteError: ``on_nonfinite="stop"`` and a step's loss or gradient was
      NaN/inf; or ``"skip"`` with a fitter that does not skip.
  """
  _validate(num_epochs, checkpoint_every_epochs, keep, on_nonfinite,
            checkpoint_dir)
  host_train = distributed.to_host(train_data)
  train.check_finite_data(host_train, "train_data")
  data = {"train_data": host_train}
  if valid_data is not None:
    data["valid_data"] = distributed.to_host(valid_data)
    train.check_finite_data(data["valid_data"], "valid_data")
  full_fingerprint = run_fingerprint(None, **data)
  full_fingerprint.pop("config", None)
  _flatten("", dict(fingerprint or {}), full_fingerprint)
  del host_train, data
  checkpoint_dir = os.path.abspath(os.path.expanduser(checkpoint_dir))
  os.makedirs(checkpoint_dir, exist_ok=True)
  with workdir_lock(checkpoint_dir), _catch_signals(handle_signals) as caught:
    return _fit_locked(fitter, state, train_data, key, valid_data,
                       num_epochs=num_epochs, checkpoint_dir=checkpoint_dir,
                       checkpoint_every_epochs=checkpoint_every_epochs,
                       keep=keep, on_nonfinite=on_nonfinite,
                       on_checkpoint=on_checkpoint,
                       fingerprint=full_fingerprint, overwrite=overwrite,
                       caught=caught)


def _fit_locked(fitter, state, train_data, key, valid_data, *, num_epochs,
                checkpoint_dir, checkpoint_every_epochs, keep, on_nonfinite,
                on_checkpoint, fingerprint, overwrite, caught) -> FitResult:
  """:func:`resumable_fit` once the directory is locked."""
  if overwrite:
    _remove_checkpoints(checkpoint_dir)
  _clean_tmp(checkpoint_dir)
  key_data = _key_data(key)

  fit_state = _jitted_init(fitter.init)(state)
  history = None
  found = latest_good_checkpoint(checkpoint_dir, fit_state, key, fingerprint)
  epoch, ckpt_path = 0, None
  if found is not None:
    epoch, fit_state, history, ckpt_path = found
    if epoch > num_epochs:
      raise ValueError(f"checkpoint {ckpt_path} holds {epoch} epochs, more "
                       f"than num_epochs={num_epochs}")
    logging.info("Resuming from %s (epoch %d of %d)", ckpt_path, epoch,
                 num_epochs)
  elif list_checkpoints(checkpoint_dir) or any(
      n.endswith(".corrupt") for n in os.listdir(checkpoint_dir)):
    logging.warning("No good checkpoint in %s: starting from epoch 0",
                    checkpoint_dir)
  resumed_from = epoch

  while epoch < num_epochs:
    if distributed.any_process(caught["signum"] is not None):
      signum = caught["signum"] or signal.SIGTERM
      msg = (f"Preempted by {signal.Signals(signum).name}: stopped after epoch"
             f" {epoch} of {num_epochs}; last checkpoint "
             f"{ckpt_path or 'none'}; exit code {PREEMPTED_EXIT_CODE}. Run the"
             " same command again to resume")
      logging.warning("%s", msg)
      raise Preempted(msg, signum=int(signum), epoch=epoch,
                      checkpoint_path=ckpt_path)
    n = min(checkpoint_every_epochs - epoch % checkpoint_every_epochs,
            num_epochs - epoch)
    steps0 = distributed.to_host(fit_state.train.step)
    new_state, hist = _jitted_chunk(fitter.run_epochs, n)(
        fit_state, train_data, key, valid_data)
    hist = distributed.to_host(hist)
    params_finite = all(np.all(np.isfinite(x)) for x in
                        jax.tree_util.tree_leaves(
                            distributed.to_host(new_state.train.params)))
    err = _first_nonfinite(hist, epoch, steps0,
                           distributed.to_host(new_state.train.step),
                           ckpt_path, params_finite)
    if err is not None:
      if on_nonfinite == "stop":
        logging.error("%s", err)
        raise err
      if not params_finite:
        raise NonFiniteError(
            f"on_nonfinite='skip' but the parameters became NaN/inf in epochs "
            f"{epoch}..{epoch + n - 1}: build the fitter with "
            "step_wrapper=resume.step_wrapper_for('skip') "
            "(jaxbdl.training.train.skip_nonfinite)", epoch=err.epoch,
            steps=err.steps, quantity=err.quantity, run=err.run,
            checkpoint_path=ckpt_path)
      logging.warning("Skipped non-finite steps in %d epoch(s) of epochs "
                      "%d..%d (first: %s)",
                      int(np.sum(np.asarray(hist["finite"]) == 0)), epoch,
                      epoch + n - 1, err)
    fit_state = new_state
    history = _concat_history(history, hist)
    epoch += n
    ckpt_path = _write_checkpoint(checkpoint_dir, epoch, fit_state, history,
                                  key_data, fingerprint, keep)
    logging.info("Checkpoint %s written (epoch %d of %d)", ckpt_path, epoch,
                 num_epochs)
    if on_checkpoint is not None:
      on_checkpoint(epoch, ckpt_path)

  history = dict(history or {})
  es = distributed.to_host(fit_state.early_stopping)
  history["best_epoch"] = np.asarray(es.best_epoch)
  history["stopped_epoch"] = np.asarray(es.stopped_epoch)
  return FitResult(fitter.result(fit_state), history, fit_state, resumed_from)
