"""The one training loop: jitted steps, scanned epochs, early stopping, vmapped runs.

For the small networks of Bayesian deep learning, Python dispatch per step costs
more than the arithmetic, so a whole epoch (and a whole fit) runs inside one
compiled program: ``jax.lax.scan`` over minibatches, then over epochs. Every
function here is pure, so a fit can be ``jax.vmap``-ed over seeds, ensemble
members, hyper-parameter values or data splits and ``K`` runs train as one
program.

Pieces, from small to large::
Pieces, from small to large (the step and the epoch are
:mod:`jaxbdl.training.steps`, re-exported here)::
  loss_fn(params, model_state, batch, key) -> (loss, (model_state, metrics))
  step  = make_train_step(loss_fn, optimizer)   # (state, batch, key) -> (state, metrics)
  jstep = jit_step(step, key)                   # jitted (state, batch) -> (state, metrics)
  epoch = make_epoch(step, batch_size)          # (state, data, key) -> (state, mean metrics)
  fitter = make_fitter(loss_fn, optimizer, batch_size=..., eval_fn=..., patience=...)
  fit   = make_fit(loss_fn, optimizer, num_epochs=..., batch_size=...)
          # (state, train_data, key, valid_data=None) -> (state, history)

Randomness: the key of epoch ``e`` is ``fold_in(key, e)``; inside it the
shuffle uses one half of that key and step ``t`` uses ``fold_in(other half, t)``
with ``t`` the global step counter. There is no key state, so a fit run in
chunks of epochs (``Fitter.run_epochs``, e.g. between checkpoints) replays the
same randomness as one uninterrupted fit.

Early stopping (``patience``) happens inside the scan: once the validation
metric (lower is better) has not improved by ``min_delta`` for ``patience``
epochs, later epochs leave the state unchanged, and the returned state holds
the parameters of the best epoch. This keeps a vmapped sweep in lock-step while
each run stops at its own epoch.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbdl.training import progress
# Re-exported: the step and the epoch.
from jaxbdl.training.steps import LossFn
from jaxbdl.training.steps import TrainState
from jaxbdl.training.steps import init_train_state
from jaxbdl.training.steps import jit_step
from jaxbdl.training.steps import make_epoch
from jaxbdl.training.steps import make_train_step
from jaxbdl.training.steps import num_batches
from jaxbdl.training.steps import skip_nonfinite

__all__ = ["TrainState", "init_train_state", "make_train_step", "jit_step",
           "skip_nonfinite", "num_batches", "make_epoch", "EarlyStoppingState",
           "FitState", "Fitter", "make_fitter", "make_fit", "check_finite_data"]

PyTree = Any
Metrics = Mapping[str, jax.Array]
EvalFn = Callable[[PyTree, PyTree, PyTree], jax.Array]


class EarlyStoppingState(NamedTuple):
  """Best-so-far bookkeeping carried through the epoch scan.

  Attributes:
    best_params / best_model_state: parameters and model state of the best
      epoch so far.
    best_metric: float32 scalar, best validation metric (lower is better).
    best_epoch: int32 scalar, 0-based epoch of ``best_metric`` (-1 before any).
    bad_epochs: int32 scalar, epochs since the last improvement.
    stopped: bool scalar, True once patience ran out.
    stopped_epoch: int32 scalar, the epoch at which it stopped (-1 if not).
  """
  best_params: PyTree
  best_model_state: PyTree
  best_metric: jax.Array
  best_epoch: jax.Array
  bad_epochs: jax.Array
  stopped: jax.Array
  stopped_epoch: jax.Array


class FitState(NamedTuple):
  """A fit in progress: the train state, early stopping and the epoch counter."""
  train: TrainState
  early_stopping: EarlyStoppingState
  epoch: jax.Array


class Fitter(NamedTuple):
  """A fit as pure functions (chunkable for checkpoints; vmappable).

  Attributes:
    init: ``init(train_state) -> FitState``.
    run_epochs: ``run_epochs(fit_state, train_data, key, valid_data=None, *,
      num_epochs) -> (fit_state, history)``; ``num_epochs`` must be a Python int
      (bind it with ``functools.partial`` before ``jax.jit``). ``history`` maps
      each epoch metric to a ``[num_epochs]`` array, plus ``"valid_metric"`` and
      ``"stopped"`` when an ``eval_fn`` was given.
    result: ``result(fit_state) -> TrainState`` with the best parameters when
      early stopping is on, else the last ones.
  """
  init: Callable[[TrainState], FitState]
  run_epochs: Callable[..., tuple[FitState, dict]]
  result: Callable[[FitState], TrainState]


def make_fitter(loss_fn: LossFn,
                optimizer: optax.GradientTransformation,
                *,
                batch_size: int,
                eval_fn: Optional[EvalFn] = None,
                patience: Optional[int] = None,
                min_delta: float = 0.0,
                step_wrapper: Optional[Callable] = None,
                progress_label: str = "fit") -> Fitter:
  """Builds a :class:`Fitter`; see the module docstring for the randomness.

  Args:
    loss_fn: see :func:`make_train_step`.
    optimizer: an optax optimiser.
    batch_size: minibatch size.
    eval_fn: ``eval_fn(params, model_state, valid_data) -> scalar``, lower is
      better (e.g. validation NLL or RMSE); evaluated after every epoch. It may
      instead return ``(scalar, {name: scalar})``: the dict entries are only
      recorded, as history ``"valid_<name>"`` (e.g. accuracy).
    patience: stop after this many epochs without an improvement larger than
      ``min_delta`` and restore the best parameters. Requires ``eval_fn``.
    min_delta: minimum decrease that counts as an improvement.
    step_wrapper: optional combinator applied to the step, e.g.
      :func:`skip_nonfinite`.
    progress_label: names the loop on the progress line that
      :mod:`jaxbdl.training.progress` prints (when enabled at trace time: a terminal,
      not under pytest) with the epoch, loss, epochs/s and ETA.
  """
  if patience is not None:
    if eval_fn is None:
      raise ValueError("early stopping (patience) needs an eval_fn")
    if patience < 1:
      raise ValueError(f"patience must be >= 1, got {patience}")
  if min_delta < 0:
    raise ValueError(f"min_delta must be >= 0, got {min_delta}")
  step = make_train_step(loss_fn, optimizer)
  if step_wrapper is not None:
    step = step_wrapper(step)
  epoch_fn = make_epoch(step, batch_size)

  def init(state: TrainState) -> FitState:
    es = EarlyStoppingState(
        best_params=state.params, best_model_state=state.model_state,
        best_metric=jnp.array(jnp.inf, jnp.float32),
        best_epoch=jnp.array(-1, jnp.int32), bad_epochs=jnp.array(0, jnp.int32),
        stopped=jnp.array(False), stopped_epoch=jnp.array(-1, jnp.int32))
    return FitState(state, es, jnp.zeros((), jnp.int32))

  def one_epoch(fs: FitState, train_data, key, valid_data):
    epoch_key = jax.random.fold_in(key, fs.epoch)
    es = fs.early_stopping

    def active(_):
      return epoch_fn(fs.train, train_data, epoch_key)

    if patience is None:
      train, metrics = active(None)
    else:
      metric_shapes = jax.eval_shape(active, None)[1]
      frozen = lambda _: (fs.train, jax.tree_util.tree_map(
          lambda s: jnp.full(s.shape, jnp.nan, s.dtype), metric_shapes))
      train, metrics = jax.lax.cond(es.stopped, frozen, active, None)
    hist = dict(metrics)
    if eval_fn is not None:
      value = eval_fn(train.params, train.model_state, valid_data)
      aux = {}
      if isinstance(value, tuple):
        value, aux = value
      value = jnp.asarray(value, jnp.float32)
      improved = jnp.logical_and(~es.stopped,
                                 value < es.best_metric - min_delta)
      pick = lambda new, old: jax.tree_util.tree_map(
          lambda a, b: jnp.where(improved, a, b), new, old)
      bad = jnp.where(improved, 0, es.bad_epochs + 1)
      now_stopped = es.stopped
      if patience is not None:
        now_stopped = jnp.logical_or(es.stopped, bad >= patience)
      es = EarlyStoppingState(
          best_params=pick(train.params, es.best_params),
          best_model_state=pick(train.model_state, es.best_model_state),
          best_metric=jnp.where(improved, value, es.best_metric),
          best_epoch=jnp.where(improved, fs.epoch, es.best_epoch),
          bad_epochs=jnp.where(es.stopped, es.bad_epochs, bad),
          stopped=now_stopped,
          stopped_epoch=jnp.where(now_stopped & ~es.stopped, fs.epoch,
                                  es.stopped_epoch))
      hist["valid_metric"] = jnp.where(fs.early_stopping.stopped, jnp.nan, value)
      for name, v in aux.items():
        hist[f"valid_{name}"] = jnp.where(fs.early_stopping.stopped, jnp.nan,
                                          jnp.asarray(v, jnp.float32))
      hist["stopped"] = fs.early_stopping.stopped
    return FitState(train, es, fs.epoch + 1), hist

  def run_epochs(fit_state: FitState, train_data, key, valid_data=None, *,
                 num_epochs: int):
    if not isinstance(num_epochs, (int, np.integer)) or num_epochs < 1:
      raise ValueError(f"num_epochs must be a positive int, got {num_epochs!r}")
    if eval_fn is not None and valid_data is None:
      raise ValueError("this fitter has an eval_fn: pass valid_data")
    report = progress.scan_callback(progress_label, int(num_epochs))
    if report is None:
      body = lambda fs, _: one_epoch(fs, train_data, key, valid_data)
      return jax.lax.scan(body, fit_state, None, length=int(num_epochs))

    def body(fs, i):
      fs, hist = one_epoch(fs, train_data, key, valid_data)
      report(i, hist["loss"])
      return fs, hist

    return jax.lax.scan(body, fit_state, jnp.arange(int(num_epochs)))

  def result(fs: FitState) -> TrainState:
    if patience is None:
      return fs.train
    es = fs.early_stopping
    return fs.train._replace(params=es.best_params,
                             model_state=es.best_model_state)

  return Fitter(init, run_epochs, result)


def make_fit(loss_fn: LossFn,
             optimizer: optax.GradientTransformation,
             *,
             num_epochs: int,
             batch_size: int,
             eval_fn: Optional[EvalFn] = None,
             patience: Optional[int] = None,
             min_delta: float = 0.0,
             step_wrapper: Optional[Callable] = None,
             progress_label: str = "fit"):
  """Builds ``fit(state, train_data, key, valid_data=None) -> (state, history)``.

  ``fit`` is pure: ``jax.jit(fit)`` compiles the whole training run into one
  program, and ``jax.vmap(fit)`` trains independent runs (seeds, ensemble
  members, hyper-parameters, data splits) as one program, e.g.::

    fit = make_fit(loss_fn, optax.adam(1e-3), num_epochs=100, batch_size=32)
    states = jax.vmap(lambda k: init_train_state(init_params(k), opt))(keys)
    states, history = jax.jit(jax.vmap(fit, in_axes=(0, None, 0)))(
        states, train_data, keys)

  Args:
    num_epochs: number of passes over ``train_data``.
    Others: see :func:`make_fitter`.

  Returns:
    ``fit`` whose ``history`` has ``[num_epochs]`` arrays of the epoch metrics
    (``"loss"``, ``"finite"``, the loss metrics, and ``"valid_metric"``,
    ``"stopped"`` with an ``eval_fn``) plus scalars ``"best_epoch"`` and
    ``"stopped_epoch"`` (-1 when it never stopped).
  """
  fitter = make_fitter(loss_fn, optimizer, batch_size=batch_size,
                       eval_fn=eval_fn, patience=patience, min_delta=min_delta,
                       step_wrapper=step_wrapper, progress_label=progress_label)
  run = functools.partial(fitter.run_epochs, num_epochs=num_epochs)

  def fit(state: TrainState, train_data, key, valid_data=None):
    fs, history = run(fitter.init(state), train_data, key, valid_data)
    history = dict(history)
    history["best_epoch"] = fs.early_stopping.best_epoch
    history["stopped_epoch"] = fs.early_stopping.stopped_epoch
    return fitter.result(fs), history

  return fit


def check_finite_data(data: PyTree, name: str = "data") -> None:
  """Raises ValueError naming the array if any entry of ``data`` is NaN/inf.

  Call this at the boundary (outside jit) before training.
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(data)
  for path, leaf in flat:
    arr = np.asarray(leaf)
    if arr.size == 0:
      raise ValueError(f"{name}{jax.tree_util.keystr(path)} is empty")
    if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
      bad = np.argwhere(~np.isfinite(arr))[0].tolist()
      raise ValueError(f"{name}{jax.tree_util.keystr(path)} has a non-finite "
                       f"value (NaN or inf) at index {bad}")
