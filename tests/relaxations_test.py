"""Tests for jaxbdl.gradients.relaxations: Concrete densities and relaxed estimators.

Oracles:
* f(b) = (b - t)^2 with b ~ Bernoulli(p), p = sigmoid(theta):
  E[f] = p (1 - t)^2 + (1 - p) t^2, so dE/dp = (1 - t)^2 - t^2 = 1 - 2t and
  dE/dtheta = (1 - 2t) p (1 - p) (chain rule, dp/dtheta = p (1 - p)).
* Straight-through (Bengio): per sample f'(b) p (1 - p) = 2 (b - t) p (1 - p),
  mean 2 (p - t) p (1 - p); its bias is p (1 - p) (2p - 1).
* Gumbel-softmax: mean and variance of grad_theta f(sigmoid((theta + L) /
  lambda)), L ~ Logistic(0, 1), by quadrature over L in float64.
* Categorical: exact gradient by enumerating the K classes.
* Binary Concrete density: Maddison et al.'s closed form written out in
  numpy; Concrete K = 2 against Binary Concrete; K = 3 integrates to one.

Monte Carlo checks: |mean - oracle| < K_Z * SE, SE = std / sqrt(n) from the
same draws. K_Z = 4.5 (P(|Z| > 4.5) = 6.8e-6; this file makes < 60 such
checks, so a false failure has probability < 4e-4). The (theta, t) points
below were not used while developing the code (that used theta = 0.3).
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbdl.gradients import control_variates as cvs
from jaxbdl.gradients import distributions as dists
from jaxbdl.gradients import estimators as ests
from jaxbdl.gradients import relaxations as rx

K_Z = 4.5
N = 20000
TEMPERATURES = (2.0, 1.0, 0.5, 0.25, 0.1, 0.05)
# (name, theta, t): the REBAR/RELAX toy targets and two logits.
POINTS = [("t0.45_theta1.1", 1.1, 0.45), ("t0.499_theta-0.7", -0.7, 0.499)]

_MLP_INIT, _MLP_CONTROL = rx.mlp_control(hidden=6)


def _phi():
  """A RELAX control with non-trivial (random, untrained) parameters."""
  phi = _MLP_INIT(jax.random.key(7), jnp.zeros((1,)))
  phi["w2"] = jax.random.normal(jax.random.key(8), phi["w2"].shape)
  phi["eta"] = jnp.asarray(0.6)
  return phi


@jax.jit
def _bernoulli_runs(theta, t, temperatures, keys):
  """{name: [n] single-sample estimates of d/dtheta} (one compilation)."""
  f = lambda b: jnp.sum(jnp.square(b - t))
  params = {"logits": jnp.reshape(theta, (1,))}
  run = lambda est: jax.vmap(est(f, dists.Bernoulli), in_axes=(None, 0, None))(
      params, keys, 1)["logits"][:, 0]
  out = {"score_function": run(ests.score_function),
         "straight_through": run(rx.straight_through),
         "rebar": run(rx.rebar(0.5, 1.0)),
         "relax": run(rx.relax(_MLP_CONTROL, _phi())),
         "rebar_learned": run(rx.relax(rx.rebar_control(),
                                       {"eta": jnp.asarray(1.7),
                                        "log_temperature": jnp.asarray(-1.)}))}
  out["gumbel_softmax"] = jax.vmap(
      lambda lam: run(rx.gumbel_softmax(lam)))(temperatures)
  return out


@functools.lru_cache(maxsize=None)
def bernoulli_runs(theta, t):
  keys = jax.random.split(jax.random.key(11), N)
  return jax.tree.map(np.asarray, _bernoulli_runs(
      jnp.asarray(theta), jnp.asarray(t), jnp.asarray(TEMPERATURES), keys))


def exact_grad(theta, t):
  p = 1.0 / (1.0 + math.exp(-theta))
  return (1.0 - 2.0 * t) * p * (1.0 - p)


def _mean_se(g):
  g = np.asarray(g, np.float64)
  return g.mean(), g.std() / math.sqrt(g.size)


@pytest.mark.parametrize("name", ["score_function", "rebar", "relax",
                                  "rebar_learned"])
@pytest.mark.parametrize("point", POINTS, ids=[p[0] for p in POINTS])
def test_unbiased_bernoulli(point, name):
  _, theta, t = point
  mean, se = _mean_se(bernoulli_runs(theta, t)[name])
  exact = exact_grad(theta, t)
  assert abs(mean - exact) < K_Z * se, (name, mean, exact, se)


@pytest.mark.parametrize("point", POINTS, ids=[p[0] for p in POINTS])
def test_straight_through_known_bias(point):
  _, theta, t = point
  p = 1.0 / (1.0 + math.exp(-theta))
  mean, se = _mean_se(bernoulli_runs(theta, t)["straight_through"])
  st_mean = 2.0 * (p - t) * p * (1.0 - p)
  assert abs(mean - st_mean) < K_Z * se
  # The bias p (1 - p) (2p - 1) is resolved by the Monte Carlo at both points.
  assert abs(mean - exact_grad(theta, t)) > K_Z * se


def relaxed_moments(theta, t, lam):
  """Mean and variance of the single-sample Gumbel-softmax estimate.

  g(l) = 2 (y - t) y (1 - y) / lambda, y = sigmoid((theta + l) / lambda),
  integrated against the Logistic(0, 1) density on a fine grid (float64).
  """
  l = np.linspace(-60.0, 60.0, 400001)
  w = np.exp(-np.abs(l)) / np.square(1.0 + np.exp(-np.abs(l)))
  y = 0.5 * (1.0 + np.tanh(0.5 * (theta + l) / lam))  # sigmoid, no overflow
  g = 2.0 * (y - t) * y * (1.0 - y) / lam
  m1 = np.trapezoid(g * w, l)
  m2 = np.trapezoid(g * g * w, l)
  return m1, m2 - m1 * m1


@pytest.mark.parametrize("point", POINTS, ids=[p[0] for p in POINTS])
def test_gumbel_softmax_bias_vanishes_variance_grows(point):
  _, theta, t = point
  draws = bernoulli_runs(theta, t)["gumbel_softmax"]  # [T, N]
  exact = exact_grad(theta, t)
  biases, variances = [], []
  for i, lam in enumerate(TEMPERATURES):
    quad_mean, quad_var = relaxed_moments(theta, t, lam)
    g = np.asarray(draws[i], np.float64)
    mean, se = _mean_se(g)
    assert abs(mean - quad_mean) < K_Z * se, (lam, mean, quad_mean)
    # SE of the sample variance: sqrt((m4 - var^2) / n).
    c = g - g.mean()
    se_var = math.sqrt((np.mean(c**4) - np.var(g)**2) / g.size)
    assert abs(np.var(g) - quad_var) < K_Z * se_var, (lam, np.var(g),
                                                      quad_var)
    biases.append(abs(quad_mean - exact))
    variances.append(quad_var)
  # Temperatures decrease along the list. The variance rises throughout
  # (~ 1 / lambda for small lambda). The bias is O(lambda) as lambda -> 0,
  # so it falls from lambda = 0.5 down; above that it is not monotone (at
  # lambda = 2 the relaxed gradient is flattened towards 0 and happens to be
  # closer to the exact one), so the claim is made for lambda <= 0.5 only.
  assert all(v1 < v2 for v1, v2 in zip(variances, variances[1:])), variances
  small = biases[TEMPERATURES.index(0.5):]
  assert all(b1 > b2 for b1, b2 in zip(small, small[1:])), biases
  assert biases[-1] < 0.25 * small[0]
  # The measured bias at lambda = 0.5 is resolved by the Monte Carlo.
  mean, se = _mean_se(draws[TEMPERATURES.index(0.5)])
  assert abs(mean - exact) > K_Z * se


# ---------------------------------------------------------------------------
# Categorical.

CAT_LOGITS = jnp.array([[0.4, -0.9, 0.1, 0.8]])   # [E=1, K=4]
CAT_TARGET = jnp.array([0.3, 0.1, 0.5, 0.1])


def _cat_f(y):
  target = CAT_TARGET.reshape((1,) * (y.ndim - 1) + (4,))
  return jnp.sum(jnp.square(y - target)) + jnp.sum(y[..., 1] * y[..., 2])


def _cat_exact():
  def expectation(params):
    pi = jax.nn.softmax(params["logits"], axis=-1)[0]
    return sum(pi[k] * _cat_f(jax.nn.one_hot(k, 4)) for k in range(4))
  return np.asarray(jax.grad(expectation)({"logits": CAT_LOGITS})["logits"])


def _cat_st_mean():
  """sum_k pi_k grad f(e_k)^T J_softmax: straight-through's expectation."""
  pi = jax.nn.softmax(CAT_LOGITS, axis=-1)[0]
  jac = jnp.diag(pi) - jnp.outer(pi, pi)  # d pi / d logits
  g = sum(pi[k] * jax.grad(_cat_f)(jax.nn.one_hot(k, 4)) for k in range(4))
  return np.asarray(g @ jac)[None]


