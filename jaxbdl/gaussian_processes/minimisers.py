"""Deterministic local minimisers as data, for type-II maximum likelihood.

A :class:`Minimiser` is ``minimise(loss_fn, x0) -> MinimiseResult``, pure,
jit- and vmap-able: :func:`lbfgs` (optax L-BFGS with a zoom line search, run
to a gradient tolerance) or :func:`adam` (a fixed number of steps). Used by
:func:`jaxbdl.gaussian_processes.gp.optimise_hyperparameters`.

References:
  Nocedal & Wright (2006), "Numerical Optimization", Algorithm 7.4 (L-BFGS)
  and Algorithm 3.5-3.6 (zoom line search for the strong Wolfe conditions).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

__all__ = ["Minimiser", "MinimiseResult", "lbfgs", "adam"]


class MinimiseResult(NamedTuple):
  """``params`` (pytree like x0), ``value`` (scalar), ``history [max_steps]``
  (objective at each iteration, padded with the final value), ``num_steps``."""
  params: Any
  value: Array
  history: Array
  num_steps: Array


class Minimiser(NamedTuple):
  """A deterministic local minimiser as data.

  Attributes:
    minimise: ``(loss_fn, x0) -> MinimiseResult``; pure, traceable (runs
      inside ``jit``/``vmap``).
    max_steps: length of the returned history (static).
  """
  minimise: Callable[[Callable[[Any], Array], Any], MinimiseResult]
  max_steps: int


def lbfgs(max_steps: int = 100, tolerance: float | None = None,
          memory_size: int = 10) -> Minimiser:
  """L-BFGS with optax's zoom line search (strong Wolfe), in a ``while_loop``.

  Stops after ``max_steps`` iterations, when the gradient norm falls below
  ``tolerance`` (default ``10 sqrt(eps)`` of the dtype: 3.5e-3 in float32,
  1.5e-7 in float64) or when the objective becomes non-finite.
  """
  if int(max_steps) < 1:
    raise ValueError(f"gp.lbfgs: max_steps must be >= 1, got {max_steps}")
  if tolerance is not None and not float(tolerance) >= 0:
    raise ValueError(f"gp.lbfgs: tolerance must be >= 0, got {tolerance}")
  max_steps, memory_size = int(max_steps), int(memory_size)

  def minimise(loss, x0):
    dtype = jax.tree.leaves(x0)[0].dtype
    tol = (10.0 * math.sqrt(float(jnp.finfo(dtype).eps))
           if tolerance is None else float(tolerance))
    opt = optax.lbfgs(memory_size=memory_size)
    value_and_grad = optax.value_and_grad_from_state(loss)

    def body(carry):
      x, state, history, i = carry
      value, grad = value_and_grad(x, state=state)
      updates, state = opt.update(grad, state, x, value=value, grad=grad,
                                  value_fn=loss)
      return optax.apply_updates(x, updates), state, history.at[i].set(value), i + 1

    def cond(carry):
      _, state, _, i = carry
      gnorm = optax.tree.norm(optax.tree.get(state, "grad"))
      value = optax.tree.get(state, "value")
      going = (gnorm >= tol) & jnp.isfinite(value) & (i < max_steps)
      return (i == 0) | going

    history = jnp.full((max_steps,), jnp.nan, dtype)
    x, _, history, steps = jax.lax.while_loop(
        cond, body, (x0, opt.init(x0), history, jnp.asarray(0)))
    value = loss(x)
    history = jnp.where(jnp.arange(max_steps) < steps, history, value)
    return MinimiseResult(x, value, history, steps)

  return Minimiser(minimise=minimise, max_steps=max_steps)


def adam(num_steps: int = 200, learning_rate: float = 0.05) -> Minimiser:
  """``num_steps`` Adam steps in one ``lax.scan`` (no convergence test)."""
  if int(num_steps) < 1:
    raise ValueError(f"gp.adam: num_steps must be >= 1, got {num_steps}")
  if not float(learning_rate) > 0:
    raise ValueError(f"gp.adam: learning_rate must be > 0, got {learning_rate}")
  num_steps = int(num_steps)

  def minimise(loss, x0):
    opt = optax.adam(learning_rate)

    def step(carry, _):
      x, state = carry
      value, grads = jax.value_and_grad(loss)(x)
      updates, state = opt.update(grads, state, x)
      return (optax.apply_updates(x, updates), state), value

    (x, _), history = jax.lax.scan(step, (x0, opt.init(x0)), None,
                                   length=num_steps)
    return MinimiseResult(x, loss(x), history, jnp.asarray(num_steps))

  return Minimiser(minimise=minimise, max_steps=num_steps)

