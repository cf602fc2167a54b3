"""Shared test helpers: derived tolerances and tiny on-disk fixtures.

* :data:`TOL` / :func:`tol`: a dtype-keyed tolerance table for deterministic
  math (a multiple of machine epsilon, the multiple stated at the call).
* :func:`assert_mc_close`: a Monte Carlo check whose tolerance is derived
  from the standard error computed from the samples themselves:
  ``|mean(samples) - exact| < k * SE`` with ``SE = std(samples, ddof=1) /
  sqrt(S)``; with ``k = 4`` a correct estimator fails with probability
  about 6e-5 per compared value (normal approximation).
* :func:`write_uci_folder`: a tiny data set in the UCI 20-split layout
  (was ``tests/uci_layout.py``, which still re-exports it).
* :data:`FIXTURES`: the folder of small committed fixtures (``tests/fixtures``)
  so that no test reads ``../shared`` or an absolute path of one machine.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["TOL", "tol", "assert_mc_close", "write_uci_folder", "FIXTURES",
           "linear_regression_data", "correlated_linear_regression"]

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "fixtures")

# rtol = atol = ulps * eps(dtype); ``ulps`` says how many roundings the
# computation accumulates (e.g. a length-N sum: N in the worst case).
_EPS = {np.dtype(np.float16): float(np.finfo(np.float16).eps),
        np.dtype(np.float32): float(np.finfo(np.float32).eps),
        np.dtype(np.float64): float(np.finfo(np.float64).eps)}
TOL = {dtype: dict(rtol=16 * eps, atol=16 * eps) for dtype, eps in _EPS.items()}


def linear_regression_data(n: int = 200, seed: int = 0):
  """``x [n, 3]``, ``y = x (1, -2, 0.5) + 0.1 eps`` (float32, numpy)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)).astype(
      np.float32)
  return x, y


def correlated_linear_regression(noise: float, prior: float):
  """Bayesian linear regression with a CORRELATED posterior (non-orthogonal
  design, 30 points, 3 weights, float64): ``x [30, 3]``, ``y [30]``, the
  exact posterior precision ``a [3, 3]`` and mean ``m [3]`` for
  ``y ~ N(x w, noise^2)``, ``w ~ N(0, prior^2 I)``."""
  rng = np.random.default_rng(0)
  z = rng.normal(size=(30, 3))
  x = z @ np.array([[1.0, 0.8, 0.6], [0.0, 0.6, 0.5], [0.0, 0.0, 0.4]])
  y = x @ np.array([1.0, -0.5, 0.3]) + noise * rng.normal(size=30)
  a = x.T @ x / noise**2 + np.eye(3) / prior**2
  m = np.linalg.solve(a, x.T @ y / noise**2)
  return x, y, a, m


def tol(dtype: Any, ulps: float = 16.0) -> dict:
  """``dict(rtol=ulps * eps, atol=ulps * eps)`` for ``dtype``."""
  dtype = np.dtype(dtype)
  if dtype not in _EPS:
    raise ValueError(f"tol: no tolerance for dtype {dtype}; known: "
                     f"{sorted(str(d) for d in _EPS)}")
  if not ulps > 0:
    raise ValueError(f"tol: ulps must be > 0, got {ulps}")
  eps = _EPS[dtype]
  return dict(rtol=ulps * eps, atol=ulps * eps)


def assert_mc_close(samples: Any, exact: Any, k: float = 4.0) -> None:
  """Asserts ``|mean(samples, 0) - exact| < k * SE`` elementwise.

  Args:
    samples: ``[S, ...]`` independent draws of an unbiased estimator.
    exact: the exact expectation, broadcastable to ``samples.shape[1:]``.
    k: how many standard errors are allowed (state why at the call).

  Raises:
    ValueError: fewer than 2 samples, non-finite samples, or k <= 0.
    AssertionError: naming the worst entry, its estimate, exact value, SE
      and the number of SEs.
  """
  samples = np.asarray(samples, np.float64)
  if samples.ndim < 1 or samples.shape[0] < 2:
    raise ValueError(f"assert_mc_close: need samples [S >= 2, ...], got "
                     f"shape {list(samples.shape)}")
  if not np.all(np.isfinite(samples)):
    raise ValueError("assert_mc_close: samples hold non-finite values")
  if not k > 0:
    raise ValueError(f"assert_mc_close: k must be > 0, got {k}")
  s = samples.shape[0]
  est = samples.mean(axis=0)
  se = samples.std(axis=0, ddof=1) / np.sqrt(s)
  exact = np.broadcast_to(np.asarray(exact, np.float64), est.shape)
  err = np.abs(est - exact)
  # A zero SE (constant samples) leaves only float rounding as slack.
  allowed = np.maximum(k * se, 64 * np.finfo(np.float64).eps
                       * np.maximum(1.0, np.abs(exact)))
  if not np.all(err < allowed):
    i = np.unravel_index(np.argmax(err / allowed), est.shape)
    raise AssertionError(
        f"Monte Carlo estimate {est[i]:.6g} at {list(i)} differs from exact "
        f"{exact[i]:.6g} by {err[i]:.3g} = {err[i] / max(se[i], 1e-300):.2f} "
        f"SE (SE {se[i]:.3g}, S = {s}, allowed k = {k})")


def write_uci_folder(root, name="toy", rows=60, n_splits=3, nan=False,
                     index_files=True):
  """Writes a tiny data set in the standard layout; returns its folder."""
  folder = root / name
  folder.mkdir(parents=True)
  rng = np.random.RandomState(0)
  x = rng.randn(rows, 3)
  y = x[:, 0] - 0.5 * x[:, 1] ** 2 + 0.1 * rng.randn(rows)
  table = np.concatenate([x, 10.0 + 3.0 * y[:, None]], axis=1)
  if nan:
    table[5, 1] = np.nan
  np.savetxt(folder / "data.txt", table)
  (folder / "n_splits.txt").write_text(f"{n_splits}\n")
  if index_files:
    (folder / "index_features.txt").write_text("0\n1\n2\n")
    (folder / "index_target.txt").write_text("3\n")
    n_test = rows // 10
    for k in range(n_splits):
      perm = np.random.RandomState(k).permutation(rows)
      np.savetxt(folder / f"index_train_{k}.txt", perm[n_test:], fmt="%d")
      np.savetxt(folder / f"index_test_{k}.txt", perm[:n_test], fmt="%d")
  return folder