@jax.jit
def _categorical_runs(keys):
  params = {"logits": CAT_LOGITS}
  run = lambda est: jax.vmap(est(_cat_f, dists.Categorical),
                             in_axes=(None, 0, None))(params, keys, 1)[
                                 "logits"]
  return {"rebar": run(rx.rebar(0.3, 0.9)),
          "rebar_learned": run(rx.relax(rx.rebar_control(),
                                        {"eta": jnp.asarray(1.3),
                                         "log_temperature": jnp.asarray(0.2)})),
          "straight_through": run(rx.straight_through)}


@functools.lru_cache(maxsize=None)
def categorical_runs():
  keys = jax.random.split(jax.random.key(5), N)
  return jax.tree.map(np.asarray, _categorical_runs(keys))


@pytest.mark.parametrize("name", ["rebar", "rebar_learned"])
def test_unbiased_categorical(name):
  g = np.asarray(categorical_runs()[name], np.float64)  # [N, 1, 4]
  mean, se = g.mean(0), g.std(0) / math.sqrt(N)
  exact = _cat_exact()
  assert np.all(np.abs(mean - exact) < K_Z * se), (mean, exact, se)


def test_straight_through_categorical_mean():
  g = np.asarray(categorical_runs()["straight_through"], np.float64)
  mean, se = g.mean(0), g.std(0) / math.sqrt(N)
  assert np.all(np.abs(mean - _cat_st_mean()) < K_Z * se + 1e-6)
  assert np.any(np.abs(mean - _cat_exact()) > K_Z * se)  # biased


