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
import optax

Array = jax.Array
KernelFn = Callable[[Array, Array], Array]
ParamKernelFn = Callable[[Any, Array, Array], Array]

__all__ = [
    "GPPosterior", "HyperparameterFit", "Minimiser", "MinimiseResult",
    "lbfgs", "adam", "fit", "predict", "check_posterior",
    "log_marginal_likelihood", "optimise_hyperparameters", "gaussian_log_pdf",
]


class GPPosterior(NamedTuple):
  """Exact GP posterior given training data (arrays only; a pytree).

  Attributes:
    x_train: training inputs ``[N, D]``.
    alpha: ``(K + s2 I)^{-1} y``, ``[N]`` (0 at padded points).
    chol: lower Cholesky factor of ``K + (s2 + jitter) I``, ``[N, N]``.
    noise_variance: observation-noise variance s2 (scalar).
    mask: ``[N]``, 1 for real points and 0 for padding.
    ok: bool scalar, False when the Cholesky factorisation failed (NaN).
  """
  x_train: Array
  alpha: Array
  chol: Array
  noise_variance: Array
  mask: Array
  ok: Array


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
# Minimisers: (loss, x0) -> MinimiseResult, pure, jit- and vmap-able.
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _validate_xy(x: Any, y: Any, name: str) -> None:
  if np.ndim(x) != 2:
    raise ValueError(f"{name}: x must be a 2-D [N, D] array, got shape "
                     f"{np.shape(x)}")
  if np.ndim(y) != 1:
    raise ValueError(f"{name}: y must be a 1-D [N] array of targets, got shape "
                     f"{np.shape(y)}")
  if np.shape(x)[0] != np.shape(y)[0]:
    raise ValueError(f"{name}: x has {np.shape(x)[0]} rows but y has "
                     f"{np.shape(y)[0]} entries")
  if np.shape(x)[0] < 1:
    raise ValueError(f"{name}: need at least one training point")
  for label, a in (("x", x), ("y", y)):
    if _is_concrete(a) and not np.all(np.isfinite(np.asarray(a))):
      raise ValueError(f"{name}: {label} contains NaN or inf")


def _validate_mask(mask: Any, n: int, name: str) -> None:
  if mask is None:
    return
  if np.shape(mask) != (n,):
    raise ValueError(f"{name}: mask must have shape [{n}], got "
                     f"{np.shape(mask)}")
  if _is_concrete(mask) and not np.any(np.asarray(mask)):
    raise ValueError(f"{name}: mask selects no training point")


def _validate_positive(value: Any, label: str, name: str) -> None:
  if np.ndim(value) != 0:
    raise ValueError(f"{name}: {label} must be a scalar, got shape "
                     f"{np.shape(value)}")
  if _is_concrete(value):
    v = float(value)
    if not (math.isfinite(v) and v > 0):
      raise ValueError(f"{name}: {label} must be positive and finite, got {v}")


def _validate_jitter(jitter: Any, name: str) -> None:
  if _is_concrete(jitter) and not float(jitter) >= 0:
    raise ValueError(f"{name}: jitter must be >= 0, got {float(jitter)}")


_CHOLESKY_HINT = ("Cholesky of K + (noise_variance + jitter) I failed (not "
                  "positive definite): the kernel is not PSD on these inputs "
                  "or noise_variance + jitter is too small for the precision; "
                  "increase jitter or noise_variance")


def check_posterior(posterior: GPPosterior, name: str = "gp") -> GPPosterior:
  """Raises ValueError if a (concrete) posterior's Cholesky failed; returns it.

  Call at the boundary on the output of a jitted :func:`fit`.
  """
  ok = np.asarray(posterior.ok)
  if not np.all(ok):
    bad = "" if ok.ndim == 0 else f" (in {int(np.sum(~ok))} of {ok.size})"
    raise ValueError(f"{name}: {_CHOLESKY_HINT}{bad}")
  return posterior


# ----------------------------------------------------------------------------
# Exact GP.
# ----------------------------------------------------------------------------


def _mask_or_ones(mask, n, dtype):
  return jnp.ones((n,), dtype) if mask is None else jnp.asarray(mask, dtype)


