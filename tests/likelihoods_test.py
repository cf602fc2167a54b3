"""Tests for jaxbdl.likelihoods against scipy / optax oracles (float64 numpy)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special, stats

from jaxbdl import likelihoods

# Deterministic float32 maths: relative error of a few ulps per operation on
# values of order |log p| <~ 20; 64 ulps covers the log/exp/softplus chain.
RTOL = 64 * float(np.finfo(np.float32).eps)
ATOL = RTOL

_rng = np.random.default_rng(0)
Y2 = _rng.normal(size=(7, 3)).astype(np.float32)
M2 = _rng.normal(size=(7, 3)).astype(np.float32)
Y1, M1 = Y2[:, 0], M2[:, 0]


@pytest.mark.parametrize("y,mean", [(Y1, M1), (Y2, M2)], ids=["N", "NxK"])
@pytest.mark.parametrize("tau", [0.25, 4.0])
def test_gaussian_matches_scipy(y, mean, tau):
  got = likelihoods.gaussian(y, mean, tau)
  expected = stats.norm.logpdf(np.float64(y), np.float64(mean), 1 / np.sqrt(tau))
  expected = expected if expected.ndim == 1 else expected.sum(-1)
  assert got.shape == (7,)
  np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
  # Same model in scale form: sd = 1 / sqrt(tau).
  np.testing.assert_allclose(likelihoods.gaussian_scale(y, mean, 1 / np.sqrt(tau)),
                             got, rtol=RTOL, atol=ATOL)


def test_gaussian_scale_per_output_and_per_example():
  scale_k = np.array([0.5, 1.0, 2.0], np.float32)
  expected = stats.norm.logpdf(np.float64(Y2), np.float64(M2), scale_k).sum(-1)
  np.testing.assert_allclose(likelihoods.gaussian_scale(Y2, M2, scale_k), expected,
                             rtol=RTOL, atol=ATOL)
  scale_nk = np.exp(_rng.normal(size=(7, 3))).astype(np.float32)
  expected = stats.norm.logpdf(np.float64(Y2), np.float64(M2), scale_nk).sum(-1)
  np.testing.assert_allclose(likelihoods.gaussian_scale(Y2, M2, scale_nk), expected,
                             rtol=RTOL, atol=ATOL)


def test_n_versus_n1_accepted():
  np.testing.assert_allclose(likelihoods.gaussian(Y1, M1[:, None], 2.0),
                             likelihoods.gaussian(Y1, M1, 2.0), rtol=RTOL)
  np.testing.assert_allclose(likelihoods.bernoulli(Y1[:, None] > 0, M1),
                             likelihoods.bernoulli(Y1 > 0, M1), rtol=RTOL)


@pytest.mark.parametrize("y", [Y1, Y2], ids=["N", "NxK"])
def test_heteroscedastic_matches_scipy(y):
  k = 1 if y.ndim == 1 else y.shape[1]
  outputs = _rng.normal(size=(7, 2 * k)).astype(np.float32)
  mean, raw = np.float64(outputs[:, :k]), np.float64(outputs[:, k:])
  scale = np.logaddexp(0.0, raw) + 1e-3
  yy = np.float64(y).reshape(7, k)
  expected = stats.norm.logpdf(yy, mean, scale).sum(-1)
  np.testing.assert_allclose(likelihoods.heteroscedastic_gaussian(y, outputs),
                             expected, rtol=RTOL, atol=ATOL)


def test_categorical_is_minus_softmax_cross_entropy():
  logits = jnp.asarray(_rng.normal(size=(7, 4)) * 3, jnp.float32)
  labels = jnp.asarray(_rng.integers(0, 4, size=7))
  got = likelihoods.categorical(labels, logits)
  np.testing.assert_allclose(
      got, -optax.softmax_cross_entropy_with_integer_labels(logits, labels),
      rtol=RTOL, atol=ATOL)
  lf = np.float64(logits)
  expected = lf[np.arange(7), labels] - special.logsumexp(lf, axis=-1)
  np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_bernoulli_matches_float64_and_is_stable():
  logits = np.array([-3.0, -0.5, 0.0, 0.5, 3.0, 100.0, -100.0], np.float32)
  labels = np.array([1, 0, 1, 1, 0, 0, 0])
  got = likelihoods.bernoulli(labels, logits)
  lf = np.float64(logits)  # log sigmoid(l) = -log(1 + exp(-l)), in float64
  expected = np.where(labels == 1, -np.logaddexp(0.0, -lf), -np.logaddexp(0.0, lf))
  np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(
      got, -optax.sigmoid_binary_cross_entropy(logits, labels.astype(np.float32)),
      rtol=RTOL, atol=ATOL)
  assert np.isfinite(np.asarray(got)).all()  # -100 for the confident mistake


def test_likelihoods_jit_and_grad():
  f = jax.jit(lambda m, s: jnp.sum(likelihoods.gaussian_scale(Y2, m, s)))
  g = jax.grad(f, argnums=(0, 1))(jnp.asarray(M2), jnp.float32(0.5))
  # d/dm log N = (y - m) / s^2; d/ds = sum((y-m)^2 / s^3 - 1 / s).
  np.testing.assert_allclose(g[0], (Y2 - M2) / 0.25, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(g[1], np.sum((Y2 - M2) ** 2 / 0.125 - 2.0),
                             rtol=1e-5)


@pytest.mark.parametrize("call,word", [
    (lambda: likelihoods.gaussian(Y1, M1, 0.0), "tau"),
    (lambda: likelihoods.gaussian_scale(Y1, M1, -1.0), "scale"),
    (lambda: likelihoods.gaussian(Y2, M1, 1.0), "targets"),
    (lambda: likelihoods.gaussian_scale(Y2, M2, np.ones(4, np.float32)), "broadcast"),
    (lambda: likelihoods.heteroscedastic_gaussian(Y2, M2), r"\[N, 2K\]"),
    (lambda: likelihoods.categorical(np.zeros(7, np.int32), M1), "logits"),
    (lambda: likelihoods.categorical(Y1, M2), "integers"),
], ids=["tau", "scale", "shape", "scale-shape", "hetero-shape", "logits-rank",
        "label-dtype"])
def test_invalid_inputs_raise(call, word):
  with pytest.raises(ValueError, match=word):
    call()


def test_check_finite():
  np.testing.assert_array_equal(likelihoods.check_finite("y", Y1), Y1)
  bad = Y2.copy()
  bad[2, 1] = np.nan
  bad[4, 0] = np.inf
  with pytest.raises(ValueError, match=r"y_train has 2 non-finite.*\(2, 1\)"):
    likelihoods.check_finite("y_train", bad)
