"""Tests for jaxbdl.gradients.quadrature against closed forms and Monte Carlo oracles.

Closed forms for the quadratic cost ``f(x) = (x - k)^2`` under
``x = mu + sigma eps``, ``eps ~ N(0, 1)``; write ``a = mu - k`` so that
``f = a^2 + 2 a sigma eps + sigma^2 eps^2``. Gaussian moments
``E eps^{2m} = (2m - 1)!! = 1, 1, 3, 15, 105`` (m = 0..4).

* Gradient: ``d/dmu E f = 2a``, ``d/dsigma E f = 2 sigma``.
* Pathwise: ``g_mu = 2(a + sigma eps)`` so ``Var = 4 sigma^2``;
  ``g_sigma = 2 a eps + 2 sigma eps^2`` so ``Var = 4 a^2 + 8 sigma^2``
  (``Cov(eps, eps^2) = 0``, ``Var eps^2 = 2``).
* Score function with constant baseline ``b``: ``f - b = c0 + c1 eps + c2
  eps^2`` with ``c0 = a^2 - b``, ``c1 = 2 a sigma``, ``c2 = sigma^2``; the even
  part of ``(f - b)^2`` is ``e0 + e2 eps^2 + e4 eps^4`` with ``e0 = c0^2``,
  ``e2 = c1^2 + 2 c0 c2``, ``e4 = c2^2``. Then
  ``E[g_mu^2] = (e0 + 3 e2 + 15 e4) / sigma^2`` (score ``eps/sigma``) and
  ``E[g_sigma^2] = (2 e0 + 10 e2 + 78 e4) / sigma^2`` (score
  ``(eps^2 - 1)/sigma``; ``E[eps^{2m} (eps^4 - 2 eps^2 + 1)] = 2, 10, 78``);
  subtract the squared gradient.
* Measure-valued, mean: ``f(mu + sigma W) - f(mu - sigma W) = 4 a sigma W``,
  so ``g_mu = 4 a W / sqrt(2 pi)``, ``E W = sqrt(pi/2)``, ``E W^2 = 2`` and
  ``Var g_mu = a^2 (16/pi - 4)`` (coupled). Uncoupled (independent ``W, W'``):
  ``Var = (8 a^2 sigma^2 Var W + 2 sigma^4 Var W^2) / (2 pi sigma^2)`` with
  ``Var W = 2 - pi/2``, ``Var W^2 = 8 - 4 = 4``.
* Measure-valued, scale, coupled ``V = M U``: ``g_sigma = 2 a M (1 - U) +
  sigma M^2 (1 - U^2)``; with Maxwell moments ``E M^2 = 3``, ``E M^4 = 15``,
  odd ones 0, and ``E(1-U)^2 = 1/3``, ``E(1-U^2)^2 = 8/15``:
  ``E g^2 = 4 a^2 + 8 sigma^2``, ``Var = 4 a^2 + 4 sigma^2``. Uncoupled:
  ``(Var f(mu + sigma M) + Var f(mu + sigma eps)) / sigma^2 =
  (12 a^2 sigma^2 + 6 sigma^4 + 4 a^2 sigma^2 + 2 sigma^4) / sigma^2
  = 16 a^2 + 8 sigma^2``.
* The delta-method control (second-order Taylor) is exact for a quadratic,
  so the controlled score-function variance is 0.

For ``cos(k x)``: ``E cos(kx) = cos(k mu) e^{-k^2 sigma^2 / 2}`` and the
pathwise ``g_mu = -k sin(kx)`` has
``E g_mu^2 = k^2 (1 - cos(2 k mu) e^{-2 k^2 sigma^2}) / 2``.
"""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbdl.gradients import quadrature

# float64 quadrature against float64 closed forms.
_RTOL = 1e-10
# Monte Carlo checks: |estimate - exact| < _K_SE * SE (two-sided normal tail
# probability ~6e-5 per check).
_K_SE = 4.0

