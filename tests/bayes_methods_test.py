"""Tests of the core's method modules (jaxbdl.bayes.map_estimate, mc_dropout,
ensembles, posterior) and the registry: oracles are direct computations of
the same quantities and single-run fits."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import mc_dropout
from jaxbdl.bayes import posterior
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry

_F32 = 1e-6


@pytest.mark.parametrize("tau,l,p,n", [(1.0, 1.0, 0.1, 100),
                                       (25.0, 0.1, 0.5, 1000),
                                       (0.3, 3.0, 0.0, 7)])
def test_weight_decay_precision_relation(tau, l, p, n):
  lam = mc_dropout.weight_decay_from_precision(tau, l, p, n)
  assert lam == pytest.approx((1 - p) * l**2 / (2 * n * tau), rel=1e-12)
  assert mc_dropout.precision_from_weight_decay(lam, l, p, n) == pytest.approx(
      tau, rel=1e-12)
  # Gal & Ghahramani's example: p = 0.5, l = 1e-2, N = 10, tau = 1.
  assert mc_dropout.weight_decay_from_precision(1.0, 1e-2, 0.5, 10) == (
      pytest.approx(2.5e-6))


@pytest.mark.parametrize("bad,match", [
    (dict(tau=0.0), "tau must be a positive"),
    (dict(dropout_rate=1.0), r"dropout_rate must be in \[0, 1\), got 1.0"),
    (dict(num_data=0), "num_data must be a positive")])
def test_relation_rejects_bad_values(bad, match):
  args = dict(tau=1.0, length_scale=1.0, dropout_rate=0.1, num_data=10)
  args.update(bad)
  with pytest.raises(ValueError, match=match):
    mc_dropout.weight_decay_from_precision(**args)


def _model(noise=0.5, hidden=(16,)):
  return posterior.mlp_model(hidden, 1, lambda hp: likelihoods.gaussian(noise),
                             lambda hp: priors.gaussian(hp["prior_scale"]))


def _config(**kw):
  c = registry.default_config()
  c.num_epochs, c.batch_size, c.num_predict_samples = 2, 8, 50
  c.map.valid_fraction = 0.0
  for k, v in kw.items():
    c[k] = v
  return c


def test_mc_dropout_predictive_is_the_mixture_of_passes():
  model = _model()
  c = _config()
  method = registry.build("mc_dropout", model, c)
  hp = registry.default_hparams("mc_dropout", c, {"dropout_rate": 0.3})
  x = jnp.linspace(0.5, 1.5, 5)[:, None]
  net = model.module.init(jax.random.key(0), x)["params"]
  state = {"net": net, "likelihood": {}, "prior": {}}
  # Concrete hp (not jitted): the module's own nn.Dropout path, as below.
  pred = method.predict(state, x, jax.random.key(1), hp)
  assert pred["mean"].shape == (50, 5)
  assert float(jnp.std(pred["mean"], axis=0).min()) > 0  # dropout is on
  # The same passes by hand: pass t uses dropout key fold_in(key, t).
  m = model.module.clone(dropout_rate=0.3)
  direct = np.stack([np.asarray(m.apply(
      {"params": net}, x, train=True,
      rngs={"dropout": jax.random.fold_in(jax.random.key(1), t)}))[:, 0]
                     for t in range(50)])
  np.testing.assert_allclose(pred["mean"], direct, rtol=1e-5, atol=_F32)
  y = np.linspace(0, 1, 5)
  tau = 4.0  # noise 0.5
  ll = special.logsumexp(-0.5 * math.log(2 * math.pi / tau)
                         - 0.5 * tau * (y - direct)**2, axis=0) - math.log(50)
  np.testing.assert_allclose(
      likelihoods.mixture_log_prob(pred, jnp.asarray(y, jnp.float32)), ll,
      rtol=1e-4)


@pytest.mark.parametrize("chunk", [1, 3, None])
def test_predict_chunked_over_inputs_equals_one_call(chunk):
  # Weight-space VI draws one W per pass for every input, so chunking the
  # inputs must not change a single number. (MC dropout's masks are per
  # example, so there chunking changes the draws, not the distribution.)
  model = _model()
  method = registry.build("mfvi", model, _config(predict_batch_size=chunk))
  full = registry.build("mfvi", model, _config(predict_batch_size=None))
  hp = registry.default_hparams("mfvi", _config())
  x = jnp.linspace(-1.0, 1.0, 7)[:, None]
  state, _ = method.fit(jax.random.key(0), {"x": x, "y": x[:, 0]}, hp, None)
  a = method.predict(state, x, jax.random.key(1), hp)
  b = full.predict(state, x, jax.random.key(1), hp)
  assert a["mean"].shape == (50, 7)
  np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-5, atol=_F32)


def test_ensemble_members_equal_single_fits():
  model = _model(hidden=(4,))
  c = _config()
  c.ensemble.num_members = 3
  ens = registry.build("ensemble", model, c)
  single = registry.build("map", model, c)
  hp = registry.default_hparams("ensemble", c)
  x = jnp.linspace(-1, 1, 16)[:, None]
  data = {"x": x, "y": 2.0 * x[:, 0]}
  key = jax.random.key(7)
  states, _ = jax.jit(ens.fit)(key, data, hp, None)
  for m in (0, 2):
    one, _ = jax.jit(single.fit)(jax.random.fold_in(key, m), data, hp, None)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[m], b, rtol=1e-5,
                                                         atol=1e-6),
                 states, one)
  w = np.asarray(states["net"]["Dense_0"]["kernel"])
  assert np.std(w, axis=0).max() > 0  # members differ
  pred = ens.predict(states, x, key, hp)
  assert pred["mean"].shape == (3, 16)


def test_registry_config_and_hparams():
  c = registry.default_config()
  c.learning_rate = 0.02
  c.mfvi.learning_rate = 0.005
  mc = registry.method_config("mfvi", c)
  assert mc.learning_rate == 0.005 and mc.num_epochs == c.num_epochs
  hp = registry.default_hparams("mfvi", c, {"prior_scale": 3.0})
  assert hp["learning_rate"] == 0.005 and hp["prior_scale"] == 3.0
  assert registry.default_hparams("map", c)["learning_rate"] == 0.02
  with pytest.raises(ValueError, match="'dropout_rate' is not a tunable.*map"):
    registry.default_hparams("map", c, {"dropout_rate": 0.1})
  assert set(registry.TUNABLE) == set(registry.METHODS)
