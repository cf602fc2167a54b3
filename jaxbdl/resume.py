"""Checkpointed, resumable fits that survive kills, corrupt files and NaNs.

:func:`resumable_fit` runs a :class:`jaxbdl.train.Fitter` in chunks of
``checkpoint_every_epochs`` epochs and checkpoints the whole
:class:`jaxbdl.train.FitState` (parameters, optimiser state, early-stopping
state, epoch and step counters) plus the per-epoch history after every chunk.
The randomness of epoch ``e`` is ``fold_in(key, e)`` (see :mod:`jaxbdl.train`),
so no key state is stored: a run killed at any moment and restarted with the
same ``checkpoint_dir`` and key resumes from the latest good checkpoint and
replays exactly the computation of an uninterrupted run (bitwise on CPU; the
chunk boundaries are multiples of ``checkpoint_every_epochs`` counted from
epoch 0, so a resumed run compiles and runs the same chunks).

Checkpoint layout (one directory per checkpoint, epochs done in the name)::

  checkpoint_dir/
    ckpt_000004/
      fit/            orbax checkpoint (jaxbdl.checkpoint) of
                      {"state": FitState, "history": per-epoch metrics so far}
      MANIFEST.json   epoch, key data, history shapes, and the SHA-256 and
                      size of every file under fit/

A checkpoint is written under a temporary name, its manifest last, and renamed
into place (atomic on POSIX), so a kill never leaves a half-written
``ckpt_*``. On restart the newest checkpoint is verified against its manifest
(missing, truncated or garbled files), restored against the expected tree and
checked for NaN/inf; a bad one is reported with a logging warning naming the
file and moved aside to ``ckpt_XXXXXX.corrupt``, and the previous one is tried.

Non-finite numerics: every step reports ``"finite"`` (loss and all gradients
finite). Build the fitter with ``step_wrapper=step_wrapper_for(on_nonfinite)``
(that is :func:`jaxbdl.train.skip_nonfinite` in both modes): a bad step then
leaves the state unchanged, so it cannot poison the later steps of its chunk,
and the epoch's mean loss tells a non-finite loss (mean loss NaN/inf) from a
non-finite gradient with a finite loss. With ``on_nonfinite="stop"`` the chunk
holding the first bad step is discarded and :class:`NonFiniteError` names the
run, epoch, global step range and quantity (loss or gradient); the last good
checkpoint stays the newest on disk. With ``on_nonfinite="skip"`` the chunk is
kept and the skipped steps are reported in a warning.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np
from absl import logging

from jaxbdl import checkpoint
from jaxbdl import results as results_lib
from jaxbdl import train

__all__ = ["ON_NONFINITE", "NonFiniteError", "FitResult", "step_wrapper_for",
           "resumable_fit", "list_checkpoints", "latest_good_checkpoint"]

PyTree = Any
ON_NONFINITE = ("stop", "skip")
_CKPT_RE = re.compile(r"^ckpt_(\d{6,})$")
_MANIFEST = "MANIFEST.json"


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


class FitResult(NamedTuple):
  """What :func:`resumable_fit` returns.

  Attributes:
    state: the :class:`jaxbdl.train.TrainState` of ``fitter.result`` (best
      parameters under early stopping).
    history: per-epoch metrics ``[..., num_epochs]`` (the epoch axis last, a
      leading run axis for a vmapped fitter) plus ``"best_epoch"`` and
      ``"stopped_epoch"``, as returned by :func:`jaxbdl.train.make_fit`.
    fit_state: the final :class:`jaxbdl.train.FitState`.
    resumed_from: epochs restored from a checkpoint (0 for a fresh start).
  """
  state: train.TrainState
  history: dict
  fit_state: train.FitState
  resumed_from: int


def step_wrapper_for(on_nonfinite: str) -> Optional[Callable]:
  """The ``step_wrapper`` for ``make_fitter`` to use with ``on_nonfinite``.

  :func:`jaxbdl.train.skip_nonfinite` for both ``"stop"`` and ``"skip"``: in
  ``"stop"`` mode the chunk with a bad step is discarded anyway, and skipping
  inside it keeps the parameters finite, which lets :func:`resumable_fit`
  tell a non-finite loss from a non-finite gradient.
  """
  if on_nonfinite not in ON_NONFINITE:
    raise ValueError(f"on_nonfinite must be one of {list(ON_NONFINITE)}, got "
                     f"{on_nonfinite!r}")
  return train.skip_nonfinite


# ---------------------------------------------------------------------------
# Checkpoint directories: naming, manifests, verification.


def _ckpt_name(epoch: int) -> str:
  return f"ckpt_{epoch:06d}"


def list_checkpoints(checkpoint_dir: str) -> list[tuple[int, str]]:
  """``(epoch, path)`` of every ``ckpt_*`` directory, newest first."""
  if not os.path.isdir(checkpoint_dir):
    return []
  found = []
  for name in os.listdir(checkpoint_dir):
    m = _CKPT_RE.match(name)
    path = os.path.join(checkpoint_dir, name)
    if m and os.path.isdir(path):
      found.append((int(m.group(1)), path))
  return sorted(found, reverse=True)


def _file_digests(root: str) -> dict[str, list]:
  """``{relative path: [size, sha256]}`` of every file under ``root``."""
  out = {}
  for dirpath, _, files in os.walk(root):
    for f in files:
      path = os.path.join(dirpath, f)
      rel = os.path.relpath(path, root)
      if rel == _MANIFEST:
        continue
      h = hashlib.sha256()
      with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
          h.update(block)
      out[rel] = [os.path.getsize(path), h.hexdigest()]
  return out


def _verify_files(path: str) -> dict:
  """Checks ``path`` against its manifest; returns the manifest.

  Raises:
    ValueError: naming the missing/truncated/garbled/unexpected file.
  """
  mpath = os.path.join(path, _MANIFEST)
  if not os.path.isfile(mpath):
    raise ValueError(f"{mpath} is missing (incomplete checkpoint)")
  try:
    with open(mpath) as f:
      manifest = json.load(f)
    files = manifest["files"]
    int(manifest["epoch"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{mpath} is unreadable: {e}") from e
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
  return np.asarray(jax.random.key_data(key)).reshape(-1).tolist()


def _host_sharding():
  """Where restored history goes: this process's first device."""
  return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


