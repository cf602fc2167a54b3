"""Tests of jaxbdl.bayes.likelihoods against scipy / optax / numpy oracles."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special, stats

from jaxbdl.bayes import likelihoods

# Deterministic float32 maths: a few ulps per operation on |log p| <~ 20;
# 64 ulps covers the log / exp / softplus chain.
RTOL = 64 * float(np.finfo(np.float32).eps)
ATOL = RTOL

_rng = np.random.default_rng(0)
Y = _rng.normal(size=(7,)).astype(np.float32)
OUT2 = _rng.normal(size=(7, 2)).astype(np.float32)
LOGITS = _rng.normal(size=(7, 4)).astype(np.float32) * 3
LABELS = _rng.integers(0, 4, size=7).astype(np.int32)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_fixed_gaussian_matches_scipy(scale):
  lik = likelihoods.gaussian(scale)
  got = lik.log_prob({}, Y, OUT2[:, :1])
  np.testing.assert_allclose(got, stats.norm.logpdf(Y, OUT2[:, 0], scale),
                             rtol=RTOL, atol=ATOL)
  pred = lik.predictive({}, OUT2[None, :, :1])
  np.testing.assert_allclose(pred["variance"], scale ** 2, rtol=RTOL)
  np.testing.assert_array_equal(pred["mean"], OUT2[None, :, 0])
  assert lik.num_outputs == 1 and not lik.classification


def test_traced_noise_scale_under_vmap():
  f = jax.jit(jax.vmap(lambda s: likelihoods.gaussian(s).log_prob(
      {}, Y, OUT2[:, :1])))
  got = f(jnp.array([0.5, 2.0]))
  for i, s in enumerate((0.5, 2.0)):
    np.testing.assert_allclose(got[i], stats.norm.logpdf(Y, OUT2[:, 0], s),
                               rtol=RTOL, atol=ATOL)


def test_learned_gaussian_starts_at_init_scale_and_gets_gradient():
  lik = likelihoods.gaussian(None, init_scale=0.5, min_scale=1e-3)
  lp = lik.init()
  pred = lik.predictive(lp, jnp.zeros((1, 3, 1)))
  np.testing.assert_allclose(pred["variance"], 0.25, rtol=1e-5)
  y, out = jnp.zeros((4,)), jnp.full((4, 1), 2.0)
  g = jax.grad(lambda p: jnp.sum(lik.log_prob(p, y, out)))(lp)
  assert float(g["raw_scale"]) > 0  # residuals 2 >> 0.5: widen the noise


def test_heteroscedastic_matches_scipy():
  lik = likelihoods.heteroscedastic_gaussian(min_scale=1e-3)
  scale = np.log1p(np.exp(np.float64(OUT2[:, 1]))) + 1e-3
  np.testing.assert_allclose(lik.log_prob({}, Y, OUT2),
                             stats.norm.logpdf(Y, OUT2[:, 0], scale),
                             rtol=RTOL, atol=ATOL)
  pred = lik.predictive({}, OUT2)
  np.testing.assert_allclose(pred["variance"], scale ** 2, rtol=1e-5)


def test_categorical_is_minus_softmax_cross_entropy():
  lik = likelihoods.categorical(4)
  got = lik.log_prob({}, LABELS, LOGITS)
  expected = -optax.softmax_cross_entropy_with_integer_labels(LOGITS, LABELS)
  np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
  probs = lik.predictive({}, LOGITS[None])["probs"]
  np.testing.assert_allclose(probs[0], special.softmax(np.float64(LOGITS), -1),
                             rtol=1e-5)
  assert lik.classification and lik.num_outputs == 4


def test_bernoulli_matches_float64_and_is_stable():
  lik = likelihoods.bernoulli()
  logits = np.array([-30.0, -2.0, 0.0, 3.0, 40.0], np.float32)
  y = np.array([1, 0, 1, 1, 0], np.int32)
  got = lik.log_prob({}, y, logits[:, None])
  l64 = np.float64(logits)
  expected = y * -np.logaddexp(0, -l64) + (1 - y) * -np.logaddexp(0, l64)
  np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
  probs = lik.predictive({}, logits[None, :, None])["probs"][0]
  np.testing.assert_allclose(probs[:, 1], special.expit(l64), rtol=1e-6)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_mixture_log_prob_and_summary_match_numpy():
  means = _rng.normal(size=(5, 7))
  variances = np.exp(_rng.normal(size=(5, 7)))
  pred = {"mean": jnp.asarray(means, jnp.float32),
          "variance": jnp.asarray(variances, jnp.float32)}
  comp = stats.norm.logpdf(Y[None], means, np.sqrt(variances))
  expected = special.logsumexp(comp, 0) - np.log(5)
  np.testing.assert_allclose(likelihoods.mixture_log_prob(pred, Y), expected,
                             rtol=1e-5, atol=1e-5)
  summ = likelihoods.mixture_summary(pred)
  np.testing.assert_allclose(summ["mean"], means.mean(0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(summ["variance"],
                             variances.mean(0) + means.var(0), rtol=1e-5)
  probs = special.softmax(_rng.normal(size=(3, 7, 4)), -1)
  predc = {"probs": jnp.asarray(probs, jnp.float32)}
  np.testing.assert_allclose(
      likelihoods.mixture_log_prob(predc, LABELS),
      np.log(probs.mean(0)[np.arange(7), LABELS]), rtol=1e-5)


@pytest.mark.parametrize("call,match", [
    (lambda: likelihoods.gaussian(-1.0), "noise_scale must be a positive"),
    (lambda: likelihoods.gaussian(None, init_scale=1e-4), "init_scale >"),
    (lambda: likelihoods.categorical(1), "num_classes must be an int >= 2"),
    (lambda: likelihoods.heteroscedastic_gaussian(-0.1), "min_scale"),
    (lambda: likelihoods.gaussian(1.0).log_prob({}, Y, OUT2),
     r"outputs \[N, 1\]"),
    (lambda: likelihoods.categorical(4).log_prob({}, LABELS, LOGITS[:, :3]),
     r"outputs must be \[N, 4\]"),
    (lambda: likelihoods.categorical(4).log_prob({}, Y, LOGITS),
     "labels must be integers"),
], ids=["neg_scale", "init_below_floor", "one_class", "neg_floor",
        "gaussian_shape", "categorical_classes", "float_labels"])
def test_invalid_inputs_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()
