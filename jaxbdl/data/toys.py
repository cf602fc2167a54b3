"""Synthetic data: pure, jittable functions of a key.

:func:`gap_regression` (1-D regression with a hole in the inputs, for
in-between uncertainty), :func:`sinusoid_tasks` (the MAML sinusoid task
distribution of Finn et al. 2017) and :func:`noisy_sinusoid_sequences`
(next-value forecasting for RNNs).

References:
  Finn, Abbeel & Levine (2017), Model-agnostic meta-learning, ICML, Sec. 5.1.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["GapData", "gap_regression", "sine_2pi", "sinusoid_tasks",
           "noisy_sinusoid_sequences"]


class GapData(NamedTuple):
  """1-D regression data with a gap in the inputs.

  Attributes:
    x: ``[N, 1]`` training inputs.
    y: ``[N]`` noisy targets ``f(x) + noise_std * eps``.
    x_grid: ``[G, 1]`` dense grid covering the data, the gap and beyond.
    f_grid: ``[G]`` noise-free ``f`` on the grid.
  """
  x: jax.Array
  y: jax.Array
  x_grid: jax.Array
  f_grid: jax.Array


def sine_2pi(x: jax.Array) -> jax.Array:
  """``sin(2 pi x)``, the default regression function of gap_regression."""
  return jnp.sin(2.0 * jnp.pi * x)


def gap_regression(key: jax.Array,
                   n: int = 100,
                   noise_std: float = 0.1,
                   *,
                   function: Callable[[jax.Array], jax.Array] = sine_2pi,
                   gap: tuple[float, float] = (-0.3, 0.3),
                   domain: tuple[float, float] = (-1.0, 1.0),
                   grid_range: tuple[float, float] = (-1.5, 1.5),
                   num_grid: int = 200) -> GapData:
  """1-D regression with no data in a gap: tests "in-between" uncertainty.

  Inputs are uniform on ``[domain[0], gap[0]] U [gap[1], domain[1]]``, half of
  the points (``n // 2``) on each side; by default
  ``x in [-1, -0.3] U [0.3, 1]`` and ``y = sin(2 pi x) + 0.1 eps``. A good
  predictive is confident near the data and uncertain inside the gap and
  outside the domain (Foong et al. 2019, "'In-between' uncertainty in Bayesian
  neural networks").

  Args:
    key: a JAX PRNG key.
    n: number of training points (static).
    noise_std: standard deviation of the Gaussian observation noise.
    function: the noise-free regression function ``f(x [N]) -> [N]``.
    gap: the interval left empty.
    domain: where training inputs live.
    grid_range: range of the test grid.
    num_grid: grid size ``G`` (static).

  Returns:
    :class:`GapData`.
  """
  lo, hi = domain
  g_lo, g_hi = gap
  if not lo < g_lo < g_hi < hi:
    raise ValueError(f"need domain[0] < gap[0] < gap[1] < domain[1], got "
                     f"domain={domain}, gap={gap}")
  if n < 2:
    raise ValueError(f"n must be >= 2, got {n}")
  return _gap_regression(key, n, noise_std, function, tuple(gap),
                         tuple(domain), tuple(grid_range), num_grid)


@functools.partial(jax.jit, static_argnums=(1, 3, 4, 5, 6, 7))
def _gap_regression(key, n, noise_std, function, gap, domain, grid_range,
                    num_grid) -> GapData:
  k_left, k_right, k_noise = jax.random.split(key, 3)
  n_left = n // 2
  left = jax.random.uniform(k_left, (n_left,), minval=domain[0],
                            maxval=gap[0])
  right = jax.random.uniform(k_right, (n - n_left,), minval=gap[1],
                             maxval=domain[1])
  x = jnp.concatenate([left, right])
  y = function(x) + noise_std * jax.random.normal(k_noise, (n,))
  grid = jnp.linspace(grid_range[0], grid_range[1], num_grid)
  return GapData(x=x[:, None], y=y, x_grid=grid[:, None], f_grid=function(grid))


@functools.partial(jax.jit, static_argnames=("num_tasks", "num_points"))
def sinusoid_tasks(key: jax.Array,
                   num_tasks: int,
                   num_points: int,
                   amplitude_range: tuple[float, float] = (0.1, 5.0),
                   phase_range: tuple[float, float] = (0.0, math.pi),
                   x_range: tuple[float, float] = (-5.0, 5.0)):
  """The sinusoid regression task distribution of MAML (Finn et al. 2017).

  Task ``t`` has amplitude ``A_t ~ U(amplitude_range)`` and phase
  ``phi_t ~ U(phase_range)``; its points are ``x ~ U(x_range)``,
  ``y = A_t sin(x - phi_t)`` (noise-free, as in the reference code).

  Args:
    key: a JAX PRNG key.
    num_tasks: ``T`` (static).
    num_points: ``K`` points per task (static).

  Returns:
    ``(x [T, K, 1], y [T, K, 1], amplitude [T], phase [T])``.
  """
  k_amp, k_phase, k_x = jax.random.split(key, 3)
  amplitude = jax.random.uniform(k_amp, (num_tasks,),
                                 minval=amplitude_range[0],
                                 maxval=amplitude_range[1])
  phase = jax.random.uniform(k_phase, (num_tasks,), minval=phase_range[0],
                             maxval=phase_range[1])
  x = jax.random.uniform(k_x, (num_tasks, num_points, 1), minval=x_range[0],
                         maxval=x_range[1])
  y = amplitude[:, None, None] * jnp.sin(x - phase[:, None, None])
  return x, y, amplitude, phase


@functools.partial(jax.jit, static_argnames=("num_sequences", "length"))
def noisy_sinusoid_sequences(key: jax.Array,
                             num_sequences: int,
                             length: int,
                             noise_std: float = 0.1,
                             amplitude_range: tuple[float, float] = (0.5, 1.5),
                             frequency_range: tuple[float, float] = (0.1, 0.5)):
  """Noisy sine sequences for next-value forecasting with an RNN.

  Sequence ``n`` is ``s_t = A_n sin(w_n t + phi_n) + noise_std * eps_t`` for
  ``t = 0..T`` with ``A ~ U(amplitude_range)``, angular frequency
  ``w ~ U(frequency_range)`` (radians per step) and ``phi ~ U(0, 2 pi)``.
  The input at step ``t`` is ``s_t`` and the target is the next observed value
  ``s_{t+1}``.

  Args:
    key: a JAX PRNG key.
    num_sequences: ``N`` (static).
    length: ``T`` steps (static).
    noise_std: observation noise standard deviation.

  Returns:
    ``(inputs [N, T, 1], targets [N, T, 1])`` with
    ``targets[:, t] == inputs[:, t + 1]`` for ``t < T - 1``.
  """
  k_amp, k_freq, k_phase, k_noise = jax.random.split(key, 4)
  shape = (num_sequences, 1)
  amp = jax.random.uniform(k_amp, shape, minval=amplitude_range[0],
                           maxval=amplitude_range[1])
  freq = jax.random.uniform(k_freq, shape, minval=frequency_range[0],
                            maxval=frequency_range[1])
  phase = jax.random.uniform(k_phase, shape, minval=0.0, maxval=2 * jnp.pi)
  t = jnp.arange(length + 1, dtype=jnp.float32)[None, :]
  series = amp * jnp.sin(freq * t + phase)
  series = series + noise_std * jax.random.normal(k_noise, series.shape)
  return series[:, :-1, None], series[:, 1:, None]
