"""Laplace evidence and hyper-parameters against Bayesian linear regression.

For a linear model with a Gaussian likelihood and prior the Laplace
approximation is exact (the GGN is the Hessian), so the oracles are closed
forms computed here in numpy / scipy: the posterior covariance
``(alpha I + beta X^T X)^-1``, the evidence ``N(y | 0, X X^T / alpha + I /
beta)`` and MacKay's evidence fixed point (Bishop 2006, Eq. 3.92, 3.95),
iterated to convergence with the posterior mean updated each step. The
network's MAP is set to that posterior mean, so the post-hoc optimum in
``(delta, sigma)`` must be the fixed point itself. Float64; tolerances
``1e-8`` relative (the Newton refinement converges quadratically; Adam alone
would not reach float precision).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxbdl.bayes import laplace

RTOL = 1e-8


def _mackay(x, y, iters=2000):
  n, d = x.shape
  a, b = 1.0, 1.0
  for _ in range(iters):
    cov = np.linalg.inv(a * np.eye(d) + b * x.T @ x)
    m = b * cov @ x.T @ y
    gamma = d - a * np.trace(cov)
    a, b = gamma / (m @ m), (n - gamma) / np.sum((y - x @ m) ** 2)
  cov = np.linalg.inv(a * np.eye(d) + b * x.T @ x)
  return a, b, b * cov @ x.T @ y, cov


def _data(orthogonal, n=30, d=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d))
  if orthogonal:     # X^T X diagonal (distinct scales): diag GGN is exact
    q, _ = np.linalg.qr(x)
    x = q * np.array([3.0, 2.0, 1.5, 1.0])[None, :d]
  y = x @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
  return x, y


_NET = nn.Dense(1, use_bias=False)


def _apply(p, x):
  return _NET.apply({"params": p}, x)


@pytest.mark.parametrize("structure,orthogonal", [
    ("full", False), ("kron", False), ("diag", True),
    # Low-rank at full rank is checked against the dense GGN in
    # laplace_curvature_test; its own compile here is CI time.
    pytest.param("lowrank", False, marks=pytest.mark.experiment)])
def test_linear_regression_is_exact(structure, orthogonal):
  with jax.enable_x64(True):
    x, y = _data(orthogonal)
    a, b, m, cov = _mackay(x, y)
    params = {"kernel": jnp.asarray(m[:, None])}
    la = laplace.Laplace(_apply, params, "regression",
                         hessian_structure=structure, rank=x.shape[1])
    state = la.fit(params, jnp.asarray(x), jnp.asarray(y))
    state, hist = la.optimize_prior_precision(state, fit_noise=True,
                                              n_steps=200, newton_steps=10)
    np.testing.assert_allclose(float(state.prior_precision[0]), a, rtol=RTOL)
    np.testing.assert_allclose(float(state.sigma_noise), 1 / np.sqrt(b),
                               rtol=RTOL)
    np.testing.assert_allclose(np.linalg.inv(la.posterior_precision(state)),
                               cov, rtol=RTOL, atol=RTOL * np.abs(cov).max())
    evidence = stats.multivariate_normal(
        np.zeros(len(y)), x @ x.T / a + np.eye(len(y)) / b).logpdf(y)
    np.testing.assert_allclose(float(la.log_marginal_likelihood(state)),
                               evidence, rtol=RTOL)
    np.testing.assert_allclose(-hist["neg_log_marglik"][-1], evidence,
                               rtol=RTOL)
    pred = la.predict(state, jnp.asarray(x[:5]), chunk_size=2)
    np.testing.assert_allclose(pred["mean"], x[:5] @ m, rtol=RTOL)
    np.testing.assert_allclose(
        pred["variance"], np.einsum("md,de,me->m", x[:5], cov, x[:5]) + 1 / b,
        rtol=RTOL)


def test_diagonal_prior_reaches_per_weight_fixed_point():
  """Stationarity of the post-hoc evidence in ``delta_i`` and ``sigma``:
  ``delta_i theta_i^2 = gamma_i = 1 - delta_i Sigma_ii`` and
  ``sigma^2 = SSR / (N - sum gamma)`` (derivatives of the log det terms)."""
  with jax.enable_x64(True):
    x, y = _data(False, seed=1)
    a, b, m, _ = _mackay(x, y)
    params = {"kernel": jnp.asarray(m[:, None])}
    la = laplace.Laplace(_apply, params, "regression")
    state = la.fit(params, jnp.asarray(x), jnp.asarray(y), prior_precision=a,
                   sigma_noise=1 / np.sqrt(b))
    state, _ = la.optimize_prior_precision(
        state, prior_structure="diagonal", fit_noise=True, n_steps=300,
        newton_steps=20)
    delta = np.asarray(state.prior_precision)
    sigma2 = float(state.sigma_noise) ** 2
    cov = np.linalg.inv(np.diag(delta) + x.T @ x / sigma2)
    gamma = 1 - delta * np.diag(cov)
    np.testing.assert_allclose(delta * m ** 2, gamma, rtol=1e-6)
    np.testing.assert_allclose(sigma2, np.sum((y - x @ m) ** 2)
                               / (len(y) - gamma.sum()), rtol=1e-6)


def test_bad_input():
  with jax.enable_x64(True):
    x, y = _data(False)
    _, _, m, _ = _mackay(x, y, iters=50)
    params = {"kernel": jnp.asarray(m[:, None])}
    la = laplace.Laplace(_apply, params, "regression")
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    with pytest.raises(ValueError, match="prior_precision must be > 0"):
      la.fit(params, xj, yj, prior_precision=0.0)
    with pytest.raises(ValueError, match="not positive semi-definite"):
      la.fit(params, xj, yj, damping=-1e6)
    # A MAP far from converged: the weights scaled by 10.
    bad = {"kernel": 10 * params["kernel"]}
    with pytest.warns(RuntimeWarning, match="MAP is not converged"):
      la.fit(bad, xj, yj, sigma_noise=0.3)
    state = la.fit(params, xj, yj, sigma_noise=0.3)
    with pytest.raises(ValueError, match="prior_precision must be > 0"):
      la.log_marginal_likelihood(state, prior_precision=-1.0)
    with pytest.raises(ValueError, match="prior_structure must be one of"):
      la.optimize_prior_precision(state, prior_structure="per_unit")
    with pytest.raises(ValueError, match="likelihood must be one of"):
      laplace.Laplace(_apply, params, "poisson")
    with pytest.raises(ValueError, match="hessian_structure must be one of"):
      laplace.Laplace(_apply, params, "regression", hessian_structure="kfac")
    with pytest.raises(ValueError, match="fit_noise=True needs"):
      laplace.Laplace(_apply, params, "binary").optimize_prior_precision(
          state, fit_noise=True)