def _cholesky(kernel_fn: KernelFn, x: Array, noise_variance: Any,
              jitter: Any, mask: Array) -> Array:
  """chol of K + (s2 + jitter) I with padded rows/columns set to the identity."""
  k = kernel_fn(x, x)
  n = x.shape[0]
  eye = jnp.eye(n, dtype=k.dtype)
  both = mask[:, None] * mask[None, :]
  a = both * (k + (noise_variance + jitter) * eye) + (1.0 - both) * eye
  return jnp.linalg.cholesky(a)


def _fit(kernel_fn, x, y, noise_variance, jitter, mask):
  chol = _cholesky(kernel_fn, x, noise_variance, jitter, mask)
  alpha = jax.scipy.linalg.cho_solve((chol, True), y * mask)
  ok = jnp.all(jnp.isfinite(chol))
  return GPPosterior(x_train=x, alpha=alpha, chol=chol,
                     noise_variance=jnp.asarray(noise_variance,
                                                dtype=chol.dtype),
                     mask=mask, ok=ok)


def fit(kernel_fn: KernelFn, x_train: Array, y_train: Array,
        noise_variance: Any, jitter: float = 1e-6,
        mask: Array | None = None) -> GPPosterior:
  """Conditions a zero-mean GP on ``(x_train [N, D], y_train [N])``.

  Args:
    kernel_fn: ``(x1 [N, D], x2 [M, D]) -> [N, M]``.
    x_train: training inputs ``[N, D]``.
    y_train: training targets ``[N]`` (standardised: prior mean is zero).
    noise_variance: Gaussian observation-noise variance, > 0.
    jitter: added to the diagonal for a stable Cholesky (not part of the model
      noise; predictive variances use ``noise_variance`` only).
    mask: optional ``[N]``, 1 = real point, 0 = padding (ignored exactly).

  Returns:
    A :class:`GPPosterior` (``ok`` False if the factorisation failed under
    ``jit``; see :func:`check_posterior`).

  Raises:
    ValueError: on shape mismatches, NaN/inf data, non-positive noise, and,
      outside ``jit``, a failed Cholesky factorisation.
  """
  _validate_xy(x_train, y_train, "gp.fit")
  _validate_positive(noise_variance, "noise_variance", "gp.fit")
  _validate_jitter(jitter, "gp.fit")
  _validate_mask(mask, np.shape(x_train)[0], "gp.fit")
  x_train = jnp.asarray(x_train)
  y_train = jnp.asarray(y_train)
  mask = _mask_or_ones(mask, x_train.shape[0], y_train.dtype)
  post = _fit(kernel_fn, x_train, y_train, noise_variance, jitter, mask)
  if _is_concrete(post.ok):
    check_posterior(post, "gp.fit")
  return post


def _diag(kernel_fn: KernelFn, x: Array) -> Array:
  """``k(x_i, x_i)``, ``[M]``, one 1x1 kernel evaluation per row (vmapped)."""
  return jax.vmap(lambda xi: kernel_fn(xi[None, :], xi[None, :])[0, 0])(x)


def predict(kernel_fn: KernelFn, posterior: GPPosterior, x_test: Array, *,
            full_cov: bool = False, include_noise: bool = False
            ) -> tuple[Array, Array]:
  """Posterior predictive at ``x_test [M, D]`` (Rasmussen & Williams Eq. 2.25-2.26).

  Args:
    kernel_fn: the kernel used in :func:`fit`.
    posterior: from :func:`fit`.
    x_test: test inputs ``[M, D]``.
    full_cov: return the ``[M, M]`` covariance instead of the ``[M]`` variance.
    include_noise: add ``noise_variance`` (predictive of noisy y rather than
      of the latent f).

  Returns:
    ``(mean [M], var [M])`` or ``(mean [M], cov [M, M])``; variances are
    clipped at 0 against round-off.
  """
  if np.ndim(x_test) != 2 or np.shape(x_test)[1] != np.shape(
      posterior.x_train)[1]:
    raise ValueError(f"gp.predict: x_test must be [M, {np.shape(posterior.x_train)[1]}]"
                     f", got shape {np.shape(x_test)}")
  if _is_concrete(x_test) and not np.all(np.isfinite(np.asarray(x_test))):
    raise ValueError("gp.predict: x_test contains NaN or inf")
  if _is_concrete(posterior.ok):
    check_posterior(posterior, "gp.predict")
  x_test = jnp.asarray(x_test)
  k_xs = kernel_fn(posterior.x_train, x_test) * posterior.mask[:, None]
  mean = k_xs.T @ posterior.alpha                                  # [M]
  v = jax.scipy.linalg.solve_triangular(posterior.chol, k_xs, lower=True)
  noise = posterior.noise_variance if include_noise else 0.0
  if full_cov:
    cov = kernel_fn(x_test, x_test) - v.T @ v
    cov = cov + noise * jnp.eye(x_test.shape[0], dtype=cov.dtype)
    return mean, cov
  var = jnp.maximum(_diag(kernel_fn, x_test) - jnp.sum(v * v, axis=0), 0.0)
  return mean, var + noise