class _BadCheckpoint(Exception):
  """A checkpoint that is incomplete, damaged or unreadable."""


def _restore(path: str, target: train.FitState, key_data: list
             ) -> tuple[int, train.FitState, dict]:
  """Verifies and restores one checkpoint.

  Raises:
    _BadCheckpoint: damaged (fall back to an older one).
    ValueError: a checkpoint of another run (different key or tree); not
      damage, so the caller must not silently fall back.
  """
  try:
    manifest = _verify_files(path)
  except ValueError as e:
    raise _BadCheckpoint(str(e)) from e
  if manifest.get("key_data") != key_data:
    raise ValueError(f"checkpoint {path} was written by a run with a different"
                     " PRNG key; use the same key or another checkpoint_dir")
  state_path = os.path.join(path, "fit")
  try:
    hist_target = {
        k: jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype),
                                sharding=_host_sharding())
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
  try:
    _check_restored_finite(path, fit_state.train)
  except ValueError as e:
    raise _BadCheckpoint(str(e)) from e
  return int(manifest["epoch"]), fit_state, dict(history)


def latest_good_checkpoint(checkpoint_dir: str, target: train.FitState,
                           key: jax.Array):
  """Restores the newest checkpoint that verifies; moves bad ones aside.

  Args:
    checkpoint_dir: the directory of ``ckpt_*`` checkpoints.
    target: a FitState with the expected structure, shapes, dtypes (and
      shardings), e.g. ``fitter.init(state)``.
    key: the run's key; a checkpoint written with another key is an error.

  Returns:
    ``(epoch, fit_state, history, path)`` or ``None`` if there is no good
    checkpoint. Each bad checkpoint is reported with ``logging.warning``.

  Raises:
    ValueError: a checkpoint of a run with a different key or a different
      parameter/optimiser tree (not damage, so no silent fallback).
  """
  key_data = _key_data(key)
  for epoch, path in list_checkpoints(checkpoint_dir):
    try:
      got_epoch, fit_state, history = _restore(path, target, key_data)
    except _BadCheckpoint as e:
      aside = path + ".corrupt"
      logging.warning("Bad checkpoint %s skipped, falling back to the previous"
                      " one: %s (moved to %s)", path, e, aside)
      if os.path.exists(aside):
        shutil.rmtree(aside)
      os.replace(path, aside)
      continue
    if got_epoch != epoch:
      logging.warning("Checkpoint %s says epoch %d; using %d", path, got_epoch,
                      epoch)
    return epoch, fit_state, history, path
  return None


