"""Post-hoc temperature scaling (Guo et al. 2017) as a Posterior WRAPPER.

``wrap(posterior) -> Posterior`` turns any classification method of the
registry into its temperature-scaled version. ``fit`` first fits the wrapped
method, then one scalar ``T > 0`` on the VALIDATION data by minimising the
validation NLL of

  ``p_T(c | x) = softmax_c(log pbar(c | x) / T)``,

where ``pbar = (1/S) sum_s p_s`` is the method's mixture predictive. For a
single network ``log pbar = z - logsumexp(z)`` so ``p_T = softmax(z / T)``,
Guo et al.'s scaling of the logits ``z`` (their Sec. 4.2); ``T > 1`` softens
over-confident predictions, the arg-max (and so the accuracy) is unchanged.
``predict`` returns the scaled mixture ``{"probs": [1, M, C]}``.

The NLL of ``softmax(a * beta)`` is convex in ``beta = 1 / T``, hence
unimodal in ``log T``; :func:`fit_temperature` minimises it by golden-section
search over ``log T in [log_t_min, log_t_max]`` for a fixed number of steps
(pure, jittable and vmappable; the bracket shrinks by 0.618 per step).

This ``T`` is a calibration temperature learnt after training; it is NOT
``hp["temperature"]`` (the tempered-posterior temperature of the likelihood
during training, Wenzel et al. 2020), which is passed through unchanged.

``fit`` needs ``valid`` (the harness carves it when ``valid_fraction > 0``);
the wrapper asks for at least ``valid_fraction`` (default 0.1) and hands the
same ``valid`` to the wrapped method (e.g. MAP's early stopping, as Guo et al.
use one held-out set).

References:
  C. Guo, G. Pleiss, Y. Sun, K. Weinberger (2017), On calibration of modern
    neural networks, ICML, Sec. 4.2.
  Y. Ovadia et al. (2019), Can you trust your model's uncertainty?, NeurIPS
    (temperature scaling under dataset shift).
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxbdl.bayes import map_estimate
from jaxbdl.bayes import posterior as post_lib

Array = jax.Array

__all__ = ["wrap", "fit_temperature", "scaled_nll", "apply_temperature",
           "make_map"]

_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


def _log_mixture(probs: Array) -> Array:
  """``log pbar [M, C]`` from ``probs [S, M, C]`` (clipped at ``tiny``)."""
  pbar = jnp.mean(probs, axis=0)
  return jnp.log(jnp.clip(pbar, jnp.finfo(pbar.dtype).tiny, 1.0))


def apply_temperature(probs: Array, temperature: Any) -> Array:
  """``softmax(log pbar / T)`` as ``[1, M, C]`` from ``probs [S, M, C]``."""
  return jax.nn.softmax(_log_mixture(probs) / temperature, axis=-1)[None]


def scaled_nll(log_probs: Array, labels: Array, temperature: Any) -> Array:
  """Mean NLL of ``softmax(log_probs / T)`` at ``labels``.

  Args:
    log_probs: ``[M, C]`` log-probabilities (or logits).
    labels: ``[M]`` ints.
    temperature: scalar ``T > 0``.
  """
  logp = jax.nn.log_softmax(log_probs / temperature, axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def fit_temperature(log_probs: Array, labels: Array, *,
                    log_t_min: float = -3.0, log_t_max: float = 3.0,
                    num_steps: int = 50) -> Array:
  """``argmin_T`` of :func:`scaled_nll` by golden-section search on ``log T``.

  Args:
    log_probs: ``[M, C]`` validation log-probabilities (or logits).
    labels: ``[M]`` validation labels.
    log_t_min, log_t_max: the search bracket of ``log T`` (static).
    num_steps: golden-section steps (static); the bracket width after them
      is ``(log_t_max - log_t_min) * 0.618^num_steps``.

  Returns:
    scalar ``T`` (the bracket's midpoint after ``num_steps``).
  """
  if not log_t_min < log_t_max:
    raise ValueError(f"fit_temperature: need log_t_min < log_t_max, got "
                     f"{log_t_min} >= {log_t_max}")
  if not (isinstance(num_steps, int) and num_steps >= 1):
    raise ValueError(f"fit_temperature: num_steps must be an int >= 1, got "
                     f"{num_steps!r}")
  f = lambda u: scaled_nll(log_probs, labels, jnp.exp(u))

  def step(_, ab):
    a, b = ab
    c = b - _INV_PHI * (b - a)
    d = a + _INV_PHI * (b - a)
    left = f(c) < f(d)
    return jnp.where(left, a, c), jnp.where(left, d, b)

  a, b = jax.lax.fori_loop(0, num_steps, step,
                           (jnp.float32(log_t_min), jnp.float32(log_t_max)))
  return jnp.exp(0.5 * (a + b))


def wrap(posterior: post_lib.Posterior, *, valid_fraction: float = 0.1,
         log_t_min: float = -3.0, log_t_max: float = 3.0,
         num_steps: int = 50) -> post_lib.Posterior:
  """The temperature-scaled version of a classification ``posterior``.

  Args:
    posterior: any registered method with ``{"probs"}`` predictions.
    valid_fraction: the smallest validation fraction to request.
    log_t_min, log_t_max, num_steps: see :func:`fit_temperature`.

  The wrapped ``fit`` receives the same ``key``, so ``wrap(m).fit(key, ...)``
  contains exactly ``m.fit(key, ...)``.

  Returns:
    a ``Posterior`` named ``posterior.name + "_ts"``; its state is
    ``{"inner": wrapped state, "temperature": T}``; its history adds
    ``"temperature"`` and the validation NLL before / after scaling.
  """
  if not 0.0 < valid_fraction < 1.0:
    raise ValueError(f"temperature scaling: valid_fraction must be in (0, 1), "
                     f"got {valid_fraction}")

  def fit(key, data, hp, valid=None):
    if valid is None:
      raise ValueError(f"{posterior.name}_ts: temperature scaling needs "
                       "validation data (valid=None)")
    # The wrapped method gets ``key`` unchanged: ``wrap(m)`` and ``m`` fitted
    # with one key share their fit (e.g. MAP and MAP + T, the same network).
    state, history = posterior.fit(key, data, hp, valid)
    pred = posterior.predict(state, valid["x"], jax.random.fold_in(key, 1),
                             hp)
    if "probs" not in pred:
      raise ValueError(f"{posterior.name}_ts: temperature scaling needs a "
                       "classification predictive {'probs'}, got "
                       f"{sorted(pred)}")
    logp = _log_mixture(pred["probs"])
    y = jnp.asarray(valid["y"])
    t = fit_temperature(logp, y, log_t_min=log_t_min, log_t_max=log_t_max,
                        num_steps=num_steps)
    history = dict(history)
    history["temperature"] = t
    history["valid_nll_before"] = scaled_nll(logp, y, 1.0)
    history["valid_nll_after"] = scaled_nll(logp, y, t)
    return {"inner": state, "temperature": t}, history

  def predict(state, x, key, hp):
    pred = posterior.predict(state["inner"], x, key, hp)
    return {"probs": apply_temperature(pred["probs"], state["temperature"])}

  return post_lib.Posterior(
      f"{posterior.name}_ts", fit, predict,
      max(float(posterior.valid_fraction), float(valid_fraction)))


def make_map(model: post_lib.Model, config) -> post_lib.Posterior:
  """MAP + temperature scaling (the registry's ``map_ts``); ``config`` as
  MAP's, ``config.valid_fraction`` (default 0.1) is used for both."""
  return wrap(map_estimate.make(model, config),
              valid_fraction=float(config.get("valid_fraction", 0.1) or 0.1))
