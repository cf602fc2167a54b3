"""Online marginal-likelihood training (Immer et al. 2021, Algorithm 1).

1. Bayesian linear regression (float64): the Laplace evidence is exact and
   its joint stationary point with ``theta = theta_MAP`` is MacKay's evidence
   fixed point (``_mackay`` of ``laplace_marglik_test``, iterated in numpy).
   Tolerance, derived from what "converged" has to mean for a
   hyper-parameter: the evidence itself is a likelihood for ``(log alpha,
   log beta)`` whose Laplace standard deviations are ``sqrt(2 / gamma)`` and
   ``sqrt(2 / (N - gamma))`` (MacKay 1992, Eq. 4.13 and 4.17; ``alpha`` the
   prior precision, ``beta = 1 / sigma^2``, ``gamma`` the effective number of
   parameters); we require the online result within 1% of those standard
   deviations (``log sigma = -log(beta) / 2`` halves the second). For this
   data ``gamma = 3.9``, ``N = 30``: 7.2e-3 in ``log alpha``, 1.4e-3 in
   ``log sigma``; a mistake of the size of the ``gamma`` correction
   (``N`` for ``N - gamma`` in the noise) moves ``log sigma`` by 0.07, fifty
   times the tolerance, and an evidence without the log det term does not
   have this optimum at all.
2. A 1 x 16 tanh MLP on a noisy sinusoid with KFAC: the online run
   (Adam(0.1) on the hyper-parameters) against the same training with the
   hyper-parameters frozen at their initial values (Adam(0.0): the network is
   then the MAP of the initial prior and noise), one vmapped program. The
   log evidence must improve by more than 5 nats, "very strong" evidence on
   Kass & Raftery's (1995) scale (``2 log BF > 10``), so the test fails unless
   the hyper-parameter learning matters.
3. The registry: ``config.marglik = "online"`` through ``laplace_diag`` on a
   linear model (noise scale within 0.02 of the true 0.1: its sampling SE is
   ``0.1 / sqrt(2 N) = 0.005`` at N = 200, so 0.02 is 4 SE) and the parsing
   of ``config.marglik`` values.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests import helpers
from jaxbdl.nn import networks
from jaxbdl.bayes import laplace, likelihoods, posterior, priors, registry
from jaxbdl.bayes.laplace import method as laplace_method
from jaxbdl.bayes.laplace import online
from tests.laplace_marglik_test import _data, _mackay

_NET = nn.Dense(1, use_bias=False)


def _apply(p, x):
  return _NET.apply({"params": p}, x)


def test_linear_regression_reaches_mackay_fixed_point():
  with jax.enable_x64(True):
    x, y = _data(False)
    a, b, m, cov = _mackay(x, y)
    n = len(y)
    gamma = x.shape[1] - a * np.trace(cov)
    tol_log_alpha = 0.01 * np.sqrt(2 / gamma)
    tol_log_sigma = 0.01 * 0.5 * np.sqrt(2 / (n - gamma))
    params = {"kernel": jnp.zeros((x.shape[1], 1))}
    la = laplace.Laplace(_apply, params, "regression")
    res = online.marglik_training(
        la, params, jnp.asarray(x), jnp.asarray(y), jax.random.key(0),
        num_epochs=200, batch_size=n, optimizer=optax.adam(0.1),
        prior_structure="scalar", n_hypersteps=100)
    st = res.laplace
    assert abs(np.log(float(st.prior_precision[0]) / a)) < tol_log_alpha
    assert abs(np.log(float(st.sigma_noise) * np.sqrt(b))) < tol_log_sigma
    # The weights are the posterior mean at those hyper-parameters.
    np.testing.assert_allclose(st.theta, m, atol=1e-2 * np.sqrt(
        np.diag(cov)).min())
    hist = res.history["neg_log_marglik"]
    assert hist.shape == (200,) and np.isfinite(hist).all()


def test_mlp_online_improves_evidence_over_initial_hyperparameters():
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 8, (64, 1)).astype(np.float32)
  y = (np.sin(x[:, 0]) + 0.3 * rng.normal(size=64)).astype(np.float32)
  net = networks.MLP((16, 1), activation="tanh")
  params = net.init(jax.random.key(0), x[:1])["params"]
  la = laplace.Laplace(lambda p, xx: net.apply({"params": p}, xx), params,
                       "regression", hessian_structure="kron")

  def run(lr_hyp):
    return online.marglik_training(
        la, params, jnp.asarray(x), jnp.asarray(y), jax.random.key(0),
        num_epochs=150, batch_size=32, optimizer=optax.adam(3e-2),
        prior_structure="layerwise", n_hypersteps=50,
        hyper_optimizer=optax.adam(lr_hyp), frequency=5)
  res = jax.jit(jax.vmap(run))(jnp.array([0.0, 0.1], jnp.float32))
  evidence = jax.vmap(functools.partial(marglik_of, la))(res.laplace)
  fixed, learned = np.asarray(evidence)
  # Frozen hyper-parameters stay at their initial values.
  np.testing.assert_allclose(res.laplace.prior_precision[0], 1.0)
  np.testing.assert_allclose(res.laplace.sigma_noise[0], 1.0)
  assert np.isfinite([fixed, learned]).all()
  assert learned - fixed > 5.0, (fixed, learned)
  assert 0.2 < float(res.laplace.sigma_noise[1]) < 0.5   # true noise 0.3


def marglik_of(la, state):
  return laplace.marglik.log_marginal_likelihood(la.spec, state)


def test_registry_online_and_marglik_modes():
  x, y = helpers.linear_regression_data()
  model = posterior.mlp_model((), 1, lambda hp: likelihoods.gaussian(),
                              lambda hp: priors.gaussian(hp["prior_scale"]))
  config = registry.default_config()
  config.num_epochs = 60
  config.batch_size = 50
  config.marglik = "online"
  config.laplace_diag.marglik_steps = 20
  method = registry.build("laplace_diag", model, config)
  assert method.valid_fraction == 0.0
  hp = registry.default_hparams("laplace_diag", config,
                                {"learning_rate": 0.05})
  data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  state, hist = method.fit(jax.random.key(0), data, hp)
  assert abs(float(state["laplace"].sigma_noise) - 0.1) < 0.02
  assert np.isfinite(np.nanmin(hist["neg_log_marglik"]))
  pred = method.predict(state, data["x"][:4], jax.random.key(1), hp)
  assert pred["mean"].shape == (1, 4)
  for value, want in (("False", False), (False, False), (True, "posthoc"),
                      ("posthoc", "posthoc"), ("online", "online")):
    assert laplace_method.marglik_mode(value) == want
  with pytest.raises(ValueError, match="config.marglik must be one of"):
    laplace_method.marglik_mode("onlin")


def test_bad_input():
  params = {"kernel": jnp.zeros((2, 1))}
  la = laplace.Laplace(_apply, params, "regression", hessian_structure="kron")
  x, y = jnp.ones((4, 2)), jnp.ones((4,))
  run = functools.partial(online.marglik_training, la, params, x, y,
                          jax.random.key(0), num_epochs=2, batch_size=2)
  with pytest.raises(ValueError, match="frequency must be an int >= 1"):
    run(frequency=0)
  with pytest.raises(ValueError, match="prior_precision must be > 0"):
    run(prior_precision=-1.0)
  with pytest.raises(ValueError, match="batch_size 8 exceeds the 4"):
    online.marglik_training(la, params, x, y, jax.random.key(0),
                            num_epochs=2, batch_size=8)
  with pytest.raises(ValueError, match="supports prior_structure"):
    run(prior_structure="diagonal")
  cls = laplace.Laplace(_apply, params, "binary")
  with pytest.raises(ValueError, match="fit_noise=True needs"):
    online.marglik_training(cls, params, x, y, jax.random.key(0),
                            num_epochs=2, batch_size=2, fit_noise=True)
