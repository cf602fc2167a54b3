"""A directory of verified checkpoints of a resumable fit.

Layout (one directory per checkpoint, epochs done in the name)::

  checkpoint_dir/
    LOCK              flock'ed by the running fit, holds its pid
    ckpt_000004/
      fit/            orbax checkpoint (jaxbdl.training.checkpoint) of
                      {"state": FitState, "history": per-epoch metrics so far}
      MANIFEST.json   epoch, key data, run fingerprint, history shapes, and
                      the SHA-256 and size of every file under fit/

A checkpoint is written under a temporary name, its manifest last, and renamed
into place (atomic on POSIX), so a kill never leaves a half-written
``ckpt_*`` (:func:`write_checkpoint`). :func:`latest_good_checkpoint`
verifies the newest checkpoint against its manifest (missing, truncated or
garbled files; anything but regular files and directories, e.g. a FIFO or a
symlink, is never opened; the manifest's epoch must match the directory's
name and the restored epoch counter), restores it against the expected tree
and checks it for NaN/inf; a bad one is reported with a logging warning
naming the file and moved aside to ``ckpt_XXXXXX.corrupt``, and the previous
one is tried. With several processes (:mod:`jaxbdl.training.distributed`)
orbax writes each process's shards; process 0 alone writes manifests,
renames, prunes and moves bad checkpoints aside.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from typing import Any, Mapping, Optional

import jax
import numpy as np
from absl import logging

from jaxbdl.training import checkpoint
from jaxbdl.training import distributed
from jaxbdl.training import fingerprint as fingerprint_lib
from jaxbdl.evaluation import results as results_lib
from jaxbdl.training import train

__all__ = ["list_checkpoints", "latest_good_checkpoint", "write_checkpoint",
           "key_data", "clean_tmp", "remove_checkpoints"]

PyTree = Any
_CKPT_RE = re.compile(r"^ckpt_(\d{6,})$")
_MANIFEST = "MANIFEST.json"


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


def key_data(key: jax.Array) -> list:
  """The key's data, a flat list (stored in each manifest; must match on resume)."""
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
    fingerprint_lib.check_fingerprint(path, manifest.get("fingerprint"), fingerprint)
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
  stored_key = key_data(key)
  for epoch, path in list_checkpoints(checkpoint_dir):
    try:
      got_epoch, fit_state, history = _restore(path, target, stored_key,
                                               fingerprint)
    except _BadCheckpoint as e:
      _move_aside(path, str(e))
      continue
    assert got_epoch == epoch
    distributed.barrier(f"jaxbdl_resume_restored_{epoch}")
    return epoch, fit_state, history, path
  distributed.barrier("jaxbdl_resume_restored_none")
  return None


def write_checkpoint(checkpoint_dir: str, epoch: int,
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


def clean_tmp(checkpoint_dir: str) -> None:
  """Removes temporary checkpoints left by a killed writer (chief only; the
  directory lock guarantees that no live writer owns them)."""
  if distributed.is_chief():
    for name in os.listdir(checkpoint_dir):
      if name.startswith(".tmp_ckpt_"):
        shutil.rmtree(os.path.join(checkpoint_dir, name), ignore_errors=True)
  distributed.barrier("jaxbdl_resume_clean_tmp")


def remove_checkpoints(checkpoint_dir: str) -> None:
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
