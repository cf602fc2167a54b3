r"""The ``ControlVariate`` protocol and the estimator a stateful one gives.

A control variate is a NamedTuple of pure functions (any may be ``None``):
a function ``h`` with a closed-form expectation, a baseline ``b_i``
independent of sample ``x_i``, and, for stateful control variates, ``init``
and ``update`` of an explicit state. The combinator that applies one to any
estimator, :func:`jaxbdl.gradients.control_variates.with_control_variate`,
and the formula it implements (Mohamed et al. 2020, sec. 7,
``g_cv = g(f) - beta [g(h) + b_i g(1) - grad E_q[h]]``) are documented in
:mod:`jaxbdl.gradients.control_variates`; the provided control variates are
in :mod:`jaxbdl.gradients.baselines` and :mod:`jaxbdl.gradients.delta_method`.

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 7.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxbdl.gradients.distribution_protocol import Distribution

__all__ = ["ControlVariate", "StatefulEstimator"]

Array = jax.Array
Params = Any
CvState = Any
Fn = Callable[[Array], Array]


class ControlVariate(NamedTuple):
  """A control variate: pure functions, any of which may be ``None``.

  Attributes:
    name: short name, e.g. ``"delta_method"``.
    init: ``(params) -> state`` for a stateful CV; ``None`` if stateless.
    function: ``(f, dist, frozen_params, state) -> h`` with ``h(x) -> scalar``
      for one sample; ``frozen_params`` are ``stop_gradient``-ed.
    expected_value: ``(f, dist, params, state) -> E_{q(params)}[h]``, a
      scalar differentiable in ``params`` (``h``'s own parameters frozen).
      Required when ``function`` is given.
    baseline: ``(f_values [S], state) -> b [S]``, ``b_i`` independent of
      ``x_i``; ``f_values`` are ``f`` at :func:`estimators.draw_samples`.
    update: ``(f_values [S], state) -> new_state`` (stateful CVs).
    couples_samples: True if ``b_i`` depends on the other samples of the call
      (leave-one-out); then a coefficient estimated from the samples would
      depend on ``x_i`` through the other samples' baselines and bias the
      estimate, so :func:`with_control_variate` only allows a fixed one.
  """
  name: str
  init: Callable[[Params], CvState] | None = None
  function: Callable[..., Fn] | None = None
  expected_value: Callable[..., Array] | None = None
  baseline: Callable[[Array, CvState], Array] | None = None
  update: Callable[[Array, CvState], CvState] | None = None
  couples_samples: bool = False


class StatefulEstimator(NamedTuple):
  """An estimator whose control variate threads a state explicitly.

  Attributes:
    name: e.g. ``"score_function+moving_average_baseline"``.
    init: ``(params) -> cv_state``.
    samples: ``(f, dist) -> fn(params, key, num_samples, cv_state) ->
      (grads [S, ...], new_cv_state)``.
    surrogate: ``(f, dist) -> loss(params, key, num_samples, cv_state) ->
      (scalar, new_cv_state)``; ``jax.grad(loss, has_aux=True)`` gives the
      averaged estimate of ``samples`` (same key, same state) and the state.
    reparameterized: the wrapped estimator's flag.
  """
  name: str
  init: Callable[[Params], CvState]
  samples: Callable[..., Callable[..., tuple[Params, CvState]]]
  surrogate: Callable[..., Callable[..., tuple[Array, CvState]]] | None = None
  reparameterized: bool = False

  def __call__(self, f: Fn, dist: Distribution):
    """``grad_fn(params, key, num_samples, cv_state) -> (grads, new_state)``."""
    samples_fn = self.samples(f, dist)

    def grad_fn(params, key, num_samples, cv_state):
      per_sample, new_state = samples_fn(params, key, num_samples, cv_state)
      return jax.tree.map(lambda g: jnp.mean(g, axis=0), per_sample), new_state

    return grad_fn
