"""Tests of jaxbdl.bayes.temperature_scaling: the fitted T against scipy and
against a known data-generating temperature; the wrapper over a Posterior."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry
from jaxbdl.bayes import temperature_scaling as ts

K_SE = 4.0  # |estimate - truth| < K_SE * SE, SE from the observed information.
_N, _C = 2000, 5


def _overconfident(t_true, seed=0, n=_N):
  """Logits z reported by the model; labels drawn from softmax(z / t_true)."""
  rng = np.random.default_rng(seed)
  z = (rng.normal(size=(n, _C)) * 3.0).astype(np.float32)
  p = np.exp(z / t_true - (z / t_true).max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  y = np.array([rng.choice(_C, p=pi) for pi in p], np.int32)
  return z, y


def test_fit_matches_scipy_minimize_scalar():
  z, y = _overconfident(2.0)
  t = float(ts.fit_temperature(jnp.asarray(z), jnp.asarray(y)))
  res = optimize.minimize_scalar(
      lambda u: float(ts.scaled_nll(jnp.asarray(z), jnp.asarray(y),
                                    np.exp(u))),
      bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-7})
  # Both minimise the same float32 function; its flatness near the optimum
  # limits agreement to ~sqrt(eps32) in log T.
  assert abs(np.log(t) - res.x) < 1e-3


@pytest.mark.parametrize("t_true", [0.5, 2.0], ids=["underconfident",
                                                    "overconfident"])
def test_recovers_data_generating_temperature(t_true):
  z, y = _overconfident(t_true, seed=1)
  z, y = jnp.asarray(z), jnp.asarray(y)
  t = ts.fit_temperature(z, y)
  # The MLE of log T: SE = 1 / sqrt(N * d^2/du^2 mean NLL) at the optimum.
  curv = jax.grad(jax.grad(lambda u: ts.scaled_nll(z, y, jnp.exp(u))))(
      jnp.log(t))
  se = 1.0 / np.sqrt(_N * float(curv))
  assert abs(float(jnp.log(t)) - np.log(t_true)) < K_SE * se, (float(t), se)


def _logits_posterior():
  """A 'method' whose inputs are its logits: predict = softmax(x)."""
  return post_lib.Posterior(
      "logits", lambda key, data, hp, valid=None: ({}, {"loss": jnp.zeros(1)}),
      lambda state, x, key, hp: {"probs": jax.nn.softmax(x, axis=-1)[None]},
      0.0)


def test_wrap_scales_predictions_and_keeps_accuracy():
  z, y = _overconfident(2.0, seed=2)
  zv, yv = _overconfident(2.0, seed=3, n=500)
  wrapped = ts.wrap(_logits_posterior())
  assert wrapped.name == "logits_ts" and wrapped.valid_fraction == 0.1
  fit = jax.jit(wrapped.fit)
  state, hist = fit(jax.random.key(0), {"x": z, "y": y}, {},
                    {"x": zv, "y": yv})
  assert float(hist["valid_nll_after"]) < float(hist["valid_nll_before"])
  probs = wrapped.predict(state, jnp.asarray(z), jax.random.key(1), {})["probs"]
  assert probs.shape == (1, _N, _C)
  want = jax.nn.softmax(jnp.asarray(z) / state["temperature"], axis=-1)
  np.testing.assert_allclose(probs[0], want, atol=1e-5)
  np.testing.assert_array_equal(np.argmax(probs[0], -1), np.argmax(z, -1))
  assert 1.5 < float(state["temperature"]) < 2.7


def test_map_ts_is_map_with_a_temperature():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(120, 2)).astype(np.float32)
  y = (x[:, 0] + 0.3 * rng.normal(size=120) > 0).astype(np.int32)
  model = post_lib.mlp_model((8,), 2, lambda hp: likelihoods.categorical(2),
                             lambda hp: priors.gaussian(hp["prior_scale"]))
  config = registry.default_config()
  config.num_epochs, config.batch_size = 3, 32
  hp = registry.default_hparams("map", config, {"learning_rate": 1e-2})
  train, valid = {"x": x[:100], "y": y[:100]}, {"x": x[100:], "y": y[100:]}
  preds = {}
  for name in ("map", "map_ts"):
    method = registry.build(name, model, config)
    assert method.name == name
    state, hist = jax.jit(method.fit)(jax.random.key(0), train, hp, valid)
    preds[name] = method.predict(state, x, jax.random.key(1), hp)["probs"][0]
  assert float(hist["valid_nll_after"]) <= float(hist["valid_nll_before"])
  # Same key -> same MAP network; map_ts = softmax(log p_map / T).
  want = jax.nn.softmax(jnp.log(preds["map"]) / state["temperature"], -1)
  np.testing.assert_allclose(preds["map_ts"], want, atol=1e-5)


def test_bad_input_raises():
  wrapped = ts.wrap(_logits_posterior())
  with pytest.raises(ValueError, match="needs validation data"):
    wrapped.fit(jax.random.key(0), {"x": jnp.zeros((4, 3)),
                                    "y": jnp.zeros(4, jnp.int32)}, {}, None)
  regression = post_lib.Posterior(
      "reg", lambda key, data, hp, valid=None: ({}, {}),
      lambda s, x, k, hp: {"mean": x[None, :, 0], "variance": x[None, :, 0]})
  data = {"x": jnp.ones((4, 3)), "y": jnp.zeros(4, jnp.int32)}
  with pytest.raises(ValueError, match="needs a classification predictive"):
    ts.wrap(regression).fit(jax.random.key(0), data, {}, data)
  with pytest.raises(ValueError, match="valid_fraction must be in"):
    ts.wrap(_logits_posterior(), valid_fraction=0.0)
  with pytest.raises(ValueError, match="log_t_min < log_t_max"):
    ts.fit_temperature(jnp.zeros((2, 2)), jnp.zeros(2, jnp.int32),
                       log_t_min=1.0, log_t_max=0.0)