_SETTINGS = [
    pytest.param(1.0, 1.0, 2.0, id="mu1_sigma1_k2"),
    pytest.param(0.5, 2.0, -1.0, id="mu0.5_sigma2_k-1"),
    pytest.param(-1.0, 0.3, 3.0, id="mu-1_sigma0.3_k3"),
]


def _quad(k):
  return lambda x: (x - k) ** 2


def _sf_closed(a, sigma, b):
  c0, c1, c2 = a**2 - b, 2 * a * sigma, sigma**2
  e0, e2, e4 = c0**2, c1**2 + 2 * c0 * c2, c2**2
  return {"loc": (e0 + 3 * e2 + 15 * e4) / sigma**2 - 4 * a**2,
          "scale": (2 * e0 + 10 * e2 + 78 * e4) / sigma**2 - 4 * sigma**2}


def _close(got, want, rtol=_RTOL, atol=1e-12):
  for name in ("loc", "scale"):
    assert abs(got[name] - want[name]) <= atol + rtol * abs(want[name]), (
        name, got[name], want[name])


@pytest.mark.parametrize("mu,sigma,k", _SETTINGS)
def test_quadratic_closed_forms(mu, sigma, k):
  f, a = _quad(k), mu - k
  _close(quadrature.exact_gradient(f, mu, sigma),
         {"loc": 2 * a, "scale": 2 * sigma})
  assert math.isclose(quadrature.gaussian_expectation(f, mu, sigma),
                      a**2 + sigma**2, rel_tol=_RTOL)
  _close(quadrature.pathwise_variance(f, mu, sigma),
         {"loc": 4 * sigma**2, "scale": 4 * a**2 + 8 * sigma**2})
  _close(quadrature.score_function_variance(f, mu, sigma),
         _sf_closed(a, sigma, 0.0))
  b = a**2 + sigma**2  # the mean of f as a baseline
  _close(quadrature.score_function_variance(f, mu, sigma, control=b),
         _sf_closed(a, sigma, b))
  _close(quadrature.measure_valued_variance(f, mu, sigma),
         {"loc": a**2 * (16 / math.pi - 4),
          "scale": 4 * a**2 + 4 * sigma**2})
  var_w, var_w2 = 2 - math.pi / 2, 4.0
  _close(quadrature.measure_valued_variance(f, mu, sigma, coupled=False),
         {"loc": (8 * a**2 * sigma**2 * var_w + 2 * sigma**4 * var_w2)
                 / (2 * math.pi * sigma**2),
          "scale": 16 * a**2 + 8 * sigma**2})
  control = quadrature.taylor_control(f, mu)
  got = quadrature.score_function_variance(f, mu, sigma, control=control)
  assert got["loc"] < 1e-20 and got["scale"] < 1e-20


@pytest.mark.parametrize("mu,sigma,k", [
    pytest.param(1.0, 1.0, 3.0, id="cos_k3"),
    pytest.param(0.3, 2.0, 5.0, id="cos_k5_sigma2"),
])
def test_cos_closed_forms(mu, sigma, k):
  f = lambda x: jnp.cos(k * x)
  damp = math.exp(-0.5 * k**2 * sigma**2)
  _close(quadrature.exact_gradient(f, mu, sigma),
         {"loc": -k * math.sin(k * mu) * damp,
          "scale": -k**2 * sigma * math.cos(k * mu) * damp}, atol=1e-13)
  e_g2 = k**2 * (1 - math.cos(2 * k * mu) * damp**4) / 2
  want = e_g2 - (k * math.sin(k * mu) * damp) ** 2
  got = quadrature.pathwise_variance(f, mu, sigma)["loc"]
  assert math.isclose(got, want, rel_tol=_RTOL), (got, want)


@pytest.mark.parametrize("name,cost", [
    pytest.param("cos", lambda k: (lambda x: jnp.cos(k * x)), id="cos"),
    pytest.param("exp", lambda k: (lambda x: jnp.exp(-k * x**2)), id="exp"),
])
def test_refinement_converged(name, cost):
  """Doubling every rule changes nothing (k sigma = 10: the hardest case)."""
  del name
  f, mu, sigma = cost(5.0), 1.0, 2.0
  for fn in (quadrature.score_function_variance,
             quadrature.measure_valued_variance):
    coarse, fine = fn(f, mu, sigma), fn(f, mu, sigma, refine=2)
    _close(coarse, fine, rtol=1e-9, atol=1e-14)


