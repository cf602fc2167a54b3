"""Bayesian optimisation with a Gaussian-process surrogate (minimisation).

Each round: the inputs are warped to the unit box ``[0, 1]^d`` (linearly, or
linearly in ``log x`` for log-scale parameters), the observed values are
standardised, a zero-mean GP with a Matern-5/2 ARD kernel is refitted by
type-II maximum likelihood (:func:`jaxbdl.gaussian_processes.gp.optimise_hyperparameters`,
L-BFGS with restarts), and ``q = batch_size`` new points are proposed by
maximising an acquisition function. A batch is built by the Kriging believer
heuristic: after each proposal the GP is conditioned on a fantasy observation
equal to its posterior mean there (hyper-parameters kept), and the next point
maximises the acquisition under that posterior.

Acquisitions are data (:mod:`jaxbdl.gaussian_processes.acquisitions`,
re-exported here): an :class:`Acquisition` is a pure
``score(mean [M], var [M], best, key) -> [M]`` (larger = more promising) and a
flag saying whether it may be maximised by gradients: expected improvement
(the default), a lower confidence bound, or Thompson sampling (one joint
posterior sample on a random candidate set).

The acquisition is maximised inside ``jit``: ``num_candidates`` uniform points
are scored, the best ``num_starts`` are refined by L-BFGS on ``logit(u)``
(:func:`jaxbdl.gaussian_processes.gp.lbfgs`), and the best refined point is kept. The data are
held in fixed-size buffers with a mask (:mod:`jaxbdl.gaussian_processes.gp` padding), so one
compiled ``propose`` program serves every round.

References:
  Snoek, Larochelle & Adams (2012), "Practical Bayesian Optimization of
    Machine Learning Algorithms", NeurIPS, Eq. (2) and Sec. 3.
  Ginsbourger, Le Riche & Carraro (2010), "Kriging is well-suited to
    parallelize optimization", Sec. 3.1 (Kriging believer).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.gaussian_processes import gp
from jaxbdl.gaussian_processes import kernels
from jaxbdl.gaussian_processes.acquisitions import Acquisition
from jaxbdl.gaussian_processes.acquisitions import ei
from jaxbdl.gaussian_processes.acquisitions import expected_improvement
from jaxbdl.gaussian_processes.acquisitions import lower_confidence_bound
from jaxbdl.gaussian_processes.acquisitions import mc_expected_improvement
from jaxbdl.gaussian_processes.acquisitions import thompson_sampling

Array = jax.Array

__all__ = [
    "Acquisition", "expected_improvement", "lower_confidence_bound",
    "thompson_sampling", "ei", "mc_expected_improvement", "BOResult",
    "minimize", "to_unit", "from_unit", "branin", "hartmann6",
    "BRANIN_BOUNDS", "BRANIN_MINIMUM", "HARTMANN6_BOUNDS", "HARTMANN6_MINIMUM",
]


# ----------------------------------------------------------------------------
# Input warping.
# ----------------------------------------------------------------------------


def _log_mask(bounds, log_scale):
  d = bounds.shape[0]
  if log_scale is None:
    return np.zeros(d, bool)
  return np.broadcast_to(np.asarray(log_scale, bool), (d,))


def _warp_ends(bounds, log_scale):
  bounds = jnp.asarray(bounds)
  logm = jnp.asarray(_log_mask(bounds, log_scale))
  lo = jnp.where(logm, jnp.log(jnp.where(logm, bounds[:, 0], 1.0)), bounds[:, 0])
  hi = jnp.where(logm, jnp.log(jnp.where(logm, bounds[:, 1], 1.0)), bounds[:, 1])
  return logm[None], lo[None], hi[None]


def to_unit(x: Array, bounds: Array, log_scale: Any = None) -> Array:
  """Maps ``x [n, d]`` in ``bounds [d, 2]`` to ``[0, 1]^d`` (log-linear where ``log_scale``)."""
  logm, lo, hi = _warp_ends(bounds, log_scale)
  x = jnp.asarray(x)
  xx = jnp.where(logm, jnp.log(jnp.where(logm, x, 1.0)), x)
  return (xx - lo) / (hi - lo)


def from_unit(u: Array, bounds: Array, log_scale: Any = None) -> Array:
  """Inverse of :func:`to_unit`: ``u [n, d]`` in ``[0, 1]^d`` to ``bounds``."""
  logm, lo, hi = _warp_ends(bounds, log_scale)
  v = lo + jnp.asarray(u) * (hi - lo)
  return jnp.where(logm, jnp.exp(v), v)


# ----------------------------------------------------------------------------
# One round: refit the surrogate, propose q points (one compiled program).
# ----------------------------------------------------------------------------

_KERNEL = kernels.make_kernel_fn("matern52")


class _Settings(NamedTuple):
  acquisition: Acquisition
  batch_size: int
  num_candidates: int
  num_starts: int
  acq_minimiser: gp.Minimiser
  hyper_minimiser: gp.Minimiser
  num_restarts: int


def _standardise(y, mask):
  n = jnp.sum(mask)
  mu = jnp.sum(y * mask) / n
  sd = jnp.sqrt(jnp.sum(mask * (y - mu) ** 2) / n)
  sd = jnp.where(sd > 0, sd, 1.0)
  return mask * (y - mu) / sd


@functools.partial(jax.jit, static_argnames=("settings",))
def _propose(u, y, mask, count, key, settings: _Settings):
  """Proposes ``[q, d]`` unit-box points given buffers ``u [B, d]``, ``y [B]``."""
  dtype = u.dtype
  d = u.shape[1]
  eps = float(jnp.finfo(dtype).eps)
  min_noise = 1e-6 if eps < 1e-10 else 1e-4
  jitter = 1e-8 if eps < 1e-10 else 1e-5
  ys = _standardise(y, mask)
  k_hyper, k_acq = jax.random.split(key)
  init = {"lengthscale": jnp.full((d,), 0.3, dtype), "variance": jnp.ones((), dtype)}
  hyp = gp.optimise_hyperparameters(
      _KERNEL, init, u, ys, jnp.asarray(1e-2, dtype),
      minimiser=settings.hyper_minimiser, num_restarts=settings.num_restarts,
      key=k_hyper, jitter=jitter, min_noise_variance=min_noise, mask=mask)
  kfn = functools.partial(_KERNEL, hyp.params)
  acq = settings.acquisition

  def propose_one(j, carry):
    u_b, y_b, m_b, out = carry
    post = gp.fit(kfn, u_b, y_b, hyp.noise_variance, jitter=jitter, mask=m_b)
    best = jnp.min(jnp.where(m_b > 0, y_b, jnp.inf))
    kj = jax.random.fold_in(k_acq, j)
    k_cand, k_score = jax.random.split(kj)
    cand = jax.random.uniform(k_cand, (settings.num_candidates, d), dtype)
    if acq.differentiable:
      m, v = gp.predict(kfn, post, cand)
      score = acq.score(m, v, best, k_score)
      _, top = jax.lax.top_k(score, settings.num_starts)
      starts = jnp.clip(cand[top], 1e-6, 1 - 1e-6)

      def neg(z):
        mz, vz = gp.predict(kfn, post, jax.nn.sigmoid(z)[None])
        return -acq.score(mz, vz, best, k_score)[0]

      res = jax.lax.map(lambda z0: settings.acq_minimiser.minimise(neg, z0),
                        jax.scipy.special.logit(starts))
      values = jnp.where(jnp.isfinite(res.value), res.value, jnp.inf)
      x_new = jax.nn.sigmoid(res.params[jnp.argmin(values)])
      # Never worse than the best raw candidate.
      x_new = jnp.where(jnp.min(values) <= -score[top[0]], x_new, starts[0])
    else:
      m, cov = gp.predict(kfn, post, cand, full_cov=True)
      chol = jnp.linalg.cholesky(
          cov + 1e-6 * jnp.eye(cand.shape[0], dtype=dtype))
      sample = m + chol @ jax.random.normal(k_score, m.shape, dtype)
      sample = jnp.where(jnp.isfinite(sample), sample, jnp.inf)
      x_new = cand[jnp.argmin(sample)]
    mean_new, _ = gp.predict(kfn, post, x_new[None])
    slot = count + j
    u_b = jax.lax.dynamic_update_slice(u_b, x_new[None], (slot, 0))
    y_b = jax.lax.dynamic_update_slice(y_b, mean_new, (slot,))
    m_b = jax.lax.dynamic_update_slice(m_b, jnp.ones((1,), dtype), (slot,))
    out = out.at[j].set(x_new)
    return u_b, y_b, m_b, out

  out = jnp.zeros((settings.batch_size, d), dtype)
  *_, out = jax.lax.fori_loop(0, settings.batch_size, propose_one,
                              (u, ys, mask, out))
  return out, hyp


# ----------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------


class BOResult(NamedTuple):
  """Result of :func:`minimize`.

  Attributes:
    x_best: best evaluated point ``[d]`` (original scale).
    y_best: its value (scalar).
    x_history: every evaluated point in order ``[n, d]``.
    y_history: their values ``[n]``.
    best_so_far: running minimum of ``y_history`` ``[n]``.
    num_initial: evaluations in the initial random design.
  """
  x_best: np.ndarray
  y_best: float
  x_history: np.ndarray
  y_history: np.ndarray
  best_so_far: np.ndarray
  num_initial: int


def _validate(bounds, num_evaluations, batch_size, log_scale, num_initial):
  name = "bo.minimize"
  if bounds.ndim != 2 or bounds.shape[1] != 2 or bounds.shape[0] < 1:
    raise ValueError(f"{name}: bounds must be [d, 2] (low, high) with d >= 1, "
                     f"got shape {bounds.shape}")
  if not np.all(np.isfinite(bounds)):
    raise ValueError(f"{name}: bounds contain NaN or inf")
  bad = np.nonzero(bounds[:, 0] >= bounds[:, 1])[0]
  if bad.size:
    raise ValueError(f"{name}: bounds need low < high; dimension {int(bad[0])} "
                     f"has low={bounds[bad[0], 0]} >= high={bounds[bad[0], 1]}")
  if isinstance(num_evaluations, bool) or int(num_evaluations) < 1:
    raise ValueError(f"{name}: num_evaluations must be >= 1, got "
                     f"{num_evaluations}")
  if int(batch_size) < 1:
    raise ValueError(f"{name}: batch_size must be >= 1, got {batch_size}")
  if num_initial is not None and int(num_initial) < 1:
    raise ValueError(f"{name}: num_initial must be >= 1, got {num_initial}")
  logm = _log_mask(bounds, log_scale) if log_scale is not None else None
  if logm is not None and np.any(bounds[logm, 0] <= 0):
    raise ValueError(f"{name}: log-scale dimensions need low > 0, got bounds "
                     f"{bounds[logm].tolist()}")


def minimize(f: Callable[[np.ndarray], Any], bounds: Any, key: Array,
             num_evaluations: int, batch_size: int = 1, *,
             log_scale: Any = None,
             acquisition: Acquisition | None = None,
             num_initial: int | None = None,
             num_candidates: int = 512, num_starts: int = 4,
             acq_minimiser: gp.Minimiser | None = None,
             hyper_minimiser: gp.Minimiser | None = None,
             num_restarts: int = 2,
             dtype: Any = None) -> BOResult:
  """Minimises a black-box ``f`` over a box by GP Bayesian optimisation.

  Args:
    f: ``x [q, d] -> [q]`` values to minimise (called with numpy arrays on
      the original scale; always with ``q = batch_size`` rows, the last call
      possibly truncated to the remaining budget).
    bounds: ``[d, 2]`` (low, high) per dimension, low < high.
    key: PRNG key (initial design, restarts, candidates).
    num_evaluations: total evaluations of f, >= 1.
    batch_size: points proposed per round (Kriging believer), >= 1.
    log_scale: bool or ``[d]`` bools: search ``log x`` uniformly (low > 0).
    acquisition: default :func:`expected_improvement`.
    num_initial: random initial design size (default
      ``min(num_evaluations, max(2 d, batch_size))``, rounded up to a
      multiple of ``batch_size``).
    num_candidates, num_starts: random points scored per proposal and the
      best of them refined by ``acq_minimiser`` (default ``gp.lbfgs(25)``).
    hyper_minimiser, num_restarts: GP hyper-parameter fit per round
      (default ``gp.lbfgs(50)``, 2 starts).
    dtype: float dtype of the surrogate (default: float64 if x64 is enabled).

  Returns:
    A :class:`BOResult`.
  """
  bounds = np.asarray(bounds, np.float64)
  _validate(bounds, num_evaluations, batch_size, log_scale, num_initial)
  num_evaluations, q = int(num_evaluations), int(batch_size)
  d = bounds.shape[0]
  if num_initial is None:
    num_initial = min(num_evaluations, max(2 * d, q))
  num_initial = min(num_evaluations, -(-int(num_initial) // q) * q)
  dtype = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
  settings = _Settings(
      acquisition=acquisition or _EI, batch_size=q,
      num_candidates=int(num_candidates), num_starts=int(num_starts),
      acq_minimiser=acq_minimiser or _ACQ_MINIMISER,
      hyper_minimiser=hyper_minimiser or _HYPER_MINIMISER,
      num_restarts=int(num_restarts))
  if settings.num_starts > settings.num_candidates:
    raise ValueError(f"bo.minimize: num_starts ({num_starts}) must be <= "
                     f"num_candidates ({num_candidates})")

  capacity = num_evaluations + q                # room for a round's fantasies
  u_buf = np.zeros((capacity, d), dtype)
  y_buf = np.zeros((capacity,), dtype)
  mask = np.zeros((capacity,), dtype)
  xs, ys = [], []

  def evaluate(u):
    x = np.asarray(from_unit(jnp.asarray(u), bounds, log_scale), np.float64)
    x = np.clip(x, bounds[:, 0], bounds[:, 1])
    values = np.asarray(f(x), np.float64).reshape(-1)
    if values.shape != (u.shape[0],):
      raise ValueError(f"bo.minimize: f must map [q, d] to [q]; got "
                       f"{values.shape} for q={u.shape[0]}")
    if not np.all(np.isfinite(values)):
      raise ValueError(f"bo.minimize: f returned NaN or inf at {x.tolist()}")
    n = len(ys)
    u_buf[n:n + len(values)] = u
    y_buf[n:n + len(values)] = values
    mask[n:n + len(values)] = 1.0
    xs.extend(x)
    ys.extend(values)

  init_key, loop_key = jax.random.split(key)
  u_init = np.asarray(jax.random.uniform(init_key, (num_initial, d), dtype))
  for start in range(0, num_initial, q):
    evaluate(u_init[start:start + q])
  round_ = 0
  while len(ys) < num_evaluations:
    props, _ = _propose(jnp.asarray(u_buf), jnp.asarray(y_buf),
                        jnp.asarray(mask), jnp.asarray(len(ys)),
                        jax.random.fold_in(loop_key, round_), settings)
    props = np.asarray(props)[:num_evaluations - len(ys)]
    evaluate(props)
    round_ += 1
  y_hist = np.asarray(ys)
  x_hist = np.asarray(xs)
  best = int(np.argmin(y_hist))
  return BOResult(x_best=x_hist[best], y_best=float(y_hist[best]),
                  x_history=x_hist, y_history=y_hist,
                  best_so_far=np.minimum.accumulate(y_hist),
                  num_initial=num_initial)


_EI = expected_improvement()
_ACQ_MINIMISER = gp.lbfgs(max_steps=25)
_HYPER_MINIMISER = gp.lbfgs(max_steps=50)


# ----------------------------------------------------------------------------
# Test functions with known minima.
# ----------------------------------------------------------------------------

BRANIN_BOUNDS = np.array([[-5.0, 10.0], [0.0, 15.0]])
BRANIN_MINIMUM = 0.397887357729738      # at (-pi, 12.275), (pi, 2.275), ...
HARTMANN6_BOUNDS = np.array([[0.0, 1.0]] * 6)
HARTMANN6_MINIMUM = -3.32236801141551


def branin(x: Any) -> np.ndarray:
  """Branin-Hoo, ``[q, 2] -> [q]`` on ``BRANIN_BOUNDS``; minimum 0.397887."""
  x = np.asarray(x, np.float64)
  x1, x2 = x[:, 0], x[:, 1]
  b, c = 5.1 / (4 * np.pi ** 2), 5 / np.pi
  return ((x2 - b * x1 ** 2 + c * x1 - 6) ** 2
          + 10 * (1 - 1 / (8 * np.pi)) * np.cos(x1) + 10)


_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886],
                         [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650],
                         [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(x: Any) -> np.ndarray:
  """Hartmann-6, ``[q, 6] -> [q]`` on ``[0, 1]^6``; minimum -3.32237."""
  x = np.asarray(x, np.float64)
  inner = np.sum(_H6_A[None] * (x[:, None, :] - _H6_P[None]) ** 2, axis=-1)
  return -np.sum(_H6_ALPHA[None] * np.exp(-inner), axis=-1)
