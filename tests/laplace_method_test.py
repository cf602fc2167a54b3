"""The Laplace registry methods through the core's Posterior interface.

Regression: a linear model on ``y = x w + 0.1 eps`` (N = 200) through
``registry.build("laplace_full")``, ``jax.jit(jax.vmap(fit))`` over two
keys (what the UCI harness does). The GLM predictive mean is the MAP output
(exact, float32 tolerance) and the evidence-fitted noise scale is within 20%
of the true 0.1 (its sampling SE is ``0.1 / sqrt(2 N) = 0.005``, i.e. 5%).
Classification: ``laplace_kfac`` with a categorical likelihood gives
probabilities ``[1, M, C]`` that sum to one, and ``laplace_last_layer``
rejects a heteroscedastic likelihood by name.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import helpers
from jaxbdl.bayes import likelihoods, posterior, priors, registry


def _config(**kw):
  c = registry.default_config()
  c.num_epochs = 60
  c.batch_size = 50
  for name in ("laplace_full", "laplace_kfac", "laplace_last_layer"):
    c[name].valid_fraction = 0.0
    c[name].patience = 0
    c[name].marglik_steps = 50
  for k, v in kw.items():
    c[k] = v
  return c


def test_laplace_full_regression_vmapped_over_keys():
  x, y = helpers.linear_regression_data()
  model = posterior.mlp_model((), 1, lambda hp: likelihoods.gaussian(),
                              lambda hp: priors.gaussian(hp["prior_scale"]))
  config = _config()
  method = registry.build("laplace_full", model, config)
  hp = registry.default_hparams("laplace_full", config,
                                {"learning_rate": 0.05})
  data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  keys = jax.random.split(jax.random.key(0), 2)
  state, hist = jax.jit(jax.vmap(lambda k: method.fit(k, data, hp)))(keys)
  sigma = np.asarray(state["laplace"].sigma_noise)
  assert sigma.shape == (2,)
  assert np.all(np.abs(sigma - 0.1) < 0.02), sigma
  one = jax.tree.map(lambda a: a[0], state)
  pred = method.predict(one, data["x"][:5], jax.random.key(1), hp)
  assert pred["mean"].shape == (1, 5) and pred["variance"].shape == (1, 5)
  want = model.module.apply({"params": one["map"]["net"]}, data["x"][:5])
  np.testing.assert_allclose(pred["mean"][0], want[:, 0], rtol=1e-5,
                             atol=1e-5)
  assert np.all(np.asarray(pred["variance"]) > sigma[0] ** 2)
  assert np.isfinite(np.asarray(hist["neg_log_marglik"])).all()


def test_laplace_kfac_classification_and_bad_likelihood():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(60, 2)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1).astype(np.int32)
  model = posterior.mlp_model((8,), 3, lambda hp: likelihoods.categorical(3),
                              lambda hp: priors.gaussian(hp["prior_scale"]),
                              activation="tanh")
  config = _config()
  method = registry.build("laplace_kfac", model, config)
  hp = registry.default_hparams("laplace_kfac", config,
                                {"learning_rate": 0.05})
  data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  state, _ = method.fit(jax.random.key(0), data, hp)
  probs = method.predict(state, data["x"][:7], jax.random.key(1), hp)["probs"]
  assert probs.shape == (1, 7, 3)
  np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, rtol=1e-5)
  hetero = posterior.mlp_model((), 2,
                               lambda hp: likelihoods.heteroscedastic_gaussian(),
                               lambda hp: priors.gaussian(1.0))
  bad = registry.build("laplace_last_layer", hetero, config)
  with pytest.raises(ValueError, match="homoscedastic Gaussian regression"):
    bad.fit(jax.random.key(0), {"x": jnp.asarray(x),
                                "y": jnp.asarray(x[:, 0])}, hp)
