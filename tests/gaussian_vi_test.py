"""Tests for jaxbdl.bayes.families and gaussian_vi (full-rank / low-rank VI
through the core ELBO): densities vs scipy, the conjugate optimum, estimators.

Oracle: Bayesian linear regression ``y = X w + noise`` with a non-orthogonal
design, so the exact posterior ``N(m, A^-1)``, ``A = X^T X / s^2 + I / p^2``,
is correlated (Bishop 2006, Eq. 3.53-3.54).
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from scipy import stats

from jaxbdl.gradients import estimators
from jaxbdl.bayes import elbo
from jaxbdl.bayes import families
from jaxbdl.bayes import gaussian_vi
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes import priors
from tests import helpers

NOISE, PRIOR = 0.5, 1.0
K_SE = 4.0  # Monte Carlo checks: |estimate - exact| < K_SE * SE.


def _problem():
  x, y, a, m = helpers.correlated_linear_regression(NOISE, PRIOR)
  cov_y = NOISE**2 * np.eye(30) + PRIOR**2 * x @ x.T
  log_z = stats.multivariate_normal(np.zeros(30), cov_y).logpdf(y)
  return x, y, a, m, log_z


FAMILIES = [("fullrank", families.fullrank()),
            ("lowrank2", families.lowrank(2)),
            ("lowrank0", families.lowrank(0)),
            ("mean_field", families.mean_field())]


def _random_params(family, key):
  k1, k2 = jax.random.split(key)
  p = family.init(k1, jnp.array([0.3, -1.0, 2.0]), 0.7)
  # Perturb every leaf so off-diagonal structure is non-trivial.
  leaves, tree = jax.tree.flatten(p)
  keys = jax.random.split(k2, len(leaves))
  return jax.tree.unflatten(tree, [
      l + 0.3 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)])


def _diag_prior(prec):
  """A zero-mean Gaussian prior with per-weight precision ``prec`` [3]."""
  prec = jnp.asarray(prec, jnp.float32)
  return priors.Prior(
      "diag", lambda w: {},
      lambda th, w: jnp.sum(0.5 * (jnp.log(prec / (2 * np.pi))
                                   - prec * w * w)), None,
      lambda th, w: prec)


@pytest.mark.parametrize("name,family", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_log_q_entropy_kl_match_scipy(name, family):
  p = _random_params(family, jax.random.key(1))
  mu = np.asarray(p["loc"], np.float64)
  cov = np.asarray(family.covariance(p), np.float64)
  assert np.allclose(cov, cov.T)
  w = np.asarray(families.draw(family, p, jax.random.key(2), (5,)))
  ref = stats.multivariate_normal(mu, cov)
  np.testing.assert_allclose(jax.vmap(lambda v: family.log_q(p, v))(w),
                             ref.logpdf(w), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(family.entropy(p), ref.entropy(), rtol=1e-5)
  np.testing.assert_allclose(family.marginal_variance(p), np.diag(cov),
                             rtol=1e-5)
  # KL to N(0, diag(prec)^-1) (Rasmussen & Williams Eq. A.23) vs scipy-free
  # numpy; mean field has it for the library's Gaussian prior only.
  prec = np.array([0.5, 2.0, 1.0]) if name != "mean_field" else np.full(3, 4.)
  prior = _diag_prior(prec) if name != "mean_field" else priors.gaussian(0.5)
  kl = 0.5 * (np.sum(prec * np.diag(cov)) + mu @ (prec * mu) - 3
              - np.sum(np.log(prec)) - np.linalg.slogdet(cov)[1])
  np.testing.assert_allclose(family.kl(prior)({}, p), kl, rtol=1e-4)
  assert family.kl(priors.laplace(1.0) if name != "mean_field"
                   else priors.scale_mixture()) is None


def test_sample_covariance_matches_within_standard_error():
  family = families.lowrank(2)
  p = _random_params(family, jax.random.key(3))
  n = 20000
  w = np.asarray(families.draw(family, p, jax.random.key(4), (n,)), np.float64)
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

  def elbo_fn(p):
    mu, s = p["loc"], family.covariance(p)
    d = mu - m
    cross = (-0.5 * jnp.trace(a @ s) - 0.5 * d @ a @ d
             + 0.5 * logdet_a - 0.5 * m.shape[0] * np.log(2 * np.pi))
    return log_z + cross + family.entropy(p)
  return elbo_fn


@functools.partial(jax.jit, static_argnums=(0, 1))
def _maximise(family, elbo_fn, p0):
  opt = optax.adam(optax.exponential_decay(0.05, 1000, 0.3))
  def step(carry, _):
    p, s = carry
    g = jax.grad(lambda q: -elbo_fn(q))(p)
    u, s = opt.update(g, s)
    return (optax.apply_updates(p, u), s), None
  (p, _), _ = jax.lax.scan(step, (p0, opt.init(p0)), None, length=4000)
  return p


def test_meanfield_optimum_underestimates_variance():
  x, y, a, m, log_z = _problem()
  family = families.lowrank(0)
  p = family.init(jax.random.key(0), jnp.zeros(3), 0.3)
  p = _maximise(family, _closed_form_elbo(family, a, m, log_z), p)
  # Closed form (Bishop Eq. 10.12-10.13): mean m, variance 1 / diag(A).
  mf_var = 1.0 / np.diag(a)
  np.testing.assert_allclose(p["loc"], m, atol=1e-3)
  np.testing.assert_allclose(family.marginal_variance(p), mf_var, rtol=1e-3)
  exact_var = np.diag(np.linalg.inv(a))
  assert np.all(np.asarray(family.marginal_variance(p)) < 0.8 * exact_var)


def _model():
  return post_lib.Model(nn.Dense(1, use_bias=False),
                        lambda hp: likelihoods.gaussian(NOISE),
                        lambda hp: priors.gaussian(PRIOR))


def _data(x, y):
  return {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}


def _exact_fullrank_q(a, m):
  chol = np.linalg.cholesky(np.linalg.inv(a))
  raw = np.tril(chol, -1) + np.diag(np.log(np.diag(chol)))
  return {"loc": {"kernel": jnp.asarray(m, jnp.float32)[:, None]},
          "tril": jnp.asarray(raw, jnp.float32)}


def test_core_elbo_at_the_exact_posterior_is_the_log_evidence():
  """q = p(w|y): with the MC KL, log p(y, w) - log q(w) = log Z for EVERY
  sample; with the closed-form KL only E_q[log lik] is Monte Carlo."""
  x, y, a, m, log_z = _problem()
  family = families.fullrank()
  params = elbo.init_params(_exact_fullrank_q(a, m), priors.gaussian(PRIOR),
                            likelihoods.gaussian(NOISE))
  model = elbo.weight_space(post_lib.point_apply(nn.Dense(1, use_bias=False)),
                            family)
  data = _data(x, y)

  def terms(key, kl):
    return elbo.elbo_terms(params, data["x"], data["y"], key, model=model,
                           likelihood=likelihoods.gaussian(NOISE),
                           prior=priors.gaussian(PRIOR), num_data=30,
                           kl_estimator=kl)

  keys = jax.random.split(jax.random.key(5), 64)
  per_sample = jax.vmap(lambda k: terms(k, elbo.mc_kl)["elbo"])(keys)
  # float32 sums of ~30 terms of size ~10: atol 1e-3 * |log Z|.
  np.testing.assert_allclose(per_sample, log_z, atol=1e-3 * abs(log_z))
  t = jax.vmap(lambda k: terms(k, elbo.analytic_kl))(keys)
  se = float(jnp.std(t["expected_log_lik"])) / np.sqrt(64)
  assert abs(float(jnp.mean(t["elbo"])) - log_z) < K_SE * se + 1e-3 * abs(
      log_z)


def test_negative_rank_raises():
  with pytest.raises(ValueError, match="rank must be >= 0"):
    families.lowrank(-1)


def test_fullrank_without_gaussian_prior_needs_a_sampled_kl():
  model = elbo.weight_space(lambda w, x: x @ w, families.fullrank())
  with pytest.raises(ValueError, match="no closed-form KL to the fullrank"):
    elbo.make_loss_fn(model, likelihoods.gaussian(NOISE), priors.laplace(1.0),
                      10, kl_estimator=elbo.analytic_kl)


LR = 0.01


@pytest.mark.parametrize("method,rank", [("fullrank_vi", 0),
                                         ("lowrank_vi", 2)])
def test_vi_method_optimum_is_the_exact_posterior(method, rank):
  """End to end through the registry factory: Adam on the core's MC ELBO.

  With the "sticking the landing" KL (Roeder et al. 2017) the per-sample
  gradient log p(y, w) - log q(w) is constant in w at q = posterior, so the
  gradient noise vanishes at the optimum and the only error left is the
  optimiser's: a converged constant-step Adam jitters by at most ~lr per
  raw parameter per step (|m / sqrt(v)| <= 1), i.e. |mu - m| <= lr and
  |Sigma - Sigma*| <= 2 lr |Sigma*| (log-scale diagonal, Cholesky entries).
  Low rank with R = D - 1 = 2 represents every 3x3 covariance
  (d^2 = lambda_min), so it must reach the exact posterior too.
  """
  x, y, a, m, _ = _problem()
  exact_cov = np.linalg.inv(a)
  corr = exact_cov[0, 1] / np.sqrt(exact_cov[0, 0] * exact_cov[1, 1])
  assert abs(corr) > 0.3  # a correlated posterior (mean field cannot match)
  cfg = ml_collections.ConfigDict(dict(
      num_epochs=1500, batch_size=30, num_train_samples=4, init_scale=0.1,
      kl="stl", rank=rank, num_predict_samples=10, predict_batch_size=None))
  make = {"fullrank_vi": gaussian_vi.make_fullrank,
          "lowrank_vi": gaussian_vi.make_lowrank}[method]
  family = families.fullrank() if rank == 0 else families.lowrank(rank)
  post = make(_model(), cfg)
  hp = {"learning_rate": LR, "temperature": 1.0}
  state, _ = jax.jit(post.fit)(jax.random.key(0), _data(x, y), hp)
  q = state["posterior"]
  cov = np.asarray(family.covariance(q), np.float64)
  np.testing.assert_allclose(q["loc"]["kernel"][:, 0], m, atol=LR)
  np.testing.assert_allclose(cov, exact_cov, atol=2 * LR * exact_cov.max())
  # The tolerance excludes the mean-field answer (zero off-diagonals).
  assert abs(exact_cov[0, 1]) > 2 * LR * exact_cov.max() * 5
  pred = post.predict(state, _data(x, y)["x"][:4], jax.random.key(1), hp)
  assert pred["mean"].shape == (10, 4)
  # The 10 predictive draws of f(x) = x w, w ~ q, centre on x mu_q: a mean
  # of 10 draws against its own SE is Student-t with 9 degrees of freedom,
  # whose two-sided 1e-3 quantile is ~4.8 (4 points: ~0.4 % false alarms).
  x4 = np.asarray(_data(x, y)["x"][:4], np.float64)
  helpers.assert_mc_close(np.asarray(pred["mean"]),
                          x4 @ np.asarray(q["loc"]["kernel"][:, 0]), k=4.8)


def test_fullrank_score_function_gradient_matches_pathwise_and_exact():
  """The ONE ELBO's gradient in (loc, tril) of a full-rank q, away from the
  optimum: score-function and pathwise means agree with each other and with
  the closed-form gradient within K_SE standard errors (SE of the mean of M
  independent one-sample gradients: std / sqrt(M))."""
  x, y, a, m, log_z = _problem()
  family = families.fullrank()
  q = _random_params(family, jax.random.key(7))
  q = {"loc": {"kernel": q["loc"][:, None]}, "tril": q["tril"]}
  prior, lik = priors.gaussian(PRIOR), likelihoods.gaussian(NOISE)
  params = elbo.init_params(q, prior, lik)
  model = elbo.weight_space(post_lib.point_apply(nn.Dense(1, use_bias=False)),
                            family)
  data = _data(x, y)

  def flat_grad(p):
    g = p["posterior"]
    return jnp.concatenate([g["loc"]["kernel"][:, 0], g["tril"].ravel()])

  def per_sample(estimator, num):
    loss = elbo.make_loss_fn(model, lik, prior, 30, estimator=estimator,
                             kl_estimator=elbo.analytic_kl)
    one = lambda k: flat_grad(jax.grad(
        lambda p: -30.0 * loss(p, {}, data, k)[0])(params))
    keys = jax.random.split(jax.random.key(8), num)
    return np.asarray(jax.jit(jax.vmap(one))(keys), np.float64)

  m_samples = 20000
  gp = per_sample(estimators.pathwise, m_samples)
  gs = per_sample(estimators.score_function, m_samples)
  # Closed form: E_q[log lik] = sum_n log N(y_n; x_n mu, s^2) - tr(X S X^T)/2s^2.
  xj, yj = data["x"], data["y"]

  def exact_elbo(qq):
    mu = qq["loc"]["kernel"][:, 0]
    s = family.covariance(qq)
    r = yj - xj @ mu
    ell = jnp.sum(-0.5 * jnp.log(2 * jnp.pi * NOISE**2) - 0.5 * r * r
                  / NOISE**2) - 0.5 * jnp.trace(xj @ s @ xj.T) / NOISE**2
    return ell - family.kl(prior)({}, qq)

  exact = np.asarray(flat_grad({"posterior": jax.grad(exact_elbo)(q)}))
  se_p = gp.std(0) / np.sqrt(m_samples)
  se_s = gs.std(0) / np.sqrt(m_samples)
  tiny = 1e-4 * np.abs(exact).max()  # float32 rounding of exact zeros
  assert np.all(np.abs(gp.mean(0) - exact) < K_SE * se_p + tiny)
  assert np.all(np.abs(gs.mean(0) - exact) < K_SE * se_s + tiny)
  assert np.all(np.abs(gs.mean(0) - gp.mean(0))
                < K_SE * np.sqrt(se_p**2 + se_s**2) + tiny)
  # Power: the gradient is resolved (several entries > 10 SE of the score
  # function), so agreement is not vacuous; and the upper triangle is unused.
  assert np.sum(np.abs(exact) > 10 * se_s) >= 3
  upper = np.triu(np.ones((3, 3)), 1).ravel().astype(bool)
  np.testing.assert_array_equal(gs.mean(0)[3:][upper], 0.0)
