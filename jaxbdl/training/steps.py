"""One training step and one epoch of the training loop.

``step = make_train_step(loss_fn, optimizer)`` is a pure
``(state, batch, key) -> (state, metrics)``; :func:`skip_nonfinite` wraps it to
leave the state unchanged on a NaN/inf loss or gradient; :func:`jit_step`
jits it for hand-written Python loops; :func:`make_epoch` scans it over the
shuffled minibatches of one epoch. The fit over epochs (early stopping,
chunks, vmapped runs) is :mod:`jaxbdl.training.train`, which re-exports
everything here.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

__all__ = ["TrainState", "init_train_state", "make_train_step", "jit_step",
           "skip_nonfinite", "num_batches", "make_epoch", "LossFn"]

PyTree = Any
Metrics = Mapping[str, jax.Array]
LossFn = Callable[[PyTree, PyTree, PyTree, jax.Array],
                  tuple[jax.Array, tuple[PyTree, Metrics]]]


class TrainState(NamedTuple):
  """Everything a step changes.

  Attributes:
    params: the trainable parameter pytree.
    opt_state: the optax optimiser state.
    model_state: non-trainable state such as ``{"batch_stats": ...}``; ``{}``
      for stateless models.
    step: int32 scalar, number of optimiser steps taken.
  """
  params: PyTree
  opt_state: optax.OptState
  model_state: PyTree
  step: jax.Array


def init_train_state(params: PyTree,
                     optimizer: optax.GradientTransformation,
                     model_state: Optional[PyTree] = None) -> TrainState:
  """Returns the state before the first step (``step = 0``)."""
  return TrainState(params=params,
                    opt_state=optimizer.init(params),
                    model_state={} if model_state is None else model_state,
                    step=jnp.zeros((), jnp.int32))


def _all_finite(tree: PyTree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation):
  """Builds a pure train step from a loss and an optax optimiser.

  Args:
    loss_fn: ``loss_fn(params, model_state, batch, key) -> (loss, (model_state,
      metrics))`` with a scalar loss to minimise and a dict of scalar metrics.
    optimizer: any ``optax.GradientTransformation``.

  Returns:
    ``step(state, batch, key) -> (state, metrics)``. ``metrics`` holds the
    loss-function metrics plus ``"loss"`` and ``"finite"`` (1.0 when the loss and
    every gradient entry are finite, else 0.0; see ``skip_nonfinite``).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, batch: PyTree, key: jax.Array):
    (loss, (model_state, metrics)), grads = grad_fn(
        state.params, state.model_state, batch, key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.logical_and(jnp.isfinite(loss), _all_finite(grads))
    metrics = dict(metrics)
    metrics["loss"] = loss
    metrics["finite"] = finite.astype(jnp.float32)
    new_state = TrainState(params, opt_state, model_state, state.step + 1)
    return new_state, metrics

  return step


def jit_step(step_fn, key: jax.Array, *, donate: bool = True):
  """Jits a step for a hand-written Python loop: ``step(state, batch)``.

  The step's key is ``fold_in(key, state.step)``, computed inside the compiled
  program, so the loop carries no key (as in :func:`make_epoch`) and a resumed
  loop replays the same randomness. With ``donate`` the input state's buffers
  are donated to the output state (``jax.jit(..., donate_argnums=0)``): XLA
  may then write the new parameters and optimiser state in place rather than
  allocating fresh buffers every step. The state passed in is then invalid
  after the call; use it as ``state, metrics = step(state, batch)``.

  Prefer :func:`make_epoch` (a ``lax.scan`` over minibatches) where the data
  fit in memory: one dispatch per epoch instead of one per step.

  Args:
    step_fn: ``step(state, batch, key) -> (state, metrics)``, e.g. from
      :func:`make_train_step`.
    key: base PRNG key.
    donate: donate the input state's buffers.

  Returns:
    jitted ``step(state, batch) -> (state, metrics)``.
  """
  def step(state: TrainState, batch: PyTree):
    return step_fn(state, batch, jax.random.fold_in(key, state.step))

  return jax.jit(step, donate_argnums=(0,) if donate else ())


def skip_nonfinite(step_fn):
  """Wraps a step so that a step with a non-finite loss or gradient is skipped.

  The parameters, optimiser and model state stay as they were (the step counter
  still advances, so the next step draws fresh randomness) and the step's
  ``"finite"`` metric is 0. To *stop* instead, inspect ``metrics["finite"]``
  (or the ``"finite"`` history of a fit) and raise outside the jitted code.
  """

  def step(state: TrainState, batch: PyTree, key: jax.Array):
    new_state, metrics = step_fn(state, batch, key)
    ok = metrics["finite"] > 0
    kept = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old),
                                  new_state._replace(step=state.step), state)
    return kept._replace(step=new_state.step), metrics

  return step


def num_batches(num_examples: int, batch_size: int) -> int:
  """Minibatches per epoch (the remainder is dropped, differently each epoch)."""
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if num_examples < batch_size:
    raise ValueError(f"batch_size {batch_size} exceeds the number of training "
                     f"examples {num_examples}")
  return num_examples // batch_size


def _num_examples(data: PyTree) -> int:
  leaves = jax.tree_util.tree_leaves(data)
  if not leaves:
    raise ValueError("training data is empty (no arrays)")
  sizes = {x.shape[0] if x.ndim else None for x in leaves}
  if len(sizes) != 1 or None in sizes:
    raise ValueError("every data array needs the same leading (example) axis; "
                     f"got leading sizes {sorted(map(str, sizes))}")
  n = sizes.pop()
  if n == 0:
    raise ValueError("training data has no examples")
  return n


def make_epoch(step_fn, batch_size: int):
  """Builds ``epoch(state, data, key) -> (state, metrics)``: one shuffled pass.

  Args:
    step_fn: ``step(state, batch, key) -> (state, metrics)``.
    batch_size: minibatch size ``B``; ``N // B`` steps run in a ``lax.scan``.

  The returned metrics are the means over the epoch's steps, except
  ``"finite"`` which is the minimum (0 if any step was non-finite).
  """

  def epoch(state: TrainState, data: PyTree, key: jax.Array):
    n = _num_examples(data)
    nb = num_batches(n, batch_size)
    perm_key, step_key = jax.random.split(key)
    perm = jax.random.permutation(perm_key, n)[:nb * batch_size]
    perm = perm.reshape(nb, batch_size)

    def body(state, idx):
      batch = jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), data)
      return step_fn(state, batch, jax.random.fold_in(step_key, state.step))

    state, metrics = jax.lax.scan(body, state, perm)
    reduced = {k: (jnp.min(v) if k == "finite" else jnp.mean(v, axis=0))
               for k, v in metrics.items()}
    return state, reduced

  return epoch

