"""Laplace predictives against dense references and Monte Carlo oracles.

* GLM regression: ``J Sigma J^T + sigma^2`` with ``J`` from
  ``jax.jacobian`` and ``Sigma`` the numpy inverse of the structure's dense
  posterior precision (float64, ``1e-8`` relative), chunked (M = 7, chunk 3).
* Binary classification: the library's MC link against the exact
  ``E[sigmoid(f)]`` by 200-point Gauss-Hermite quadrature, ``|mc - exact| <
  4 SE`` with ``SE = sqrt(Var[sigmoid(f)] / S)`` (variance by the same
  quadrature); the probit predictive against the same exact value within
  ``4 SE + 2 * 0.0189``: ``0.0189 >= sup_z |sigmoid(z) - Phi(sqrt(pi/8) z)|``
  (evaluated on a grid here), once for the link inside the expectation and
  once for the probit formula ``Phi(lambda mu / sqrt(1 + lambda^2 s^2))``.
* NN sampling (same states as the GLM check): the empirical covariance of ``S`` weight draws against the
  posterior covariance entrywise, ``|C_hat - C| < 5 SE`` with ``SE_ij =
  sqrt((C_ii C_jj + C_ij^2) / S)`` (Gaussian fourth moments), for full, diag
  and kron.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy import stats

from jaxbdl.nn import networks
from jaxbdl.bayes import laplace


def _mlp_problem(k, likelihood, n=12, seed=0):
  net = networks.MLP((5, k), activation="tanh")
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, 2)))
  if likelihood == "regression":
    y = jnp.asarray(np.sin(np.asarray(x[:, 0])) + 0.1 * rng.normal(size=n))
  else:
    y = jnp.asarray((rng.random(n) < 0.5).astype(np.float64))
  params = jax.tree.map(lambda a: a.astype(jnp.float64),
                        jax.jit(net.init)(jax.random.key(seed), x)["params"])
  return (lambda p, xx: net.apply({"params": p}, xx)), params, x, y


@pytest.mark.parametrize("structure", [
    "full", "kron",
    # diag's solves are elementwise; the categorical MC test uses it too.
    pytest.param("diag", marks=pytest.mark.experiment)])
def test_glm_variance_and_nn_samples(structure):
  """GLM variance = dense ``J Sigma J^T + sigma^2``; weight draws have
  covariance ``Sigma`` (one fitted state per structure)."""
  with jax.enable_x64(True):
    apply_fn, params, x, y = _mlp_problem(1, "regression")
    la = laplace.Laplace(apply_fn, params, "regression",
                         hessian_structure=structure, chunk_size=5)
    state = la.fit(params, x, y, prior_precision=2.0, sigma_noise=0.5,
                   map_gradient_tol=np.inf)
    cov = np.linalg.inv(np.asarray(la.posterior_precision(state)))
    xt = jnp.asarray(np.random.default_rng(1).normal(size=(7, 2)))
    pred = la.predict(state, xt, chunk_size=3)
    flat, unravel = ravel_pytree(params)
    jac = np.asarray(jax.jacobian(
        lambda t: apply_fn(unravel(t), xt)[:, 0])(flat))          # [M, P]
    want = np.einsum("mp,pq,mq->m", jac, cov, jac)
    np.testing.assert_allclose(pred["f_variance"], want, rtol=1e-8)
    np.testing.assert_allclose(pred["variance"], want + 0.25, rtol=1e-8)
    np.testing.assert_allclose(pred["mean"], apply_fn(params, xt)[:, 0],
                               rtol=1e-12)
    n_samples = 20000
    draws = la.sample(state, jax.random.key(2), n_samples)
    centred = np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(draws)
                         - state.theta[None])
    emp = centred.T @ centred / n_samples
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2)
                 / n_samples)
    assert np.max(np.abs(emp - cov) / se) < 5.0
    nn_pred = la.predict(state, xt, pred_type="nn", n_samples=7,
                         key=jax.random.key(3))
    assert nn_pred["mean"].shape == (7, 7)
    np.testing.assert_allclose(nn_pred["variance"], 0.25, rtol=1e-12)


def test_binary_probit_and_mc_against_quadrature():
  with jax.enable_x64(True):
    apply_fn, params, x, y = _mlp_problem(1, "binary")
    la = laplace.Laplace(apply_fn, params, "binary")
    # A small prior precision widens f's variance so the test has teeth.
    state = la.fit(params, x, y, prior_precision=0.05,
                   map_gradient_tol=np.inf)
    xt = jnp.asarray(np.random.default_rng(2).normal(size=(6, 2)) * 3)
    mu, var = laplace.predictive.glm_moments(la.spec, state, xt)
    mu, s = np.asarray(mu[:, 0]), np.sqrt(np.asarray(var[:, 0, 0]))
    assert s.min() > 0.5, s                     # not a trivial comparison
    z, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    sig = stats.logistic.cdf(mu[:, None] + s[:, None] * z[None])
    exact = sig @ w
    var_sig = (sig ** 2) @ w - exact ** 2
    n_samples = 4000
    mc = la.predict(state, xt, link_approx="mc", n_samples=n_samples,
                    key=jax.random.key(0))["probs"][:, 1]
    se = np.sqrt(var_sig / n_samples)
    assert np.all(np.abs(mc - exact) < 4 * se), (mc, exact, se)
    grid = np.linspace(-10, 10, 20001)
    link_err = np.max(np.abs(stats.logistic.cdf(grid)
                             - stats.norm.cdf(np.sqrt(np.pi / 8) * grid)))
    assert link_err < 0.0189
    probit = la.predict(state, xt)["probs"][:, 1]
    assert np.all(np.abs(probit - exact) < 2 * 0.0189), (probit, exact)
    np.testing.assert_allclose(la.predict(state, xt)["probs"].sum(-1), 1.0)


def test_categorical_mc_link_against_independent_mc():
  """Library MC vs an MC computed here from the dense f covariance."""
  with jax.enable_x64(True):
    apply_fn, params, x, _ = _mlp_problem(3, "classification")
    y = jnp.asarray(np.arange(x.shape[0]) % 3)
    la = laplace.Laplace(apply_fn, params, "classification",
                         hessian_structure="diag")
    state = la.fit(params, x, y, prior_precision=0.1,
                   map_gradient_tol=np.inf)
    xt = x[:4]
    mu, var = laplace.predictive.glm_moments(la.spec, state, xt)
    n_samples = 4000
    lib = la.predict(state, xt, link_approx="mc", n_samples=n_samples,
                     key=jax.random.key(1))["probs"]
    rng = np.random.default_rng(3)
    mu, var = np.asarray(mu), np.asarray(var)
    draws = np.stack([rng.multivariate_normal(mu[i], var[i], n_samples)
                      for i in range(len(mu))], 1)            # [S, M, K]
    p = np.exp(draws - draws.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    ref, se = p.mean(0), p.std(0) / np.sqrt(n_samples)
    assert np.all(np.abs(lib - ref) < 5 * np.sqrt(2) * se + 1e-12)
