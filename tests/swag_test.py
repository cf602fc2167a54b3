"""Tests for jaxbdl.bayes.swag: moments vs a numpy transcription of Maddox et
al. (2019) Alg. 1, the sampling covariance, the method end to end."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes import priors
from jaxbdl.bayes import swag


def _snapshots():
  rng = np.random.default_rng(0)
  return rng.normal(size=(8, 5)).cumsum(0).astype(np.float32)


def test_moments_match_numpy_transcription():
  w = _snapshots()
  m = swag.moments(jnp.asarray(w), 4)
  np.testing.assert_allclose(m.mean, w.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m.sq_mean, (w**2).mean(0), rtol=1e-5)
  dev = [w[i] - w[:i + 1].mean(0) for i in range(4, 8)]
  np.testing.assert_allclose(m.deviations, np.stack(dev), rtol=1e-5,
                             atol=1e-5)
  cov = np.diag(np.maximum(w.var(0), 0)) / 2 + np.stack(dev).T @ np.stack(
      dev) / (2 * 3)
  np.testing.assert_allclose(swag.covariance(m), cov, rtol=1e-4, atol=1e-5)


def test_samples_have_the_swag_covariance_within_standard_error():
  m = swag.moments(jnp.asarray(_snapshots()), 4)
  n = 20000
  s = np.asarray(swag.sample(m, jax.random.key(0), n), np.float64)
  cov = np.asarray(swag.covariance(m), np.float64)
  se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / n)
  assert np.all(np.abs(np.cov(s.T) - cov) < 5 * se)        # k = 5
  se_mean = np.sqrt(np.diag(cov) / n)
  assert np.all(np.abs(s.mean(0) - np.asarray(m.mean)) < 5 * se_mean)


def test_bad_rank_raises():
  with pytest.raises(ValueError, match=r"rank must be in \[2, num_snapshots"):
    swag.moments(jnp.zeros((3, 2)), 4)
  cfg = ml_collections.ConfigDict(dict(num_epochs=1, batch_size=4,
                                       num_snapshots=5, rank=1))
  with pytest.raises(ValueError, match=r"rank must be in \[2, num_snapshots"):
    swag.make(None, cfg)


def test_swag_fit_centres_on_the_posterior_mode():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 2)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0]) + 0.3 * rng.normal(size=40)).astype(
      np.float32)
  model = post_lib.Model(nn.Dense(1, use_bias=False),
                         lambda hp: likelihoods.gaussian(0.3),
                         lambda hp: priors.gaussian(1.0))
  cfg = ml_collections.ConfigDict(dict(
      num_epochs=200, batch_size=10, num_snapshots=10, rank=5,
      swa_learning_rate=1e-2, swa_momentum=0.0, num_predict_samples=50,
      predict_batch_size=None))
  post = swag.make(model, cfg)
  hp = {"learning_rate": 0.05, "temperature": 1.0}
  state, _ = jax.jit(post.fit)(jax.random.key(0),
                               {"x": jnp.asarray(x), "y": jnp.asarray(y)}, hp)
  a = x.T @ x / 0.09 + np.eye(2)
  mode = np.linalg.solve(a, x.T @ y / 0.09)
  sd = np.sqrt(np.diag(np.linalg.inv(a)))
  # SGD with lr 1e-2 per datum fluctuates around the mode; the SWA mean of
  # 10 snapshots is within a few posterior sds of it.
  err = np.abs(np.asarray(state["moments"].mean) - mode)
  assert np.all(err < 3 * sd), (err, sd)
  pred = post.predict(state, jnp.asarray(x[:3]), jax.random.key(1), hp)
  assert pred["mean"].shape == (50, 3)
  assert float(jnp.std(pred["mean"], axis=0).min()) > 0.0
