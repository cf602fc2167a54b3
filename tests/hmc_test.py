"""Tests for jaxbdl.bayes.hmc: NUTS against the exact conjugate posterior.

Oracle: Bayesian linear regression with a non-orthogonal design (correlated
posterior ``N(m, A^-1)``, Bishop 2006 Eq. 3.53-3.54); the predictive at a test
input ``x*`` is ``N(x*^T m, x*^T A^-1 x* + s^2)`` (Eq. 3.58-3.59). Monte Carlo
tolerances come from BlackJAX's ESS of the very draws being averaged.
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

NOISE, PRIOR = 0.5, 1.0
K = 4.0  # |estimate - exact| < K * SE


def _problem():
  x, y, a, m = helpers.correlated_linear_regression(NOISE, PRIOR)
  return x.astype(np.float32), y.astype(np.float32), a, m


@pytest.fixture(scope="module")
def fitted():
  x, y, a, m = _problem()
  model = post_lib.Model(nn.Dense(1, use_bias=False),
                         lambda hp: likelihoods.gaussian(NOISE),
                         lambda hp: priors.gaussian(PRIOR))
  cfg = ml_collections.ConfigDict(dict(
      num_chains=4, num_warmup=300, num_samples=250, thin=2,
      predict_batch_size=None))
  post = hmc.make(model, cfg)
  hp = {"temperature": 1.0}
  state, hist = jax.jit(post.fit)(
      jax.random.key(1), {"x": jnp.asarray(x), "y": jnp.asarray(y)}, hp)
  return post, state, hist, hp, (x, y, a, m)


def test_predictive_mean_and_variance_match_exact_within_ess_error(fitted):
  post, state, hist, hp, (x, y, a, m) = fitted
  x_star = np.array([[1.0, 1.0, 1.0], [2.0, -1.0, 0.5]], np.float32)
  pred = post.predict(state, jnp.asarray(x_star), jax.random.key(2), hp)
  assert pred["mean"].shape == (1000, 2)
  np.testing.assert_allclose(pred["variance"], NOISE**2, rtol=1e-6)
  cov = np.linalg.inv(a)
  assert abs(cov[0, 1]) / np.sqrt(cov[0, 0] * cov[1, 1]) > 0.3  # correlated
  f = pred["mean"].reshape(4, 250, 2)                  # chain-major draws
  mean = np.asarray(f.mean(axis=(0, 1)))
  var = np.asarray(f.var(axis=(0, 1)))
  ess_f = np.asarray(hmc.convergence(f)["ess"])
  sq = (f - f.mean(axis=(0, 1), keepdims=True))**2
  ess_sq = np.asarray(hmc.convergence(sq)["ess"])
  exact_mean = x_star @ m
  exact_var_f = np.einsum("md,de,me->m", x_star, cov, x_star)
  se_mean = np.sqrt(var / ess_f)
  se_var = np.asarray(sq.std(axis=(0, 1))) / np.sqrt(ess_sq)
  assert np.all(np.abs(mean - exact_mean) < K * se_mean), (mean, exact_mean)
  # Mixture predictive variance = Var[f] + noise^2; the noise term is exact.
  assert np.all(np.abs(var - exact_var_f) < K * se_var), (var, exact_var_f)


def test_diagnostics_report_convergence_and_no_divergences(fitted):
  _, _, hist, _, _ = fitted
  assert hist["rhat"].shape == (3,) and hist["ess"].shape == (3,)
  assert float(hist["rhat"].max()) < 1.05
  assert float(hist["ess"].min()) > 100.0
  assert hist["num_divergent"].shape == (4,)
  assert hmc.check_divergences(hist["num_divergent"], 4 * 500, 0.01) == 0
  assert np.all(np.asarray(hist["acceptance_rate"]) > 0.6)


def test_too_few_draws_for_rhat_raises():
  with pytest.raises(ValueError, match="num_samples >= 4"):
    hmc.convergence(jnp.zeros((2, 3, 5)))
  with pytest.raises(ValueError, match="num_samples >= 4"):
    hmc.make(None, ml_collections.ConfigDict(dict(num_samples=3)))
  with pytest.raises(ValueError, match="num_chains >= 2"):
    hmc.check_num_draws(1, 100)


def test_divergences_above_threshold_warn_with_count():
  with pytest.warns(RuntimeWarning, match="NUTS: 7 divergent transitions "
                    "out of 100"):
    assert hmc.check_divergences(jnp.array([3, 4]), 100, 0.01) == 7


def test_nonfinite_initial_log_density_names_the_leaf():
  tree = {"params": {"Dense_0": {"bias": jnp.zeros(2),
                                 "kernel": jnp.array([[1.0, jnp.nan]])}}}
  logp = lambda t: -sum(jnp.sum(l**2) for l in jax.tree.leaves(t))
  with pytest.raises(ValueError, match=r"leaf \['params'\]\['Dense_0'\]"
                     r"\['kernel'\] has non-finite"):
    hmc.check_initial_log_density(logp, tree)
  tree = {"a": jnp.ones(2), "b": jnp.zeros(2)}
  logp = lambda t: jnp.sum(t["a"]) + jnp.sum(jnp.log(t["b"]))
  with pytest.raises(ValueError, match=r"gradient is non-finite at parameter "
                     r"leaf \['b'\]"):
    hmc.check_initial_log_density(logp, tree)


def test_sampling_progress_is_reported_and_changes_no_draw(capsys):
  """With progress on, the NUTS sampling scan prints a progress line with the
  number of draws, and the draws are bitwise those of a run without it."""
  from jaxbdl.training import progress

  def logdensity(w):
    return -0.5 * jnp.sum(w ** 2)

  def run():
    return jax.jit(lambda k, p: hmc.run_nuts(
        k, logdensity, p, num_warmup=20, num_samples=30))(
            jax.random.key(0), jnp.zeros((2, 3)))

  progress.set_enabled(False)
  quiet = run()
  progress.set_enabled(True)
  try:
    loud = run()
  finally:
    progress.set_enabled(None)
  err = capsys.readouterr().err
  assert "NUTS sampling: 30 draws in" in err, err
  np.testing.assert_array_equal(np.asarray(quiet.positions),
                                np.asarray(loud.positions))