# ---------------------------------------------------------------------------
# Densities.


def maddison_binary_log_density(y, logit, lam):
  """log of lambda a y^(-l-1) (1-y)^(-l-1) / (a y^-l + (1-y)^-l)^2, float64."""
  a = np.exp(logit)
  return (np.log(lam * a) + (-lam - 1.0) * (np.log(y) + np.log1p(-y))
          - 2.0 * np.log(a * y**-lam + (1.0 - y)**-lam))


@pytest.mark.parametrize("lam", [0.3, 1.0, 2.5])
def test_binary_concrete_density(lam):
  logits = np.array([-0.8, 0.0, 1.7])
  y = np.array([[0.03, 0.4, 0.97], [0.5, 0.71, 0.2]])
  lp = rx.relaxed_bernoulli(lam).log_prob({"logits": jnp.asarray(logits,
                                                                 jnp.float32)},
                                          jnp.asarray(y, jnp.float32))
  expect = maddison_binary_log_density(y, logits, lam).sum(-1)
  np.testing.assert_allclose(np.asarray(lp), expect, rtol=1e-5, atol=1e-4)
  # The oracle itself is normalised: integrate it over (0, 1) in logit
  # space, y = sigmoid(x), dy = y (1 - y) dx (float64; float32 rounds y to 1
  # in the far tail, so the implementation is compared pointwise above).
  x = np.linspace(-200.0, 200.0, 400001)
  log_y, log_1my = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)
  log_jac = log_y + log_1my  # log y (1 - y)
  log_dens = (np.log(lam) + 0.6 + (-lam - 1.0) * log_jac
              - 2.0 * np.logaddexp(0.6 - lam * log_y, -lam * log_1my))
  total = np.trapezoid(np.exp(log_dens + log_jac), x)
  assert abs(total - 1.0) < 1e-3


