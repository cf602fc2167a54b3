r"""Baselines: control variates ``b_i`` that do not depend on sample ``x_i``.

A baseline enters the estimate as ``- beta b_i g_i(1)``; ``g(1)`` is the
score ``grad log q(x_i)`` for the score-function estimator and exactly 0 for
the pathwise and measure-valued ones, so baselines help the score function
only, where ``(f(x_i) - b_i) grad log q(x_i)`` stays unbiased because
``E[b_i grad log q(x_i)] = 0`` (Mohamed et al. 2020, sec. 7.2). Apply one
with :func:`jaxbdl.gradients.control_variates.with_control_variate`.

* :func:`moving_average_baseline` (stateful): ``b`` = bias-corrected
  exponential moving average of ``f`` over past calls, read before this
  call's samples are folded in (unbiased).
* :func:`leave_one_out_baseline` (Kool, van Hoof & Welling 2019):
  ``b_i = mean_{j != i} f(x_j)``; needs ``num_samples >= 2``.

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 7.2.
  W. Kool, H. van Hoof, M. Welling. Buy 4 REINFORCE samples, get a baseline
  for free! ICLR Deep RL meets Structured Prediction workshop, 2019.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from jaxbdl.gradients.control_variate_protocol import Array, ControlVariate

__all__ = ["MovingAverageState", "moving_average_baseline",
           "leave_one_out_baseline"]


class MovingAverageState(NamedTuple):
  """State of :func:`moving_average_baseline`.

  Attributes:
    average: the (biased) exponential moving average of ``f``, scalar.
    count: number of updates so far, int32 scalar.
    weight: ``1 - prod_j decay_j``, the total weight of the average (its
      zero-debiasing divisor; ``1 - decay^count`` for a constant decay).
  """
  average: Array
  count: Array
  weight: Array


def moving_average_baseline(
    decay: float = 0.9,
    use_decay_early_training_heuristic: bool = False) -> ControlVariate:
  """Baseline ``b`` = bias-corrected EMA of past calls' mean ``f``.

  ``avg_i = decay_i * avg_{i-1} + (1 - decay_i) * mean_j f(x_j)`` and
  ``b = avg / (1 - prod_i decay_i)`` (Adam-style zero-debiasing; ``b = 0``
  before the first update). ``decay_i = decay``, or with
  ``use_decay_early_training_heuristic`` ``decay_i = min(decay, (1 + i) /
  (10 + i))`` for update ``i = 0, 1, ...`` (optax's former
  ``moving_avg_baseline``: the average forgets its first, poor values
  faster). The baseline of a call is read before its update, so it does not
  depend on the call's samples (unbiased).

  Args:
    decay: in [0, 1).
    use_decay_early_training_heuristic: see above.
  """
  if not 0.0 <= decay < 1.0:
    raise ValueError(f"decay must be in [0, 1), got {decay}")

  def init(params):
    del params
    return MovingAverageState(jnp.zeros((), jnp.float32),
                              jnp.zeros((), jnp.int32),
                              jnp.zeros((), jnp.float32))

  def baseline(f_values, state):
    ok = state.weight > 0
    b = jnp.where(ok, state.average / jnp.where(ok, state.weight, 1.0), 0.0)
    return jnp.broadcast_to(b, f_values.shape)

  def update(f_values, state):
    d = jnp.asarray(decay, jnp.float32)
    if use_decay_early_training_heuristic:
      i = state.count.astype(jnp.float32)
      d = jnp.minimum(d, (1.0 + i) / (10.0 + i))
    avg = d * state.average + (1.0 - d) * jnp.mean(f_values)
    weight = 1.0 - d * (1.0 - state.weight)
    return MovingAverageState(avg.astype(jnp.float32), state.count + 1,
                              weight.astype(jnp.float32))

  return ControlVariate("moving_average_baseline", init=init,
                        baseline=baseline, update=update)


def leave_one_out_baseline() -> ControlVariate:
  """``b_i = (sum_j f(x_j) - f(x_i)) / (S - 1)``; needs ``num_samples >= 2``.

  With the score function this is Kool et al.'s (2019) estimator
  ``1/(S-1) sum_i (f_i - mean f) grad log q(x_i)``.
  """

  def baseline(f_values, state):
    del state
    s = f_values.shape[0]
    if s < 2:
      raise ValueError(f"leave_one_out_baseline needs num_samples >= 2, got "
                       f"{s}")
    return (jnp.sum(f_values) - f_values) / (s - 1)

  return ControlVariate("leave_one_out_baseline", baseline=baseline,
                        couples_samples=True)