def log_marginal_likelihood(kernel_fn: KernelFn, x: Array, y: Array,
                            noise_variance: Any, jitter: float = 1e-6,
                            mask: Array | None = None) -> Array:
  """``log N(y; 0, K + (noise_variance + jitter) I)`` (R&W Eq. 2.30), a scalar.

  Args:
    kernel_fn: ``(x1, x2) -> [N, M]``.
    x: inputs ``[N, D]``.
    y: targets ``[N]``.
    noise_variance: > 0.
    jitter: diagonal jitter (included in the evaluated density).
    mask: optional ``[N]`` (1 = real point); the density of the real points.
  """
  _validate_xy(x, y, "gp.log_marginal_likelihood")
  _validate_positive(noise_variance, "noise_variance",
                     "gp.log_marginal_likelihood")
  _validate_jitter(jitter, "gp.log_marginal_likelihood")
  _validate_mask(mask, np.shape(x)[0], "gp.log_marginal_likelihood")
  y = jnp.asarray(y)
  return _log_marginal_likelihood(
      kernel_fn, jnp.asarray(x), y, noise_variance, jitter,
      _mask_or_ones(mask, y.shape[0], y.dtype))


def _log_marginal_likelihood(kernel_fn, x, y, noise_variance, jitter, mask):
  chol = _cholesky(kernel_fn, x, noise_variance, jitter, mask)
  alpha = jax.scipy.linalg.cho_solve((chol, True), y * mask)
  return (-0.5 * jnp.dot(y * mask, alpha)
          - jnp.sum(jnp.log(jnp.diagonal(chol)))
          - 0.5 * jnp.sum(mask) * math.log(2.0 * math.pi))


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
    return -_log_marginal_likelihood(k_fn, x, y, noise, jitter, mask) / n

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
  _validate_xy(x, y, name)
  _validate_positive(init_noise_variance, "init_noise_variance", name)
  _validate_positive(min_noise_variance, "min_noise_variance", name)
  _validate_jitter(jitter, name)
  _validate_mask(mask, np.shape(x)[0], name)
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
  if _is_concrete(init_noise_variance) and not (
      float(init_noise_variance) > float(min_noise_variance)):
    raise ValueError(f"{name}: init_noise_variance ({float(init_noise_variance)}"
                     f") must exceed min_noise_variance "
                     f"({float(min_noise_variance)})")
  for path, leaf in jax.tree_util.tree_leaves_with_path(init_params):
    if _is_concrete(leaf) and not np.all(np.asarray(leaf) > 0):
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
                   _mask_or_ones(mask, x.shape[0], dtype),
                   jax.random.key(0) if key is None else key,
                   jnp.asarray(restart_spread, dtype), minimiser,
                   int(num_restarts))


_DEFAULT_MINIMISER = lbfgs()


def gaussian_log_pdf(y: Array, mean: Array, variance: Array) -> Array:
  """Per-point ``log N(y; mean, variance)``, all ``[M]`` -> ``[M]``.

  For scoring GP predictives (``include_noise=True``) as a test log-likelihood.
  """
  return -0.5 * (jnp.log(2.0 * jnp.pi * variance) + (y - mean) ** 2 / variance)
