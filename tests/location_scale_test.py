"""Tests for jaxbdl.gradients.location_scale: one construction, many families.

Oracles: scipy.stats (log density, entropy, variance), numerical quadrature
(normalisation and KL divergence by the trapezoidal rule on a fine grid,
in float64 from float32 log densities) and Monte Carlo moments.

Tolerances. Deterministic maths: ``_TOL`` (float32 arithmetic, a few ulps of
values of order 1-10). Quadrature: the trapezoidal error on a grid of step
``h = 2e-3 scale`` is ``O(h^2 max|p''|) < 1e-5`` for these densities (the
Laplace kink sits on a grid point), the float32 log densities add a relative
error ``~1e-6``, and the tails beyond ``+-60 scale`` weigh < 1e-25; so
``_QUAD_ATOL = 1e-4`` leaves a margin of 10. Monte Carlo: |estimate - exact|
< K_Z * SE with SE from the same samples; K_Z = 4.5 for the 36 such checks
here (3 families x 6 coordinates x mean and variance; Bonferroni with the
two-sided tail P(|Z| > 4.5) = 6.8e-6: 36 * 6.8e-6 < 3e-4 chance of a false
failure).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxbdl.gradients import distributions as dists
from jaxbdl.gradients import location_scale

K_Z = 4.5
N = 20000
_TOL = dict(rtol=2e-5, atol=2e-5)
_QUAD_ATOL = 1e-4


def _logistic_log_prob_standard(z):
  """Standard logistic: log p0(z) = -z - 2 log(1 + exp(-z))."""
  return -z - 2.0 * jax.nn.softplus(-z)


# A third family from the same construction (no closed-form KL given).
LOGISTIC = location_scale.location_scale(
    "Logistic", jax.random.logistic, _logistic_log_prob_standard,
    entropy_standard=2.0, variance_standard=math.pi ** 2 / 3.0)

FAMILIES = {
    "Normal": (dists.Normal, stats.norm),
    "Laplace": (dists.Laplace, stats.laplace),
    "Logistic": (LOGISTIC, stats.logistic),
}
NAMES = list(FAMILIES)
PARAMS = {"loc": jnp.array([[0.3, -1.0, 2.0], [0.0, 0.5, -0.2]]),
          "scale": jnp.array([[0.7, 1.0, 2.5], [0.4, 1.5, 1.0]])}


def _params64():
  return {k: np.asarray(v, np.float64) for k, v in PARAMS.items()}


def test_normal_and_laplace_are_location_scale_instances():
  assert location_scale.Normal is dists.Normal
  assert location_scale.Laplace is dists.Laplace
  for dist in (dists.Normal, dists.Laplace, LOGISTIC):
    assert dist.param_names == ("loc", "scale")
    assert dist.reparameterized and not dist.implicit_reparameterized
  # Capabilities are data: only the Normal has a weak derivative.
  assert dists.Normal.weak_derivative_params == ("loc", "scale")
  assert dists.Laplace.weak_derivative is None
  assert dists.Laplace.weak_derivative_params == ()


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_and_entropy_match_scipy(name):
  dist, oracle = FAMILIES[name]
  p = _params64()
  x = np.asarray(jax.random.normal(jax.random.key(3), (50, 2, 3)) * 3.0)
  lp = jax.jit(dist.log_prob)(PARAMS, jnp.asarray(x, jnp.float32))
  assert lp.shape == (50,)
  want = oracle.logpdf(np.asarray(x, np.float32), p["loc"], p["scale"])
  np.testing.assert_allclose(lp, want.sum(axis=(-2, -1)), **_TOL)
  np.testing.assert_allclose(
      dist.entropy(PARAMS), oracle.entropy(p["loc"], p["scale"]).sum(),
      **_TOL)
  np.testing.assert_allclose(dist.mean(PARAMS), p["loc"], **_TOL)
  np.testing.assert_allclose(
      np.diag(dist.covariance(PARAMS)),
      oracle.var(p["loc"], p["scale"]).reshape(-1), **_TOL)


def _grid(loc, scale):
  """``[G]`` float64 points covering ``loc +- 60 scale`` with ``loc`` on it."""
  h = 2e-3 * scale
  half = np.arange(1, int(60.0 / 2e-3) + 1) * h
  return np.concatenate([loc - half[::-1], [loc], loc + half])


def _trapezoid(y, x):
  return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_integrates_to_one(name):
  dist, _ = FAMILIES[name]
  log_prob = jax.jit(dist.log_prob)
  for loc, scale in [(0.3, 0.7), (-2.0, 3.0)]:
    x = _grid(loc, scale)
    params = {"loc": jnp.asarray(loc, jnp.float32),
              "scale": jnp.asarray(scale, jnp.float32)}
    lp = np.asarray(log_prob(params, jnp.asarray(x, jnp.float32)), np.float64)
    total = _trapezoid(np.exp(lp), x)
    assert abs(total - 1.0) < _QUAD_ATOL, (name, loc, scale, total)


@pytest.mark.parametrize("name", ["Normal", "Laplace"])
def test_kl_matches_quadrature(name):
  """The family-specific closed-form KL against int p log(p / q) dx."""
  dist, _ = FAMILIES[name]
  p_params = {"loc": jnp.float32(0.3), "scale": jnp.float32(0.7)}
  q_params = {"loc": jnp.float32(-0.5), "scale": jnp.float32(1.6)}
  x = _grid(0.3, 0.7)
  lp = np.asarray(dist.log_prob(p_params, jnp.asarray(x, jnp.float32)),
                  np.float64)
  lq = np.asarray(dist.log_prob(q_params, jnp.asarray(x, jnp.float32)),
                  np.float64)
  want = _trapezoid(np.exp(lp) * (lp - lq), x)
  got = float(dist.kl(p_params, q_params))
  assert abs(got - want) < _QUAD_ATOL, (name, got, want)
  assert float(dist.kl(p_params, p_params)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_samples_have_the_family_moments(name):
  """Sample mean and variance of ``transform(noise)`` within K_Z SE."""
  dist, oracle = FAMILIES[name]
  p = _params64()
  x = np.asarray(jax.jit(lambda k: dist.sample(PARAMS, k, (N,)))(
      jax.random.key(11)), np.float64)
  assert x.shape == (N, 2, 3)
  mean, var = oracle.mean(p["loc"], p["scale"]), oracle.var(p["loc"],
                                                            p["scale"])
  se_mean = np.sqrt(var / N)
  assert np.all(np.abs(x.mean(0) - mean) < K_Z * se_mean), name
  dev2 = np.square(x - mean)
  se_var = dev2.std(0, ddof=1) / np.sqrt(N)
  assert np.all(np.abs(dev2.mean(0) - var) < K_Z * se_var), name


def test_no_closed_form_kl_raises():
  with pytest.raises(ValueError, match="Logistic has no closed-form KL"):
    LOGISTIC.kl(PARAMS, PARAMS)


def test_bad_parameters_name_the_family():
  with pytest.raises(ValueError, match="Logistic scale must be > 0"):
    LOGISTIC.log_prob({"loc": jnp.zeros(2), "scale": -jnp.ones(2)},
                      jnp.zeros(2))
  with pytest.raises(ValueError, match="Logistic params must have keys"):
    LOGISTIC.entropy({"loc": jnp.zeros(2)})
