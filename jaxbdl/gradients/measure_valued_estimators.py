r"""Measure-valued gradient estimators (weak derivatives).

For a factorised distribution whose parameter entry ``theta_d`` has the
weak derivative ``d/dtheta_d q(x_d) = c_d [q+_d(x_d) - q-_d(x_d)]``
(``Distribution.weak_derivative``; Mohamed et al. 2020, eq. 39, Table 1),

  d/dtheta_d E_q[f] ~ c_d [f(x; x_d = x+_d) - f(x; x_d = x-_d)],
  x+_d ~ q+_d, x-_d ~ q-_d,

where the other coordinates ``x_{-d}`` come from a shared base sample
``x ~ q`` (sec. 6.2). :data:`measure_valued` *couples* the two parts
(common random numbers, optax's former ``measure_valued_estimation_{mean,
std}`` coupling); :data:`measure_valued_uncoupled` draws them independently
(sec. 6.3; higher variance). ``f`` is never differentiated. Cost: ``2 P D``
evaluations of ``f`` per sample (``P`` parameters of ``D`` entries each).
The surrogate is :func:`~jaxbdl.gradients.estimator_protocol.
linearized_surrogate`. Both are re-exported by
:mod:`jaxbdl.gradients.estimators`, whose docstring lists the weak
derivatives of each family.

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 6.
  G. Pflug. Sampling derivatives of probabilities. Computing 42, 1989.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxbdl.gradients.distribution_protocol import Distribution
from jaxbdl.gradients.estimator_protocol import (
    Estimator, Fn, SamplesFn, _check_dist, _prepare, _scalar_f,
    linearized_surrogate)

__all__ = ["measure_valued", "measure_valued_uncoupled",
           "measure_valued_samples", "measure_valued_surrogate"]

def _measure_valued(coupled: bool, name: str):
  """``(f, dist) -> samples_fn`` of the (un)coupled weak-derivative estimate.

  See the module docstring; ``2 * P * D`` evaluations of ``f`` per sample.
  """

  def make(f: Fn, dist: Distribution) -> SamplesFn:
    _check_dist(dist)
    if dist.weak_derivative is None:
      raise ValueError(
          f"{name} needs a distribution with a weak derivative "
          f"(Distribution.weak_derivative); {dist.name} has none (use "
          "score_function, or pathwise if it is reparameterised)")
    missing = [n for n in dist.param_names
               if n not in dist.weak_derivative_params]
    if missing:
      raise ValueError(
          f"{name}: {dist.name} has no closed-form weak derivative for "
          f"{missing} (only for {list(dist.weak_derivative_params)}); use "
          "score_function, or pathwise if it is reparameterised")

    def samples_fn(params, key, num_samples):
      num_samples = _prepare(dist, params, num_samples)
      params = jax.lax.stop_gradient(params)
      event = tuple(dist.event_shape(params))
      d = math.prod(event)
      names = dist.param_names
      shapes = {n: jnp.shape(params[n]) for n in names}
      key_base, key_wd = jax.random.split(key)
      x_sxd = dist.sample(params, key_base, (num_samples,)).reshape(
          num_samples, d)
      wd = dist.weak_derivative(params, key_wd, (num_samples,), coupled)
      c_pxd = jnp.stack([jnp.reshape(wd[n].constant, (d,)) for n in names])
      # [S, 2P, D]: row 2p is parameter p's positive part, 2p + 1 its
      # negative part.
      new_sxjxd = jnp.stack(
          [jnp.reshape(getattr(wd[n], part), (num_samples, d)).astype(
              x_sxd.dtype) for n in names for part in ("positive",
                                                        "negative")],
          axis=1)
      is_diag = jnp.eye(d, dtype=bool)  # [D, D]
      j = 2 * len(names)

      def one(args):
        x_d, new_jxd = args
        # Row (j, d): the base sample with coordinate d replaced.
        x_jxdxd = jnp.where(is_diag[None], new_jxd[:, :, None],
                            x_d[None, None, :])
        f_jxd = jax.vmap(lambda row: _scalar_f(f, row.reshape(event)))(
            x_jxdxd.reshape(j * d, d)).reshape(len(names), 2, d)
        g_pxd = c_pxd * (f_jxd[:, 0] - f_jxd[:, 1]).astype(c_pxd.dtype)
        return {n: g_pxd[i].reshape(shapes[n]) for i, n in enumerate(names)}

      # 2 P D evaluations of f per sample: beyond a few thousand at once the
      # vmapped program becomes memory-bound (the f intermediates of every
      # evaluation are materialised), so large sample counts run in chunks.
      chunk = max(1, _MVD_EVALS_PER_CHUNK // (j * d))
      if num_samples <= chunk:
        return jax.vmap(one)((x_sxd, new_sxjxd))
      return jax.lax.map(one, (x_sxd, new_sxjxd), batch_size=chunk)

    return samples_fn

  return make


# f evaluations per vmapped chunk of the measure-valued estimator.
_MVD_EVALS_PER_CHUNK = 4096

_measure_valued_samples = _measure_valued(True, "measure_valued")
_measure_valued_uncoupled_samples = _measure_valued(
    False, "measure_valued_uncoupled")

measure_valued = Estimator("measure_valued", _measure_valued_samples,
                           linearized_surrogate(_measure_valued_samples))
measure_valued_uncoupled = Estimator(
    "measure_valued_uncoupled", _measure_valued_uncoupled_samples,
    linearized_surrogate(_measure_valued_uncoupled_samples))

measure_valued_samples = measure_valued.samples
measure_valued_surrogate = measure_valued.surrogate