def _write_checkpoint(checkpoint_dir: str, epoch: int,
                      fit_state: train.FitState, history: dict,
                      key_data: list, keep: int) -> str:
  """Writes ``ckpt_{epoch}`` atomically and deletes all but ``keep`` newest."""
  final = os.path.join(checkpoint_dir, _ckpt_name(epoch))
  tmp = os.path.join(checkpoint_dir, f".tmp_{_ckpt_name(epoch)}_{os.getpid()}")
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  try:
    checkpoint.save(os.path.join(tmp, "fit"),
                    {"state": fit_state, "history": history}, step=epoch)
    manifest = {"epoch": epoch, "key_data": key_data,
                "history": {k: [list(np.shape(v)), np.asarray(v).dtype.name]
                            for k, v in history.items()},
                "files": _file_digests(tmp)}
    results_lib.atomic_write_json(os.path.join(tmp, _MANIFEST), manifest)
    if os.path.exists(final):  # A stale one from before a fallback.
      shutil.rmtree(final)
    os.replace(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  for _, old in list_checkpoints(checkpoint_dir)[keep:]:
    shutil.rmtree(old, ignore_errors=True)
  return final


def _clean_tmp(checkpoint_dir: str) -> None:
  """Removes temporary checkpoints left by a killed writer."""
  for name in os.listdir(checkpoint_dir):
    if name.startswith(".tmp_ckpt_"):
      shutil.rmtree(os.path.join(checkpoint_dir, name), ignore_errors=True)


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
                  on_checkpoint: Optional[Callable[[int, str], None]] = None
                  ) -> FitResult:
  """Runs ``fitter`` for ``num_epochs`` with checkpoints; resumes if possible.

  Args:
    fitter: from :func:`jaxbdl.train.make_fitter` (or a run-vmapped one from
      :func:`jaxbdl.parallel.vmap_fitter`; then ``state`` and ``key`` carry a
      leading run axis ``[R]``). Build it with
      ``step_wrapper=step_wrapper_for(on_nonfinite)``.
    state: the initial train state (used fresh, and as the restore target).
      Place it (``jaxbdl.parallel.Strategy.state``) before calling.
    train_data: pytree of arrays ``[N, ...]`` (``[R, N, ...]`` for per-run
      data); checked for NaN/inf here.
    key: the run's PRNG key (typed, ``jax.random.key``); epoch ``e`` uses
      ``fold_in(key, e)``. Its key data is stored in each manifest and must
      match on resume.
    valid_data: for a fitter with ``eval_fn``.
    num_epochs: total epochs of the run (including restored ones).
    checkpoint_dir: directory of the checkpoints (created).
    checkpoint_every_epochs: chunk length; a checkpoint after every chunk and
      after the last epoch.
    keep: number of newest good checkpoints kept.
    on_nonfinite: ``"stop"`` (raise :class:`NonFiniteError`) or ``"skip"``.
    on_checkpoint: optional ``on_checkpoint(epoch, path)`` called after each
      checkpoint is on disk (progress reports, tests).

  Returns:
    :class:`FitResult`.

  Raises:
    ValueError: bad arguments, NaN/inf in the data, a checkpoint of a
      different run (key), or restored history that does not fit.
    NonFiniteError: ``on_nonfinite="stop"`` and a step's loss or gradient was
      NaN/inf; or ``"skip"`` with a fitter that does not skip.
  """
  _validate(num_epochs, checkpoint_every_epochs, keep, on_nonfinite,
            checkpoint_dir)
  train.check_finite_data(train_data, "train_data")
  if valid_data is not None:
    train.check_finite_data(valid_data, "valid_data")
  checkpoint_dir = os.path.abspath(os.path.expanduser(checkpoint_dir))
  os.makedirs(checkpoint_dir, exist_ok=True)
  _clean_tmp(checkpoint_dir)
  key_data = _key_data(key)

  fit_state = _jitted_init(fitter.init)(state)
  history = None
  found = latest_good_checkpoint(checkpoint_dir, fit_state, key)
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
    n = min(checkpoint_every_epochs - epoch % checkpoint_every_epochs,
            num_epochs - epoch)
    steps0 = np.asarray(fit_state.train.step)
    new_state, hist = _jitted_chunk(fitter.run_epochs, n)(
        fit_state, train_data, key, valid_data)
    hist = jax.device_get(hist)
    params_finite = all(np.all(np.isfinite(np.asarray(x))) for x in
                  jax.tree_util.tree_leaves(new_state.train.params))
    err = _first_nonfinite(hist, epoch, steps0,
                           np.asarray(new_state.train.step), ckpt_path,
                           params_finite)
    if err is not None:
      if on_nonfinite == "stop":
        logging.error("%s", err)
        raise err
      if not params_finite:
        raise NonFiniteError(
            f"on_nonfinite='skip' but the parameters became NaN/inf in epochs "
            f"{epoch}..{epoch + n - 1}: build the fitter with "
            "step_wrapper=resume.step_wrapper_for('skip') "
            "(jaxbdl.train.skip_nonfinite)", epoch=err.epoch,
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
                                  key_data, keep)
    logging.info("Checkpoint %s written (epoch %d of %d)", ckpt_path, epoch,
                 num_epochs)
    if on_checkpoint is not None:
      on_checkpoint(epoch, ckpt_path)

  history = dict(history or {})
  history["best_epoch"] = np.asarray(fit_state.early_stopping.best_epoch)
  history["stopped_epoch"] = np.asarray(
      fit_state.early_stopping.stopped_epoch)
  return FitResult(fitter.result(fit_state), history, fit_state, resumed_from)
