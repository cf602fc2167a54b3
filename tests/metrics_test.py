"""Tests for jaxbdl.evaluation.metrics against direct numpy/scipy computations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

from jaxbdl.evaluation import metrics
from tests.helpers import tol

# float32 arithmetic on O(1) numbers, sums of <= 16 terms: 16 ulps.
_TOL = tol(np.float32, 16)


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_rmse_and_original_units():
  y = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
  m = np.array([1.5, 2.0, 2.0, 4.0], np.float32)
  expected = np.sqrt(np.mean((y - m) ** 2))  # sqrt(1.25 / 4)
  np.testing.assert_allclose(metrics.rmse(y, m), expected, **_TOL)
  np.testing.assert_allclose(metrics.rmse_original_units(y, m, 3.0),
                             3.0 * expected, **_TOL)


def test_predictive_ll_single_sample_is_gaussian_log_density():
  rng = _rng(1)
  y = rng.normal(size=7).astype(np.float32)
  m = rng.normal(size=(1, 7)).astype(np.float32)
  v = rng.uniform(0.2, 2.0, size=(1, 7)).astype(np.float32)
  ll = metrics.gaussian_predictive_log_likelihood(y, m, v)
  assert ll.shape == (7,)
  expected = stats.norm.logpdf(y, m[0], np.sqrt(v[0]))
  np.testing.assert_allclose(ll, expected, **_TOL)


def test_predictive_ll_two_samples_by_hand():
  # y = 0; components N(0, 1) and N(1, 4): p = 0.5 (phi(0) + phi(-1/2) / 2).
  y = np.array([0.0], np.float32)
  m = np.array([[0.0], [1.0]], np.float32)
  v = np.array([[1.0], [4.0]], np.float32)
  p = 0.5 * (1 / np.sqrt(2 * np.pi) + np.exp(-0.125) / np.sqrt(8 * np.pi))
  np.testing.assert_allclose(
      metrics.gaussian_predictive_log_likelihood(y, m, v), [np.log(p)], **_TOL)


@pytest.mark.parametrize("variance_shape", ["full", "scalar", "per_sample"])
def test_predictive_ll_matches_scipy_logsumexp(variance_shape):
  rng = _rng(2)
  s, n = 5, 6
  y = rng.normal(size=n).astype(np.float32)
  m = rng.normal(size=(s, n)).astype(np.float32)
  v = {"full": rng.uniform(0.1, 1.0, size=(s, n)),
       "scalar": np.array(0.3),
       "per_sample": rng.uniform(0.1, 1.0, size=(s, 1))}[variance_shape]
  v = v.astype(np.float32)
  ll = metrics.gaussian_predictive_log_likelihood(y, m, v)
  vf = np.broadcast_to(v, (s, n))
  expected = special.logsumexp(
      stats.norm.logpdf(y[None], m, np.sqrt(vf)), axis=0) - np.log(s)
  np.testing.assert_allclose(ll, expected, **_TOL)


def test_mixture_mean_variance():
  rng = _rng(3)
  m = rng.normal(size=(4, 3)).astype(np.float32)
  v = rng.uniform(0.1, 1.0, size=(4, 3)).astype(np.float32)
  mean, var = metrics.mixture_mean_variance(m, v)
  # Law of total variance: E[v] + E[m^2] - E[m]^2.
  np.testing.assert_allclose(mean, m.mean(0), **_TOL)
  np.testing.assert_allclose(var, v.mean(0) + (m ** 2).mean(0) - m.mean(0) ** 2,
                             **_TOL)
  _, var_scalar = metrics.mixture_mean_variance(m, 0.5)
  np.testing.assert_allclose(var_scalar, 0.5 + m.var(0), **_TOL)


def test_denormalise_log_likelihood_is_change_of_variables():
  # log N(y; a + b mu, b^2 s^2) = log N((y - a)/b; mu, s^2) - log b.
  y_raw, a, b, mu, s2 = 7.0, 2.0, 3.0, 1.2, 0.5
  ll_std = metrics.gaussian_predictive_log_likelihood(
      np.array([(y_raw - a) / b], np.float32), np.array([[mu]], np.float32), s2)
  expected = stats.norm.logpdf(y_raw, a + b * mu, b * np.sqrt(s2))
  np.testing.assert_allclose(metrics.denormalise_log_likelihood(ll_std, b),
                             [expected], **_TOL)


def test_classification_metrics():
  labels = np.array([0, 1, 2, 1])
  probs = np.array([[0.7, 0.2, 0.1],
                    [0.1, 0.6, 0.3],
                    [0.5, 0.3, 0.2],
                    [0.2, 0.2, 0.6]], np.float32)
  np.testing.assert_allclose(metrics.accuracy(labels, probs), 0.5)
  np.testing.assert_allclose(metrics.accuracy(labels, np.log(probs)), 0.5)
  expected = -np.mean(np.log([0.7, 0.6, 0.2, 0.2]))
  np.testing.assert_allclose(metrics.nll(labels, probs), expected, **_TOL)
  # Zero probability on the true class is clipped at the dtype's smallest
  # normal number: -log(tiny) (float32: 87.34), large but finite.
  np.testing.assert_allclose(
      metrics.nll(np.array([1]), np.array([[1.0, 0.0]], np.float32)),
      -np.log(np.finfo(np.float32).tiny), **_TOL)


def test_predictive_probs_from_samples():
  rng = _rng(4)
  logits = rng.normal(size=(3, 5, 4)).astype(np.float32)
  p = metrics.predictive_probs_from_samples(logits)
  expected = special.softmax(logits, axis=-1).mean(0)
  np.testing.assert_allclose(p, expected, **_TOL)
  np.testing.assert_allclose(p.sum(-1), 1.0, **_TOL)


def test_expected_calibration_error_hand_built():
  # 5 examples, 10 bins. Confidences 0.95, 0.92 (bin (0.9, 1]: 1 right,
  # 1 wrong), 0.65 (bin (0.6, 0.7]: right), 0.55, 0.52 (bin (0.5, 0.6]:
  # both wrong).
  probs = np.array([[0.95, 0.05],
                    [0.92, 0.08],
                    [0.35, 0.65],
                    [0.55, 0.45],
                    [0.48, 0.52]], np.float32)
  labels = np.array([0, 1, 1, 1, 0])
  # bin 0.9: |1/2 - 0.935| * 2/5; bin 0.6: |1 - 0.65| * 1/5;
  # bin 0.5: |0 - 0.535| * 2/5.
  expected = (0.435 * 2 + 0.35 + 0.535 * 2) / 5
  np.testing.assert_allclose(
      metrics.expected_calibration_error(labels, probs, num_bins=10),
      expected, **_TOL)
  # With one bin, ECE = |accuracy - mean confidence|.
  np.testing.assert_allclose(
      metrics.expected_calibration_error(labels, probs, num_bins=1),
      abs(2 / 5 - probs.max(1).mean()), **_TOL)


def test_expected_calibration_error_perfectly_calibrated_is_zero():
  probs = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  assert float(metrics.expected_calibration_error(
      np.array([0, 1]), probs)) == 0.0


def test_mean_and_se():
  v = np.array([1.0, 2.0, 4.0, 7.0], np.float32)
  mean, se = metrics.mean_and_se(v)
  np.testing.assert_allclose(mean, 3.5, **_TOL)
  np.testing.assert_allclose(se, np.std(v, ddof=0) / 2.0, **_TOL)


def test_metrics_jit():
  y = jnp.zeros(3)
  m = jnp.ones((2, 3))
  f = jax.jit(metrics.gaussian_predictive_log_likelihood)
  np.testing.assert_allclose(
      f(y, m, 1.0), metrics.gaussian_predictive_log_likelihood(y, m, 1.0),
      **_TOL)
  ece = jax.jit(metrics.expected_calibration_error, static_argnums=2)
  assert ece(jnp.array([0]), jnp.array([[0.8, 0.2]]), 5).shape == ()


_Y = np.array([0.5, -1.0, 2.0], np.float32)
_P = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]], np.float32)
_L = np.array([0, 1, 1])


def _nan(a, i=1):
  a = np.array(a, np.float32, copy=True)
  a.reshape(-1)[i] = np.nan
  return a


_NAN_CASES = {
    "rmse-y": (lambda: metrics.rmse(_nan(_Y), _Y), "rmse: y has 1 non-finite"),
    "rmse-mean": (lambda: metrics.rmse(_Y, _nan(_Y, 2)),
                  r"rmse: mean has 1 non-finite value\(s\), first nan at "
                  r"index \[2\]"),
    "rmse_original_units-targets": (
        lambda: metrics.rmse_original_units(_nan(_Y), _Y, 2.0),
        "rmse_original_units: y_std_units has 1 non-finite"),
    "rmse_original_units-inf_std": (
        lambda: metrics.rmse_original_units(_Y, _Y, np.inf),
        "rmse_original_units: y_std has 1 non-finite"),
    "gaussian_log_density": (
        lambda: metrics.gaussian_log_density(_Y, _nan(_Y), np.ones(3)),
        "gaussian_log_density: mean has 1 non-finite"),
    "predictive_ll-means": (
        lambda: metrics.gaussian_predictive_log_likelihood(
            _Y, _nan(_Y)[None], 1.0),
        "gaussian_predictive_log_likelihood: means has 1 non-finite"),
    "predictive_ll-y": (
        lambda: metrics.gaussian_predictive_log_likelihood(
            _nan(_Y), _Y[None], 1.0),
        "gaussian_predictive_log_likelihood: y has 1 non-finite"),
    "mixture_mean_variance": (
        lambda: metrics.mixture_mean_variance(_nan(_Y)[None], 1.0),
        "mixture_mean_variance: means has 1 non-finite"),
    "denormalise_log_likelihood": (
        lambda: metrics.denormalise_log_likelihood(_nan(_Y), 2.0),
        "denormalise_log_likelihood: ll_std_units has 1 non-finite"),
    "accuracy-nan_row": (
        lambda: metrics.accuracy(_L, _nan(_P, 2)),
        r"accuracy: logits_or_probs has 1 non-finite value\(s\), first nan "
        r"at index \[1, 0\]"),
    "accuracy-nan_label": (
        lambda: metrics.accuracy(np.array([0.0, np.nan, 1.0]), _P),
        "accuracy: labels has 1 non-finite"),
    "nll": (lambda: metrics.nll(_L, _nan(_P)), "nll: probs has 1 non-finite"),
    "predictive_probs_from_samples": (
        lambda: metrics.predictive_probs_from_samples(_nan(_P)[None]),
        "predictive_probs_from_samples: logits has 1 non-finite"),
    "expected_calibration_error": (
        lambda: metrics.expected_calibration_error(_L, _nan(_P)),
        "expected_calibration_error: probs has 1 non-finite"),
    "mean_and_se": (lambda: metrics.mean_and_se(_nan(_Y)),
                    "mean_and_se: values has 1 non-finite"),
}


@pytest.mark.parametrize("name", sorted(_NAN_CASES))
def test_nan_input_raises(name):
  """README: NaN input raises (a NaN metric or class 0 is never returned)."""
  call, pattern = _NAN_CASES[name]
  with pytest.raises(ValueError, match=pattern):
    call()


@pytest.mark.parametrize("y_std", [-2.0, 0.0])
def test_rmse_original_units_needs_positive_std(y_std):
  with pytest.raises(ValueError, match=f"rmse_original_units: y_std must be "
                     f"> 0, got {y_std}"):
    metrics.rmse_original_units(_Y, _Y + 1.0, y_std)
  with pytest.raises(ValueError, match="denormalise_log_likelihood: y_std "
                     "must be > 0"):
    metrics.denormalise_log_likelihood(_Y, y_std)


def test_checks_do_not_apply_under_jit():
  """Under jit the inputs are tracers: no host transfer, NaN propagates."""
  f = jax.jit(metrics.rmse)
  assert np.isnan(float(f(_nan(_Y), _Y)))