def test_concrete_k2_matches_binary_and_k3_normalised():
  lam = 0.7
  l = jnp.array([0.9, -0.4])
  y1 = jnp.array([0.1, 0.5, 0.93])
  y = jnp.stack([y1, 1.0 - y1], axis=-1)  # [3, 2]
  lp_cat = rx.relaxed_categorical(lam).log_prob({"logits": l}, y)
  lp_bin = rx.relaxed_bernoulli(lam).log_prob({"logits": (l[0] - l[1])[None]},
                                              y1[:, None])
  np.testing.assert_allclose(np.asarray(lp_cat), np.asarray(lp_bin),
                             rtol=1e-5, atol=1e-5)
  # K = 3: integral over the simplex {y1, y2 > 0, y1 + y2 < 1} by a midpoint
  # grid; at lambda = 2 the density is bounded, so the grid converges.
  m = 600
  g = (np.arange(m) + 0.5) / m
  y1g, y2g = np.meshgrid(g, g, indexing="ij")
  inside = y1g + y2g < 1.0
  pts = np.stack([y1g[inside], y2g[inside], 1.0 - y1g[inside] - y2g[inside]],
                 -1)
  dens = np.exp(np.asarray(rx.relaxed_categorical(2.0).log_prob(
      {"logits": jnp.array([0.3, -0.2, 0.5])}, jnp.asarray(pts, jnp.float32)),
                           np.float64))
  assert abs(dens.sum() / m**2 - 1.0) < 0.01


def test_relaxed_sampler_matches_density():
  """P(y < c) from samples vs the integral of the density (binomial SE)."""
  lam, logit = 0.6, 0.4
  params = {"logits": jnp.array([logit])}
  y = np.asarray(rx.relaxed_sample(dists.Bernoulli, params,
                                   jax.random.key(3), lam, (N,)))[:, 0]
  x = np.linspace(-30.0, 30.0, 30001)  # float64 keeps y < 1 here
  yy = 1.0 / (1.0 + np.exp(-x))
  dens = np.exp(maddison_binary_log_density(yy, logit, lam)) * yy * (1 - yy)
  cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1])
                                         * np.diff(x))])
  for c in (0.1, 0.5, 0.8):
    p_int = np.interp(np.log(c / (1 - c)), x, cdf)
    p_mc = np.mean(y < c)
    assert abs(p_mc - p_int) < K_Z * math.sqrt(p_int * (1 - p_int) / N)
  # Same key: the hard sample is the threshold of the relaxed one.
  b = np.asarray(rx.hard_sample(dists.Bernoulli, params, jax.random.key(3),
                                (N,)))[:, 0]
  np.testing.assert_array_equal(b, (y > 0.5).astype(b.dtype))


# ---------------------------------------------------------------------------
# Contract, composition, control training.


def test_surrogate_gradient_equals_average_and_cv_composes():
  f = lambda b: jnp.sum(jnp.square(b - 0.45))
  params = {"logits": jnp.array([0.2, -1.3])}
  key = jax.random.key(2)

  @jax.jit
  def both():
    out = {}
    for est in (rx.rebar(0.5, 1.0), rx.gumbel_softmax(0.5),
                rx.straight_through):
      out[est.name] = (est(f, dists.Bernoulli)(params, key, 8)["logits"],
                       jax.grad(est.surrogate(f, dists.Bernoulli))(
                           params, key, 8)["logits"])
    loo = cvs.with_control_variate(rx.rebar(0.5, 1.0),
                                   cvs.leave_one_out_baseline())
    out["loo"] = (loo(f, dists.Bernoulli)(params, key, 8)["logits"],
                  out["rebar"][0])
    return out

  for name, (a, b) in both().items():
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                               atol=1e-6, err_msg=name)


