"""Exact Gaussian-process regression with Cholesky solves.

Model: ``f ~ GP(0, k)``, ``y_i = f(x_i) + eps_i``, ``eps_i ~ N(0, noise_variance)``.
Prior mean zero: standardise targets first. With ``K = k(X, X) [N, N]`` and
``L = chol(K + (noise_variance + jitter) I)``:

- posterior mean      m(x*) = k(x*, X) alpha,  alpha = (K + s2 I)^{-1} y
- posterior variance  v(x*) = k(x*, x*) - ||L^{-1} k(X, x*)||^2
- log marginal likelihood
      log p(y | X) = -1/2 y^T alpha - sum_i log L_ii - N/2 log(2 pi)
  (Rasmussen & Williams 2006, Algorithm 2.1 and Eq. 2.30).

Kernels are callables. :func:`fit`, :func:`predict` and
:func:`log_marginal_likelihood` take ``kernel_fn(x1 [N, D], x2 [M, D]) -> [N, M]``
(hyper-parameters closed over, e.g. ``functools.partial``);
:func:`optimise_hyperparameters` takes a parameterised
``kernel_fn(params, x1, x2)`` such as :func:`jaxbdl.gaussian_processes.nngp.make_kernel_fn` or
:func:`jaxbdl.gaussian_processes.kernels.make_kernel_fn`, and maximises the marginal likelihood
over positive hyper-parameters and the noise variance, optimised on the log
scale, by a :class:`Minimiser`: :func:`lbfgs` (default; optax L-BFGS with a
zoom line search, run to a gradient tolerance from several starting points,
best kept) or :func:`adam` (fixed number of steps).

Padding: every function takes an optional ``mask [N]`` (1 = real point, 0 =
padding). Padded rows/columns of ``K + s2 I`` are replaced by the identity and
padded targets by 0, which leaves the posterior and the marginal likelihood of
the real points exactly unchanged, so one compiled program serves a data set
that grows (Bayesian optimisation, :mod:`jaxbdl.gaussian_processes.bo`).

Failed factorisations: a kernel matrix that is not positive definite (a
non-PSD kernel, zero noise and jitter on duplicate inputs) makes the Cholesky
factor NaN. :func:`fit` raises a ValueError naming the cause when called
outside ``jit``; under ``jit`` the posterior carries ``ok = False`` and
:func:`check_posterior` raises at the boundary.

The posterior is a NamedTuple of arrays only, so it can be returned from
``jax.jit``/``jax.vmap`` (e.g. one GP per data split); the kernel is passed to
:func:`predict` again rather than stored.

The exact GP (:func:`fit`, :func:`predict`, :func:`log_marginal_likelihood`)
is :mod:`jaxbdl.gaussian_processes.exact_gp` and the minimisers
:mod:`jaxbdl.gaussian_processes.minimisers`; this module adds type-II maximum
likelihood (:func:`optimise_hyperparameters`) and re-exports both, so
``gp.fit`` and ``gp.lbfgs`` are the names to use.

References:
  Rasmussen & Williams (2006), "Gaussian Processes for Machine Learning",
  Ch. 2 (Algorithm 2.1, Eqs. 2.25-2.26, 2.30) and Ch. 5 (Eq. 5.9, gradient of
  the marginal likelihood).
  Nocedal & Wright (2006), "Numerical Optimization", Algorithm 7.4 (L-BFGS)
  and Algorithm 3.5-3.6 (zoom line search for the strong Wolfe conditions).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.gaussian_processes import exact_gp
from jaxbdl.gaussian_processes.exact_gp import GPPosterior
from jaxbdl.gaussian_processes.exact_gp import check_posterior
from jaxbdl.gaussian_processes.exact_gp import fit
from jaxbdl.gaussian_processes.exact_gp import gaussian_log_pdf
from jaxbdl.gaussian_processes.exact_gp import log_marginal_likelihood
from jaxbdl.gaussian_processes.exact_gp import predict
from jaxbdl.gaussian_processes.minimisers import MinimiseResult
from jaxbdl.gaussian_processes.minimisers import Minimiser
from jaxbdl.gaussian_processes.minimisers import adam
from jaxbdl.gaussian_processes.minimisers import lbfgs

Array = jax.Array
KernelFn = exact_gp.KernelFn
ParamKernelFn = Callable[[Any, Array, Array], Array]

__all__ = [
    "GPPosterior", "HyperparameterFit", "Minimiser", "MinimiseResult",
    "lbfgs", "adam", "fit", "predict", "check_posterior",
    "log_marginal_likelihood", "optimise_hyperparameters", "gaussian_log_pdf",
]


class HyperparameterFit(NamedTuple):
  """Result of :func:`optimise_hyperparameters`.

  Attributes:
    params: optimised kernel hyper-parameters (same pytree as the init).
    noise_variance: optimised noise variance (scalar).
    neg_log_marginal_likelihood: ``-log p(y | X) / N`` at each iteration of
      the best start, ``[max_steps]``; entries after convergence repeat the
      final value (a learning curve; lower is better).
    num_steps: iterations taken by the best start (int scalar).
    restart_values: final ``-log p(y | X) / N`` of every start, ``[R]``.
  """
  params: Any
  noise_variance: Array
  neg_log_marginal_likelihood: Array
  num_steps: Array
  restart_values: Array


# ----------------------------------------------------------------------------
# Type-II maximum likelihood.
# ----------------------------------------------------------------------------

_LOG_CLIP = 30.0      # |log value| bound: keeps line-search probes finite.


def _restart_offsets(key: Array, raw: Any, num_restarts: int,
                     spread: float) -> Any:
  """Log-scale offsets ``[R, ...]``: 0 for start 0, U(-spread, spread) after."""
  leaves, treedef = jax.tree.flatten(raw)
  keys = jax.random.split(key, len(leaves))
  out = []
  for k, leaf in zip(keys, leaves):
    u = jax.random.uniform(k, (num_restarts,) + leaf.shape, leaf.dtype,
                           -spread, spread)
    out.append(u.at[0].set(0.0))
  return jax.tree.unflatten(treedef, out)


@functools.partial(jax.jit, static_argnames=("kernel_fn", "minimiser",
                                             "num_restarts"))
def _optimise(kernel_fn, init_params, x, y, init_noise_variance, jitter,
              min_noise_variance, mask, key, spread, minimiser, num_restarts):
  n = jnp.sum(mask)

  def constrain(raw):
    params = jax.tree.map(
        lambda r: jnp.exp(jnp.clip(r, -_LOG_CLIP, _LOG_CLIP)), raw["kernel"])
    noise = jnp.exp(jnp.clip(raw["noise"], -_LOG_CLIP, _LOG_CLIP))
    return params, noise + min_noise_variance

  def loss(raw):
    params, noise = constrain(raw)
    k_fn = lambda a, b: kernel_fn(params, a, b)
    return -exact_gp.log_marginal_likelihood_unchecked(k_fn, x, y, noise, jitter, mask) / n

  raw0 = {"kernel": jax.tree.map(jnp.log, init_params),
          "noise": jnp.log(init_noise_variance - min_noise_variance)}
  offsets = _restart_offsets(key, raw0, num_restarts, spread)
  starts = jax.tree.map(lambda r, o: r[None] + o, raw0, offsets)
  results = jax.lax.map(lambda r: minimiser.minimise(loss, r), starts)
  values = jnp.where(jnp.isfinite(results.value), results.value, jnp.inf)
  best = jnp.argmin(values)
  raw = jax.tree.map(lambda v: v[best], results.params)
  params, noise = constrain(raw)
  return HyperparameterFit(params=params, noise_variance=noise,
                           neg_log_marginal_likelihood=results.history[best],
                           num_steps=results.num_steps[best],
                           restart_values=results.value)


def optimise_hyperparameters(kernel_fn: ParamKernelFn, init_params: Any,
                             x: Array, y: Array, init_noise_variance: Any, *,
                             minimiser: Minimiser | None = None,
                             num_restarts: int | None = None,
                             key: Array | None = None,
                             restart_spread: float = math.log(10.0),
                             num_steps: int | None = None,
                             learning_rate: float | None = None,
                             jitter: float = 1e-6,
                             min_noise_variance: float = 1e-6,
                             mask: Array | None = None
                             ) -> HyperparameterFit:
  """Type-II maximum likelihood: minimises ``-log p(y | X, params, s2) / N``.

  Every leaf of ``init_params`` and the noise variance is positive and is
  optimised on the log scale (noise: ``exp(raw) + min_noise_variance``).
  ``num_restarts`` starts are run in one ``vmap``: start 0 is the given
  initialisation; start r > 0 multiplies every leaf (and each entry of a
  vector leaf) by ``exp(U(-restart_spread, restart_spread))`` drawn from
  ``key``. The start with the lowest final objective is kept. Everything runs
  in one jitted program (compiled once per kernel, minimiser, restart count
  and shapes); the function is pure, so it can be ``jax.vmap``-ed over data
  splits of equal size (value checks are skipped for traced arguments).

  Args:
    kernel_fn: ``(params, x1 [N, D], x2 [M, D]) -> [N, M]``, a hashable
      callable (e.g. :func:`jaxbdl.gaussian_processes.kernels.make_kernel_fn`).
    init_params: pytree of positive scalars/arrays, e.g.
      ``{"lengthscale": jnp.ones(D), "variance": 1.0}``.
    x: inputs ``[N, D]``.
    y: targets ``[N]`` (standardised).
    init_noise_variance: initial noise variance, > ``min_noise_variance``.
    minimiser: default ``lbfgs()``; ``adam(num_steps, learning_rate)`` is the
      first-order alternative.
    num_restarts: number of starts (>= 1); default 4, or 1 with the legacy
      ``num_steps``/``learning_rate`` shorthand (the old single Adam run).
    key: PRNG key for the restart points (default ``jax.random.key(0)``: the
      starts are then a fixed function of ``init_params``).
    restart_spread: half-width of the log-scale restart box.
    num_steps, learning_rate: legacy shorthand for
      ``minimiser=adam(num_steps, learning_rate)`` (with ``num_restarts``
      starts); may not be combined with ``minimiser``.
    jitter: diagonal jitter in the Cholesky.
    min_noise_variance: lower bound on the noise variance (> 0).
    mask: optional ``[N]``, 1 = real point, 0 = padding.

  Returns:
    A :class:`HyperparameterFit`.
  """
  name = "gp.optimise_hyperparameters"
  exact_gp.validate_xy(x, y, name)
  exact_gp.validate_positive(init_noise_variance, "init_noise_variance", name)
  exact_gp.validate_positive(min_noise_variance, "min_noise_variance", name)
  exact_gp.validate_jitter(jitter, name)
  exact_gp.validate_mask(mask, np.shape(x)[0], name)
  if num_steps is not None or learning_rate is not None:
    if minimiser is not None:
      raise ValueError(f"{name}: pass either minimiser or num_steps/"
                       f"learning_rate (Adam), not both")
    if num_steps is not None and int(num_steps) < 1:
      raise ValueError(f"{name}: num_steps must be >= 1, got {num_steps}")
    minimiser = adam(200 if num_steps is None else num_steps,
                     0.05 if learning_rate is None else learning_rate)
    num_restarts = 1 if num_restarts is None else num_restarts
  num_restarts = 4 if num_restarts is None else num_restarts
  if minimiser is None:
    minimiser = _DEFAULT_MINIMISER
  if int(num_restarts) < 1:
    raise ValueError(f"{name}: num_restarts must be >= 1, got {num_restarts}")
  if exact_gp.is_concrete(init_noise_variance) and not (
      float(init_noise_variance) > float(min_noise_variance)):
    raise ValueError(f"{name}: init_noise_variance ({float(init_noise_variance)}"
                     f") must exceed min_noise_variance "
                     f"({float(min_noise_variance)})")
  for path, leaf in jax.tree_util.tree_leaves_with_path(init_params):
    if exact_gp.is_concrete(leaf) and not np.all(np.asarray(leaf) > 0):
      raise ValueError(f"{name}: initial hyper-parameter "
                       f"{jax.tree_util.keystr(path)} must be positive, got "
                       f"{np.asarray(leaf)}")
  x = jnp.asarray(x)
  y = jnp.asarray(y)
  dtype = x.dtype
  init_params = jax.tree.map(lambda v: jnp.asarray(v, dtype), init_params)
  return _optimise(kernel_fn, init_params, x, y,
                   jnp.asarray(init_noise_variance, dtype),
                   jnp.asarray(jitter, dtype),
                   jnp.asarray(min_noise_variance, dtype),
                   exact_gp.mask_or_ones(mask, x.shape[0], dtype),
                   jax.random.key(0) if key is None else key,
                   jnp.asarray(restart_spread, dtype), minimiser,
                   int(num_restarts))


_DEFAULT_MINIMISER = lbfgs()

