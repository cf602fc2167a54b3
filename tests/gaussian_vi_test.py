"""Tests for jaxbdl.bayes.gaussian_vi: densities vs scipy, the conjugate optimum.

Oracle: Bayesian linear regression ``y = X w + noise`` with a non-orthogonal
design, so the exact posterior ``N(m, A^-1)``, ``A = X^T X / s^2 + I / p^2``,
is correlated (Bishop 2006, Eq. 3.53-3.54).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from jaxbdl.bayes import gaussian_vi
from tests.helpers import assert_mc_close

NOISE, PRIOR = 0.5, 1.0


def _problem():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(30, 3))
  x = z @ np.array([[1.0, 0.8, 0.6], [0.0, 0.6, 0.5], [0.0, 0.0, 0.4]])
  y = x @ np.array([1.0, -0.5, 0.3]) + NOISE * rng.normal(size=30)
  a = x.T @ x / NOISE**2 + np.eye(3) / PRIOR**2
  m = np.linalg.solve(a, x.T @ y / NOISE**2)
  cov_y = NOISE**2 * np.eye(30) + PRIOR**2 * x @ x.T
  log_z = stats.multivariate_normal(np.zeros(30), cov_y).logpdf(y)
  return x, y, a, m, log_z


FAMILIES = [("fullrank", gaussian_vi.fullrank()),
            ("lowrank2", gaussian_vi.lowrank(2)),
            ("meanfield", gaussian_vi.lowrank(0))]


def _random_params(family, key):
  k1, k2 = jax.random.split(key)
  p = family.init(k1, jnp.array([0.3, -1.0, 2.0]), 0.7)
  # Perturb every leaf so off-diagonal structure is non-trivial.
  leaves, tree = jax.tree.flatten(p)
  keys = jax.random.split(k2, len(leaves))
  return jax.tree.unflatten(tree, [
      l + 0.3 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)])


@pytest.mark.parametrize("name,family", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_log_q_entropy_kl_match_scipy(name, family):
  p = _random_params(family, jax.random.key(1))
  mu = np.asarray(family.mean(p), np.float64)
  cov = np.asarray(family.covariance(p), np.float64)
  if name == "fullrank":
    assert np.allclose(cov, np.tril(cov) + np.tril(cov, -1).T)
  w = np.asarray(family.sample(p, jax.random.key(2), 5))
  ref = stats.multivariate_normal(mu, cov)
  np.testing.assert_allclose(family.log_q(p, jnp.asarray(w)), ref.logpdf(w),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(family.entropy(p), ref.entropy(), rtol=1e-5)
  np.testing.assert_allclose(family.marginal_variance(p), np.diag(cov),
                             rtol=1e-5)
  prec = np.array([0.5, 2.0, 1.0])
  m0 = np.array([0.1, 0.0, -0.2])
  diff = mu - m0
  kl = 0.5 * (np.sum(prec * np.diag(cov)) + diff @ (prec * diff) - 3
              - np.sum(np.log(prec)) - np.linalg.slogdet(cov)[1])
  np.testing.assert_allclose(
      family.kl_to_gaussian(p, jnp.asarray(m0, jnp.float32),
                            jnp.asarray(prec, jnp.float32)), kl, rtol=1e-4)


def test_sample_covariance_matches_within_standard_error():
  family = gaussian_vi.lowrank(2)
  p = _random_params(family, jax.random.key(3))
  n = 20000
  w = np.asarray(family.sample(p, jax.random.key(4), n), np.float64)
  cov = np.asarray(family.covariance(p), np.float64)
  emp = np.cov(w.T)
  # SE of a Gaussian sample covariance: sqrt((S_ij^2 + S_ii S_jj) / n).
  se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / n)
  assert np.all(np.abs(emp - cov) < 5 * se)  # k = 5


def _closed_form_elbo(family, a, m, log_z):
  """ELBO(q) for the linear-Gaussian posterior N(m, A^-1), exact in q:

  log Z - KL(q || N(m, A^-1)), i.e. log Z - 0.5 [tr(A S) + (mu-m)^T A (mu-m)
  - D - log|A^-1| - log|S|]; written with the family's entropy.
  """
  a, m = jnp.asarray(a, jnp.float32), jnp.asarray(m, jnp.float32)
  logdet_a = float(np.linalg.slogdet(a)[1])

  def elbo(p):
    mu, s = family.mean(p), family.covariance(p)
    d = mu - m
    cross = (-0.5 * jnp.trace(a @ s) - 0.5 * d @ a @ d
             + 0.5 * logdet_a - 0.5 * m.shape[0] * np.log(2 * np.pi))
    return log_z + cross + family.entropy(p)
  return elbo


@functools.partial(jax.jit, static_argnums=(0, 1))
def _maximise(family, elbo, p0):
  opt = optax.adam(optax.exponential_decay(0.05, 1000, 0.3))
  def step(carry, _):
    p, s = carry
    g = jax.grad(lambda q: -elbo(q))(p)
    u, s = opt.update(g, s)
    return (optax.apply_updates(p, u), s), None
  (p, _), _ = jax.lax.scan(step, (p0, opt.init(p0)), None, length=4000)
  return p


def test_fullrank_optimum_is_the_exact_posterior():
  x, y, a, m, log_z = _problem()
  family = gaussian_vi.fullrank()
  p = family.init(None, jnp.zeros(3), 0.3)
  p = _maximise(family, _closed_form_elbo(family, a, m, log_z), p)
  exact_cov = np.linalg.inv(a)
  assert abs(exact_cov[0, 1]) / np.sqrt(exact_cov[0, 0] * exact_cov[1, 1]) > 0.3
  tol = 1e-3  # float32 Adam to convergence
  np.testing.assert_allclose(family.mean(p), m, atol=tol)
  np.testing.assert_allclose(family.covariance(p), exact_cov,
                             atol=tol * exact_cov.max())


def test_meanfield_optimum_underestimates_variance():
  x, y, a, m, log_z = _problem()
  family = gaussian_vi.lowrank(0)
  p = family.init(jax.random.key(0), jnp.zeros(3), 0.3)
  p = _maximise(family, _closed_form_elbo(family, a, m, log_z), p)
  # Closed form (Bishop Eq. 10.12-10.13): mean m, variance 1 / diag(A).
  mf_var = 1.0 / np.diag(a)
  np.testing.assert_allclose(family.mean(p), m, atol=1e-3)
  np.testing.assert_allclose(family.marginal_variance(p), mf_var, rtol=1e-3)
  exact_var = np.diag(np.linalg.inv(a))
  assert np.all(np.asarray(family.marginal_variance(p)) < 0.8 * exact_var)


@pytest.mark.parametrize("name,family", FAMILIES[:1], ids=["fullrank"])
def test_monte_carlo_elbo_at_exact_posterior_is_log_evidence(name, family):
  """At q = p(w|y), log p(y, w) - log q(w) = log Z for EVERY sample w."""
  x, y, a, m, log_z = _problem()
  chol = np.linalg.cholesky(np.linalg.inv(a))
  raw = np.tril(chol, -1) + np.diag(np.log(np.diag(chol)))
  p = {"loc": jnp.asarray(m, jnp.float32), "tril": jnp.asarray(raw, jnp.float32)}
  xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

  def log_lik(w):
    r = yj - xj @ w
    return jnp.sum(-0.5 * r * r / NOISE**2 - 0.5 * np.log(2 * np.pi * NOISE**2))

  def kl_fn(qp, w):
    return family.kl_to_gaussian(qp, jnp.zeros(3), jnp.ones(3) / PRIOR**2)

  w = family.sample(p, jax.random.key(5), 64)
  log_joint = jax.vmap(log_lik)(w) + jnp.asarray(
      stats.multivariate_normal(np.zeros(3), PRIOR**2 * np.eye(3)).logpdf(
          np.asarray(w)), jnp.float32)
  per_sample = log_joint - family.log_q(p, w)
  # float32 sums of ~30 terms of size ~10: atol 1e-3 * |log Z|.
  np.testing.assert_allclose(per_sample, log_z, atol=1e-3 * abs(log_z))
  # With the closed-form KL only E_q[log lik] is Monte Carlo: |est - log Z| <
  # k * SE with SE = std(log lik) / sqrt(S) (k = 4).
  key = jax.random.key(6)
  neg = gaussian_vi.negative_elbo(family, p, key, 64, log_lik, kl_fn)
  se = float(jnp.std(jax.vmap(log_lik)(family.sample(p, key, 64)))) / 8.0
  assert abs(float(-neg) - log_z) < 4 * se + 1e-3 * abs(log_z)


def test_negative_rank_raises():
  with pytest.raises(ValueError, match="rank must be >= 0"):
    gaussian_vi.lowrank(-1)


def test_fullrank_vi_method_fit_reaches_the_exact_posterior():
  """End to end through the registry factory (Adam on the MC ELBO)."""
  import flax.linen as nn
  import ml_collections
  from jaxbdl.bayes import likelihoods, priors
  from jaxbdl.bayes import posterior as post_lib
  x, y, a, m, _ = _problem()
  model = post_lib.Model(nn.Dense(1, use_bias=False),
                         lambda hp: likelihoods.gaussian(NOISE),
                         lambda hp: priors.gaussian(PRIOR))
  cfg = ml_collections.ConfigDict(dict(
      num_epochs=1500, batch_size=30, num_train_samples=16, init_scale=0.1,
      num_predict_samples=10, predict_batch_size=None))
  post = gaussian_vi.make_fullrank(model, cfg)
  hp = {"learning_rate": 0.01, "temperature": 1.0}
  data = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}
  state, hist = jax.jit(post.fit)(jax.random.key(0), data, hp)
  family = gaussian_vi.fullrank()
  mu = np.asarray(family.mean(state["q"]), np.float64)
  s = np.asarray(family.covariance(state["q"]), np.float64)
  # KL(q || exact) from the closed form; < 0.05 nats means the fitted q is
  # practically the posterior (the stochastic optimiser's end-point jitter).
  d = mu - m
  kl = 0.5 * (np.trace(a @ s) + d @ a @ d - 3 - np.linalg.slogdet(a)[1]
              - np.linalg.slogdet(s)[1])
  assert kl < 0.05, kl
  pred = post.predict(state, data["x"][:4], jax.random.key(1), hp)
  assert pred["mean"].shape == (10, 4)
  # The predictive draws f = x w, w ~ q, are exactly Gaussian with mean
  # x mu: (mean - x mu) / SE is Student-t with 9 dof; k = 4.5 leaves
  # p = 1.5e-3 per value.
  assert_mc_close(np.asarray(pred["mean"], np.float64), x[:4] @ mu, k=4.5)
