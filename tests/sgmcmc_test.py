"""Tests for jaxbdl.bayes.sgmcmc: exact stationary law of full-batch SGLD on
a conjugate model, the cyclical schedule, the method end to end.

Oracle: Bayesian linear regression, posterior precision
``A = X^T X / (s^2 T) + I / p^2``. Full-batch Langevin with a constant step
``eps`` (the unadjusted Langevin algorithm) is a Gaussian AR(1) process whose
stationary mean is the posterior mean ``m`` and whose stationary covariance
solves ``S = (I - eps A) S (I - eps A) + 2 eps I``, i.e.
``S = A^-1 (I - eps A / 2)^-1`` (a visible, known discretisation bias).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests import helpers
from jaxbdl.bayes import hmc
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes import priors
from jaxbdl.bayes import sgmcmc

NOISE, PRIOR = 0.5, 1.0
K = 4.0  # |estimate - exact| < K * SE


def _problem():
  x, y, _, _ = helpers.correlated_linear_regression(NOISE, PRIOR)
  return x.astype(np.float32), y.astype(np.float32)


def _model():
  return post_lib.Model(nn.Dense(1, use_bias=False),
                        lambda hp: likelihoods.gaussian(NOISE),
                        lambda hp: priors.gaussian(PRIOR))


@pytest.mark.parametrize("temperature", [1.0, 0.5], ids=["T1", "cold_T0.5"])
def test_full_batch_sgld_has_the_exact_ula_stationary_law(temperature):
  x, y = _problem()
  n = x.shape[0]
  a = x.T @ x / (NOISE**2 * temperature) + np.eye(3) / PRIOR**2
  m = np.linalg.solve(a, x.T @ y / (NOISE**2 * temperature))
  eps = 0.5 / np.linalg.eigvalsh(a).max()          # eps * lambda_max = 0.5
  cov = np.linalg.inv(a) @ np.linalg.inv(np.eye(3) - 0.5 * eps * a)
  hp = {"temperature": temperature}
  data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  model = _model()
  grad_fn = sgmcmc.minibatch_grad_fn(model, hp, data, {}, n)
  sched = sgmcmc.constant_schedule(4000, eps, 0.1, 400)
  step = sgmcmc._sgld_step(grad_fn)
  init = hmc.init_positions(jax.random.key(0), model, hp, data["x"], 4)
  draws = jax.jit(jax.vmap(lambda k, p: sgmcmc.run_chain(
      k, step, p, sched, n, n, 400)))(jax.random.split(jax.random.key(1), 4),
                                      init)
  w = draws["params"]["kernel"][..., 0]                # [C, S, 3]
  ess = np.asarray(hmc.convergence(w)["ess"])
  flat = np.asarray(w.reshape(-1, 3), np.float64)
  mean, var = flat.mean(0), flat.var(0)
  assert np.all(np.abs(mean - m) < K * np.sqrt(var / ess))
  # Var of a Gaussian variance estimate: 2 s^4 / ESS.
  se_var = np.sqrt(2.0 / ess) * np.diag(cov)
  assert np.all(np.abs(var - np.diag(cov)) < K * se_var), (var, np.diag(cov))
  # The bias is real: the exact posterior variance is outside the band on the
  # stiffest direction.
  u = np.linalg.eigh(a)[1][:, -1]
  proj = flat @ u
  exact_stiff = 1.0 / np.linalg.eigvalsh(a).max()
  assert proj.var() > exact_stiff * 1.2


def test_cyclical_schedule_matches_zhang_eq1():
  s = sgmcmc.cyclical_schedule(1000, 0.2, 4, 0.5, 8)
  assert (s.cycle, s.num_steps) == (250, 1000)
  t = jnp.arange(1000, dtype=jnp.float32)
  r = np.mod(np.arange(1000), 250) / 250
  np.testing.assert_allclose(s.step_size(t), 0.1 * (np.cos(np.pi * r) + 1),
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(s.noise(t), (r >= 0.5).astype(np.float32))
  # 2 draws per cycle, thin = 125 // 2 = 62: draws at steps 126..250 of a
  # cycle, all in the sampling stage.
  assert s.thin == 62 and s.burnin == 250 - 2 * 62
  assert s.burnin >= 125
  with pytest.raises(ValueError, match="multiple of num_cycles"):
    sgmcmc.cyclical_schedule(1000, 0.2, 4, 0.5, 6)
  with pytest.raises(ValueError, match="cannot give num_samples=50"):
    sgmcmc.constant_schedule(40, 0.1, 0.5, 50)


@pytest.fixture(scope="module")
def csgld_fit():
  x, y = _problem()
  cfg = ml_collections.ConfigDict(dict(
      num_epochs=300, batch_size=10, num_chains=2, num_samples=8,
      num_cycles=4, exploration=0.5, predict_batch_size=None))
  post = sgmcmc.make_csgld(_model(), cfg)
  hp = {"learning_rate": 0.05, "temperature": 1.0}
  data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  state, hist = jax.jit(post.fit)(jax.random.key(0), data, hp)
  return post, state, hist, hp, (x, y)


def test_csgld_predictive_agrees_with_exact_posterior(csgld_fit):
  post, state, hist, hp, (x, y) = csgld_fit
  x_star = np.array([[1.0, 1.0, 1.0], [2.0, -1.0, 0.5]], np.float32)
  pred = post.predict(state, jnp.asarray(x_star), jax.random.key(1), hp)
  assert pred["mean"].shape == (16, 2) and pred["variance"].shape == (16, 2)
  np.testing.assert_allclose(pred["variance"], NOISE**2, rtol=1e-6)
  a = x.T @ x / NOISE**2 + np.eye(3) / PRIOR**2
  m = np.linalg.solve(a, x.T @ y / NOISE**2)
  sd = np.sqrt(np.einsum("md,de,me->m", x_star, np.linalg.inv(a), x_star))
  # 16 draws (correlated within a cycle; 8 cycles across 2 chains): the mean
  # is within K posterior sds / sqrt(8 independent cycles) of the exact one.
  err = np.abs(np.asarray(pred["mean"]).mean(0) - x_star @ m)
  assert np.all(err < K * sd / np.sqrt(8)), (err, sd)
  assert hist["rhat"].shape == (3,)


def test_bad_config_raises():
  cfg = ml_collections.ConfigDict(dict(num_epochs=1, batch_size=10,
                                       num_chains=0))
  with pytest.raises(ValueError, match="num_chains must be a positive int"):
    sgmcmc.make_sgld(_model(), cfg)
