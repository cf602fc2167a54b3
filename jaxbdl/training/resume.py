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

The checkpoints, their manifests and their verification live in
:mod:`jaxbdl.training.checkpoint_store`: a bad checkpoint is reported with a
logging warning naming the file, moved aside to ``ckpt_XXXXXX.corrupt``, and
the previous one is tried.

What cannot go wrong silently:

* Another run's checkpoint. Every manifest carries the run's fingerprint
  (:mod:`jaxbdl.training.fingerprint`, :func:`run_fingerprint`: the caller's
  config, digests of the data, the versions of :data:`VERSION_PACKAGES`); a
  mismatch raises
  :class:`RunMismatchError` naming the fields, before anything is touched.
  ``overwrite=True`` starts over.
* Two writers. The fit holds :func:`workdir_lock`
  (:mod:`jaxbdl.training.lock`) on ``checkpoint_dir``; a
  second one raises :class:`WorkdirLockedError` naming the holder's pid.
* Preemption. SIGTERM/SIGINT let the chunk in flight finish and be
  checkpointed, then :class:`Preempted` is raised (exit code
  :data:`PREEMPTED_EXIT_CODE`, :mod:`jaxbdl.training.preemption`); the same
  call resumes bitwise.
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

import functools
import os
import signal
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import numpy as np
from absl import logging

from jaxbdl.training import checkpoint_store
from jaxbdl.training import distributed
from jaxbdl.training import fingerprint as fingerprint_lib
from jaxbdl.training import preemption
from jaxbdl.training import train
# Re-exported: resume's public names from before the split.
from jaxbdl.training.checkpoint_store import latest_good_checkpoint
from jaxbdl.training.checkpoint_store import list_checkpoints
from jaxbdl.training.fingerprint import RunMismatchError
from jaxbdl.training.fingerprint import VERSION_PACKAGES
from jaxbdl.training.fingerprint import data_digests
from jaxbdl.training.fingerprint import run_fingerprint
from jaxbdl.training.lock import WorkdirLockedError
from jaxbdl.training.lock import workdir_lock
from jaxbdl.training.preemption import PREEMPTED_EXIT_CODE

__all__ = ["ON_NONFINITE", "PREEMPTED_EXIT_CODE", "VERSION_PACKAGES",
           "NonFiniteError", "RunMismatchError", "WorkdirLockedError",
           "Preempted", "FitResult", "step_wrapper_for", "run_fingerprint",
           "data_digests", "workdir_lock", "resumable_fit", "list_checkpoints",
           "latest_good_checkpoint"]

PyTree = Any
ON_NONFINITE = ("stop", "skip")


def _where(error: Exception, epoch: int, checkpoint_path: Optional[str]):
  """Sets where a stopped run stands: ``epoch`` and ``checkpoint``."""
  error.epoch = epoch
  error.checkpoint = checkpoint_path


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
    _where(self, epoch, checkpoint_path)
    self.steps, self.quantity, self.run = steps, quantity, run


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
    _where(self, epoch, checkpoint_path)
    self.signal, self.exit_code = signum, PREEMPTED_EXIT_CODE


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
  fingerprint_lib.flatten_record("", dict(fingerprint or {}), full_fingerprint)
  del host_train, data
  checkpoint_dir = os.path.abspath(os.path.expanduser(checkpoint_dir))
  os.makedirs(checkpoint_dir, exist_ok=True)
  with (workdir_lock(checkpoint_dir),
        preemption.catch_signals(handle_signals) as caught):
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
    checkpoint_store.remove_checkpoints(checkpoint_dir)
  checkpoint_store.clean_tmp(checkpoint_dir)
  key_data = checkpoint_store.key_data(key)

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
    ckpt_path = checkpoint_store.write_checkpoint(
        checkpoint_dir, epoch, fit_state, history, key_data, fingerprint, keep)
    logging.info("Checkpoint %s written (epoch %d of %d)", ckpt_path, epoch,
                 num_epochs)
    if on_checkpoint is not None:
      on_checkpoint(epoch, ckpt_path)

  history = dict(history or {})
  es = distributed.to_host(fit_state.early_stopping)
  history["best_epoch"] = np.asarray(es.best_epoch)
  history["stopped_epoch"] = np.asarray(es.stopped_epoch)
  return FitResult(fitter.result(fit_state), history, fit_state, resumed_from)