def test_variance_loss_gradient_matches_finite_differences():
  """d/dphi of the (fixed-key, hence deterministic) variance loss against
  central differences, for eta (which enters the score term's multiplier
  c(z~) as well as the pathwise terms) and the MLP's output weights."""
  f = lambda b: jnp.sum(jnp.square(b - 0.499))
  params = {"logits": jnp.array([0.3])}
  loss = rx.variance_loss(lambda phi: rx.relax(_MLP_CONTROL, phi), f,
                          dists.Bernoulli)
  fn = jax.jit(lambda phi: loss(phi, params, jax.random.key(0), 16))
  phi = _phi()
  g = jax.jit(jax.grad(lambda phi: loss(phi, params, jax.random.key(0), 16)))(phi)
  h = 1e-2
  for name, index in (("eta", ()), ("w2", (0,)), ("w2", (3,))):
    up, dn = dict(phi), dict(phi)
    up[name] = phi[name].at[index].add(h)
    dn[name] = phi[name].at[index].add(-h)
    fd = (float(fn(up)) - float(fn(dn))) / (2 * h)
    # Central-difference error O(h^2) plus float32 rounding of the loss
    # (~1e-7 relative) / h: 2% relative + 1e-4 absolute covers both.
    assert abs(float(g[name][index]) - fd) < 0.02 * abs(fd) + 1e-4, (
        name, index, float(g[name][index]), fd)
  assert abs(float(g["eta"])) > 1e-3


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")],
                         ids=["zero", "negative", "nan"])
@pytest.mark.parametrize("factory", [rx.gumbel_softmax, rx.rebar,
                                     rx.relaxed_bernoulli,
                                     rx.relaxed_categorical,
                                     rx.straight_through_gumbel])
def test_bad_temperature(factory, temperature):
  with pytest.raises(ValueError, match="temperature must be finite and > 0"):
    factory(temperature)


_TABLE = jnp.array([1.0, 3.0])


@pytest.mark.parametrize(
    "f", [lambda b: jnp.sum((b > 0.5).astype(jnp.float32)),
          lambda b: jnp.sum(jnp.round(b)),
          lambda b: jnp.sum(_TABLE[b])],
    ids=["threshold", "round", "integer_index"])
@pytest.mark.parametrize("est", [rx.rebar(), rx.gumbel_softmax(0.5),
                                 rx.straight_through],
                         ids=["rebar", "gumbel_softmax", "straight_through"])
def test_non_differentiable_f_rejected(est, f):
  with pytest.raises(ValueError, match="use estimators.score_function"):
    est(f, dists.Bernoulli)({"logits": jnp.zeros(2)}, jax.random.key(0), 2)


def test_relax_rejects_non_differentiable_f():
  phi = _phi()
  with pytest.raises(ValueError, match="relax evaluates f at relaxed"):
    rx.relax(_MLP_CONTROL, phi)(lambda b: jnp.sum(jnp.round(b)),
                                dists.Bernoulli)({"logits": jnp.zeros(1)},
                                                 jax.random.key(0), 2)


def test_wrong_distribution_rejected():
  with pytest.raises(ValueError, match="relaxes Bernoulli or Categorical"):
    rx.rebar()(lambda x: jnp.sum(x), dists.Normal)(
        {"loc": jnp.zeros(1), "scale": jnp.ones(1)}, jax.random.key(0), 1)


def test_relaxation_is_a_capability_not_a_name():
  """The Concrete relaxation follows ``Distribution.relaxation`` (data): a
  renamed Bernoulli still relaxes, bit for bit; a family without one (or a
  Bernoulli with it removed) is refused by name."""
  params, key = {"logits": jnp.asarray([-1.0, 0.5, 2.0])}, jax.random.key(3)
  coin = dists.Bernoulli._replace(name="MyCoin")
  np.testing.assert_array_equal(
      rx.relaxed_sample(coin, params, key, 0.5, (4,)),
      rx.relaxed_sample(dists.Bernoulli, params, key, 0.5, (4,)))
  with pytest.raises(ValueError, match="got Poisson"):
    rx.relaxed_sample(dists.Poisson, {"rate": jnp.ones(3)}, key, 0.5)
  with pytest.raises(ValueError, match="got Bernoulli"):
    rx.hard_sample(dists.Bernoulli._replace(relaxation=None), params, key)