def test_loo_limit_is_mean_baseline():
  """N Var[LOO_N] -> single-sample Var with baseline E[f] as N -> infinity."""
  f, mu, sigma = (lambda x: jnp.exp(-0.5 * x**2)), 1.0, 1.0
  n = 10**6
  loo = quadrature.loo_score_function_variance(f, mu, sigma, n)
  base = quadrature.score_function_variance(
      f, mu, sigma, control=quadrature.gaussian_expectation(f, mu, sigma))
  _close({k: n * v for k, v in loo.items()}, base, rtol=1e-5)


def _mc_var_check(samples, want):
  """|sample variance - want| < K * SE, SE from the sample 4th moment."""
  x = np.asarray(samples, np.float64)
  r = x.shape[0]
  c = x - x.mean()
  var = np.mean(c**2) * r / (r - 1)
  se = math.sqrt(max(np.mean(c**4) - var**2, 0.0) / r)
  assert abs(var - want) < _K_SE * se, (var, want, se)


def test_loo_and_measure_valued_against_monte_carlo():
  """Independent sampling oracle for the LOO and coupled-MVD formulas."""
  k, mu, sigma, n, reps = 2.0, 0.5, 1.0, 3, 200_000
  f_np = lambda x: np.cos(k * x)
  f = lambda x: jnp.cos(k * x)
  rng = np.random.default_rng(0)
  eps = rng.standard_normal((reps, n))
  fx = f_np(mu + sigma * eps)
  baseline = (fx.sum(1, keepdims=True) - fx) / (n - 1)
  g_loc = np.mean((fx - baseline) * eps / sigma, axis=1)
  g_scale = np.mean((fx - baseline) * (eps**2 - 1) / sigma, axis=1)
  want = quadrature.loo_score_function_variance(f, mu, sigma, n)
  _mc_var_check(g_loc, want["loc"])
  _mc_var_check(g_scale, want["scale"])

  w = np.sqrt(-2.0 * np.log1p(-rng.uniform(size=reps)))  # Rayleigh
  g_mu = (f_np(mu + sigma * w) - f_np(mu - sigma * w)) / (
      sigma * math.sqrt(2 * math.pi))
  m = np.sqrt(rng.chisquare(3, size=reps)) * rng.choice([-1.0, 1.0], reps)
  u = rng.uniform(size=reps)
  g_sigma = (f_np(mu + sigma * m) - f_np(mu + sigma * m * u)) / sigma
  want = quadrature.measure_valued_variance(f, mu, sigma)
  _mc_var_check(g_mu, want["loc"])
  _mc_var_check(g_sigma, want["scale"])
  grad = quadrature.exact_gradient(f, mu, sigma)
  for g, name in ((g_mu, "loc"), (g_sigma, "scale")):
    assert abs(g.mean() - grad[name]) < _K_SE * g.std() / math.sqrt(reps)


@pytest.mark.parametrize("kwargs,match", [
    pytest.param(dict(loc=0.0, scale=0.0), "scale", id="zero_scale"),
    pytest.param(dict(loc=float("nan"), scale=1.0), "loc", id="nan_loc"),
    pytest.param(dict(loc=0.0, scale=1.0, refine=0), "refine", id="refine"),
])
def test_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    quadrature.pathwise_variance(lambda x: x**2, **kwargs)


def test_validation_of_cost():
  with pytest.raises(ValueError, match="scalar"):
    quadrature.score_function_variance(lambda x: jnp.stack([x, x]), 0.0, 1.0)
  with pytest.raises(ValueError, match="not finite"):
    quadrature.score_function_variance(lambda x: jnp.log(x), 0.0, 1.0)
  with pytest.raises(ValueError, match="num_samples"):
    quadrature.loo_score_function_variance(lambda x: x, 0.0, 1.0, 1)
