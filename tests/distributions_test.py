"""Tests for jaxbdl.gradients.distributions against scipy oracles and Monte Carlo.

Deterministic maths (log_prob, entropy) uses the dtype-keyed tolerance table
``_TOL``. Monte Carlo checks assert |estimate - exact| < K_Z * SE, SE computed
from the same samples. K_Z = 4.5: this file makes about 60 such checks; with
a two-sided normal tail P(|Z| > 4.5) = 6.8e-6 the chance that any fails by
luck is below 60 * 6.8e-6 = 4e-4 (Bonferroni).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special as sp_special
from scipy import stats

from jaxbdl.gradients import distributions as dists
from tests.helpers import assert_mc_close

K_Z = 4.5
N = 20000  # samples per Monte Carlo check
_TOL = {np.dtype(np.float32): dict(rtol=2e-5, atol=2e-5)}

PARAMS = {
    "Normal": {"loc": jnp.array([0.5, -1.0, 2.0]),
               "scale": jnp.array([0.5, 1.0, 2.0])},
    "Laplace": {"loc": jnp.array([0.5, -1.0, 2.0]),
                "scale": jnp.array([0.5, 1.0, 2.0])},
    "Bernoulli": {"logits": jnp.array([-1.5, 0.0, 2.0])},
    "Categorical": {"logits": jnp.array([[0.0, 1.0, -1.0, 0.5],
                                         [2.0, 0.0, 0.0, -3.0]])},
}
OTHER = {  # second member of each family, for KL(p || q)
    "Normal": {"loc": jnp.array([0.0, 0.0, 1.0]),
               "scale": jnp.array([1.0, 2.0, 1.0])},
    "Laplace": {"loc": jnp.array([0.0, 0.0, 1.0]),
                "scale": jnp.array([1.0, 2.0, 1.0])},
    "Bernoulli": {"logits": jnp.array([0.0, 1.0, -1.0])},
    "Categorical": {"logits": jnp.array([[0.5, 0.0, 0.0, 0.0],
                                         [0.0, 1.0, 1.0, 0.0]])},
}
DIST = {"Normal": dists.Normal, "Laplace": dists.Laplace,
        "Bernoulli": dists.Bernoulli, "Categorical": dists.Categorical}
NAMES = list(DIST)


def fast(fn):
  """jit: one compile instead of op-by-op dispatch (the XLA optimisation
  level is the suite-wide one set in tests/conftest.py)."""
  return jax.jit(fn)


def _tol(dtype=np.float32):
  return _TOL[np.dtype(dtype)]


def _assert_mc(estimate, exact, se, what):
  estimate, exact, se = map(np.asarray, (estimate, exact, se))
  z = np.abs(estimate - exact) / np.maximum(se, 1e-12)
  assert np.all(z < K_Z), (f"{what}: estimate {estimate} vs exact {exact}, "
                           f"z = {z} (K_Z = {K_Z})")


@functools.lru_cache(maxsize=None)
def _samples(name):
  """N samples (numpy) of each test distribution, one random call each."""
  sample = jax.jit(lambda p, k: DIST[name].sample(p, k, (N,)))
  return np.asarray(sample(PARAMS[name], jax.random.key(7)))


def _scipy_logpdf(name, x):
  """Oracle log density per coordinate, summed over the event."""
  p = {k: np.asarray(v, np.float64) for k, v in PARAMS[name].items()}
  if name == "Normal":
    return stats.norm.logpdf(x, p["loc"], p["scale"]).sum(-1)
  if name == "Laplace":
    return stats.laplace.logpdf(x, p["loc"], p["scale"]).sum(-1)
  if name == "Bernoulli":
    return stats.bernoulli.logpmf(x, sp_special.expit(p["logits"])).sum(-1)
  logp = sp_special.log_softmax(p["logits"], axis=-1)  # [2, 4]
  return np.take_along_axis(
      np.broadcast_to(logp, x.shape + logp.shape[-1:]), x[..., None],
      axis=-1)[..., 0].sum(-1)


def _scipy_entropy(name):
  p = {k: np.asarray(v, np.float64) for k, v in PARAMS[name].items()}
  if name == "Normal":
    return stats.norm.entropy(p["loc"], p["scale"]).sum()
  if name == "Laplace":
    return stats.laplace.entropy(p["loc"], p["scale"]).sum()
  if name == "Bernoulli":
    return stats.bernoulli.entropy(sp_special.expit(p["logits"])).sum()
  return stats.entropy(sp_special.softmax(p["logits"], axis=-1), axis=-1).sum()


@pytest.mark.parametrize("name", NAMES)
def test_sample_shapes_and_dtypes(name):
  """Shapes via jax.eval_shape (no compilation), dtypes on real samples."""
  dist, params = DIST[name], PARAMS[name]
  event = dist.event_shape(params)
  key = jax.random.key(0)
  for shape, expected in [((), event), ((5,), (5,) + event),
                          ((2, 5), (2, 5) + event), (5, (5,) + event)]:
    out = jax.eval_shape(lambda p, k, s=shape: dist.sample(p, k, s), params,
                         key)
    assert out.shape == expected, (shape, out.shape)
  x = _samples(name)
  assert x.shape == (N,) + event
  assert x.dtype == (np.float32 if dist.reparameterized else np.int32)


@pytest.mark.parametrize("name", NAMES)
def test_transform_of_noise_has_the_scipy_law(name):
  """``transform(noise)`` (the reparameterised path the pathwise estimator
  differentiates) draws from the distribution, checked against scipy (not
  against ``sample``): continuous, a Kolmogorov-Smirnov test per coordinate
  at alpha = 1e-4 (6 tests: false alarm < 6e-4); discrete, the class
  frequencies against the probabilities within K_Z Monte Carlo SEs. Then
  ``sample`` is that same path (the API contract, same key)."""
  dist, params = DIST[name], PARAMS[name]
  two_steps = jax.jit(
      lambda p, k: dist.transform(p, dist.noise(p, k, (N,))))
  x = np.asarray(two_steps(params, jax.random.key(7)))  # same key as _samples
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  if name in ("Normal", "Laplace"):
    law = stats.norm if name == "Normal" else stats.laplace
    for j in range(x.shape[-1]):
      pvalue = stats.kstest(x[:, j], law(p["loc"][j], p["scale"][j]).cdf
                            ).pvalue
      assert pvalue > 1e-4, (name, j, pvalue)
  elif name == "Bernoulli":
    assert_mc_close(x.astype(np.float64), sp_special.expit(p["logits"]),
                    k=K_Z)
  else:
    onehot = (x[..., None] == np.arange(p["logits"].shape[-1])).astype(float)
    assert_mc_close(onehot, sp_special.softmax(p["logits"], axis=-1), k=K_Z)
  np.testing.assert_allclose(x, _samples(name), **_tol())


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_matches_scipy(name):
  x = _samples(name)[:64]
  lp = fast(DIST[name].log_prob)(PARAMS[name], x)
  assert lp.shape == (64,)
  np.testing.assert_allclose(lp, _scipy_logpdf(name, x), **_tol())
  # A single sample gives a scalar.
  assert jax.eval_shape(DIST[name].log_prob, PARAMS[name], x[0]).shape == ()


@pytest.mark.parametrize("name", NAMES)
def test_entropy_matches_scipy(name):
  np.testing.assert_allclose(fast(DIST[name].entropy)(PARAMS[name]),
                             _scipy_entropy(name), **_tol())


@pytest.mark.parametrize("name", NAMES)
def test_entropy_matches_monte_carlo(name):
  """H = E[-log q(x)]: MC average of -log_prob over the samples."""
  neg_lp = -np.asarray(fast(DIST[name].log_prob)(PARAMS[name],
                                                 _samples(name)), np.float64)
  _assert_mc(neg_lp.mean(), fast(DIST[name].entropy)(PARAMS[name]),
             neg_lp.std() / np.sqrt(N), f"{name} entropy")


@pytest.mark.parametrize("name", NAMES)
def test_kl_matches_monte_carlo(name):
  """KL(p || q) = E_p[log p(x) - log q(x)], both log_probs checked above."""
  dist, p, q = DIST[name], PARAMS[name], OTHER[name]
  x = _samples(name)
  log_prob, kl = fast(dist.log_prob), fast(dist.kl)
  diff = np.asarray(log_prob(p, x), np.float64) - np.asarray(log_prob(q, x))
  _assert_mc(diff.mean(), kl(p, q), diff.std() / np.sqrt(N), f"{name} KL")
  np.testing.assert_allclose(kl(p, p), 0.0, atol=1e-5)


@pytest.mark.parametrize("name", ["Normal", "Laplace"])
def test_location_scale_moments(name):
  """Mean = loc; variance = scale^2 (Normal) or 2 scale^2 (Laplace).

  SE of the sample variance s^2 is the normal approximation
  sqrt((m4 - s^4) / N), m4 the sample fourth central moment.
  """
  x = _samples(name).astype(np.float64)
  loc, scale = (np.asarray(PARAMS[name][k]) for k in ("loc", "scale"))
  _assert_mc(x.mean(0), loc, x.std(0) / np.sqrt(N), f"{name} mean")
  var = scale**2 * (1.0 if name == "Normal" else 2.0)
  c = x - x.mean(0)
  s2, m4 = (c**2).mean(0), (c**4).mean(0)
  _assert_mc(s2, var, np.sqrt((m4 - s2**2) / N), f"{name} variance")


def test_bernoulli_and_categorical_frequencies():
  """Frequencies match sigmoid / softmax; SE = sqrt(p (1 - p) / N)."""
  p = sp_special.expit(np.asarray(PARAMS["Bernoulli"]["logits"], np.float64))
  freq = _samples("Bernoulli").mean(0)
  _assert_mc(freq, p, np.sqrt(p * (1 - p) / N), "Bernoulli frequency")
  probs = sp_special.softmax(
      np.asarray(PARAMS["Categorical"]["logits"], np.float64), axis=-1)
  x = _samples("Categorical")  # [N, 2]
  onehot = x[..., None] == np.arange(4)  # [N, 2, 4]
  _assert_mc(onehot.mean(0), probs, np.sqrt(probs * (1 - probs) / N),
             "Categorical frequency")


def test_normal_log_prob_gradients_are_the_scores():
  """d/dmu log N = (x-mu)/sigma^2, d/dsigma = ((x-mu)^2 - sigma^2)/sigma^3."""
  params = PARAMS["Normal"]
  x = jnp.array([0.1, 0.2, 0.3])
  g = fast(jax.grad(dists.Normal.log_prob))(params, x)
  mu, s = params["loc"], params["scale"]
  np.testing.assert_allclose(g["loc"], (x - mu) / s**2, **_tol())
  np.testing.assert_allclose(g["scale"], ((x - mu)**2 - s**2) / s**3, **_tol())


def test_scalar_params():
  params = {"loc": jnp.array(1.0), "scale": jnp.array(2.0)}
  assert jax.eval_shape(lambda k: dists.Normal.sample(params, k, (5,)),
                        jax.random.key(0)).shape == (5,)
  x = jnp.array([-1.0, 0.0, 0.5, 3.0])
  np.testing.assert_allclose(fast(dists.Normal.log_prob)(params, x),
                             stats.norm.logpdf(np.asarray(x), 1.0, 2.0),
                             **_tol())
  np.testing.assert_allclose(fast(dists.Normal.kl)(params, params), 0.0,
                             atol=1e-6)


@pytest.mark.parametrize(
    "name,params,match",
    [("missing_key", {"loc": jnp.zeros(3)}, "missing \\['scale'\\]"),
     ("unknown_key", {"loc": jnp.zeros(3), "scale": jnp.ones(3),
                      "log_scale": jnp.zeros(3)}, "unknown \\['log_scale'\\]"),
     ("shape_mismatch", {"loc": jnp.zeros(3), "scale": jnp.ones(2)},
      "equal shapes"),
     ("not_a_dict", (jnp.zeros(3), jnp.ones(3)), "must be a dict")])
def test_bad_normal_params_raise(name, params, match):
  del name
  with pytest.raises(ValueError, match=match):
    dists.Normal.sample(params, jax.random.key(0))
  with pytest.raises(ValueError, match=match):
    dists.Normal.log_prob(params, jnp.zeros(3))
  with pytest.raises(ValueError, match=match):
    dists.Normal.entropy(params)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="event shape"):
    dists.Normal.log_prob(PARAMS["Normal"], jnp.zeros((4, 2)))
  with pytest.raises(ValueError, match="shapes differ"):
    dists.Normal.kl(PARAMS["Normal"], {"loc": jnp.zeros(2),
                                       "scale": jnp.ones(2)})
  with pytest.raises(ValueError, match="class axis"):
    dists.Categorical.entropy({"logits": jnp.array(1.0)})
  with pytest.raises(ValueError, match="missing \\['logits'\\]"):
    dists.Bernoulli.entropy({"probs": jnp.ones(2)})


# ---------------------------------------------------------------------------
# Gamma, Beta, Dirichlet, Poisson, multivariate Normals. Deterministic maths
# against scipy in float64 (tolerance from _TOL); parameters chosen fresh for
# these tests (not the values used while writing the code).

GAM = {"concentration": jnp.array([0.37, 2.9]), "rate": jnp.array([1.3, 0.6])}
BET = {"concentration1": jnp.array([0.45, 3.1]),
       "concentration0": jnp.array([1.7, 0.8])}
DIR = {"concentration": jnp.array([[0.6, 1.9, 3.3], [2.2, 0.9, 1.4]])}
POI = {"rate": jnp.array([0.8, 3.7])}
_L = np.array([[1.1, 0.0, 0.0], [0.4, 0.6, 0.0], [-0.5, 0.3, 1.7]])
MVN = {"loc": jnp.array([0.2, -1.3, 0.7]), "scale_tril": jnp.asarray(_L)}
LOWR = {"loc": jnp.array([0.2, -1.3, 0.7]),
        "cov_factor": jnp.array([[0.8, -0.2], [0.1, 1.1], [0.5, 0.4]]),
        "cov_diag": jnp.array([0.3, 0.9, 0.5])}
_X = {  # evaluation points [2, *event]
    "Gamma": np.array([[0.05, 3.2], [1.4, 7.5]]),
    "Beta": np.array([[0.02, 0.9], [0.6, 0.995]]),
    "Dirichlet": np.array([[[0.1, 0.3, 0.6], [0.5, 0.2, 0.3]],
                           [[0.01, 0.49, 0.5], [0.3, 0.3, 0.4]]]),
    "Poisson": np.array([[0, 5], [3, 1]]),
    "MultivariateNormalTriL": np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 3.0]]),
    "LowRankMultivariateNormal": np.array([[0.0, 0.0, 0.0], [1.0, -2.0,
                                                             3.0]]),
}
NEW = {"Gamma": (dists.Gamma, GAM), "Beta": (dists.Beta, BET),
       "Dirichlet": (dists.Dirichlet, DIR), "Poisson": (dists.Poisson, POI),
       "MultivariateNormalTriL": (dists.MultivariateNormalTriL, MVN),
       "LowRankMultivariateNormal": (dists.LowRankMultivariateNormal, LOWR)}


def _np(params):
  return {k: np.asarray(v, np.float64) for k, v in params.items()}


def _lowrank_cov(p):
  return p["cov_factor"] @ p["cov_factor"].T + np.diag(p["cov_diag"])


def _scipy_new(name, params=None):
  """(frozen-free) scipy oracles: logpdf(x) summed over the event, entropy,
  mean [*E], covariance [D, D]."""
  p = _np(params if params is not None else NEW[name][1])
  if name == "Gamma":
    d = stats.gamma(p["concentration"], scale=1.0 / p["rate"])
    return (lambda x: d.logpdf(x).sum(-1), d.entropy().sum(), d.mean(),
            np.diag(d.var()))
  if name == "Beta":
    d = stats.beta(p["concentration1"], p["concentration0"])
    return (lambda x: d.logpdf(x).sum(-1), d.entropy().sum(), d.mean(),
            np.diag(d.var()))
  if name == "Dirichlet":
    rows = [stats.dirichlet(a) for a in p["concentration"]]
    logpdf = lambda x: sum(r.logpdf(x[:, i].T) for i, r in enumerate(rows))
    cov = np.zeros((6, 6))
    for i, a in enumerate(p["concentration"]):
      cov[3 * i:3 * i + 3, 3 * i:3 * i + 3] = stats.dirichlet.cov(a)
    return (logpdf, sum(r.entropy() for r in rows),
            np.stack([r.mean() for r in rows]), cov)
  if name == "Poisson":
    return (lambda x: stats.poisson.logpmf(x, p["rate"]).sum(-1), None,
            p["rate"], np.diag(p["rate"]))
  cov = (p["scale_tril"] @ p["scale_tril"].T if "scale_tril" in p
         else _lowrank_cov(p))
  d = stats.multivariate_normal(p["loc"], cov)
  return d.logpdf, d.entropy(), p["loc"], cov


@pytest.mark.parametrize("name", list(NEW))
def test_new_log_prob_entropy_moments_match_scipy(name):
  dist, params = NEW[name]
  logpdf, entropy, mean, cov = _scipy_new(name)
  x = _X[name]
  x = jnp.asarray(x, jnp.int32 if name == "Poisson" else jnp.float32)
  lp, m, c, h = fast(lambda p, x: (
      dist.log_prob(p, x), dist.mean(p), dist.covariance(p),
      dist.entropy(p) if entropy is not None else jnp.zeros(())))(params, x)
  np.testing.assert_allclose(lp, logpdf(np.asarray(x)), **_tol())
  if entropy is not None:
    np.testing.assert_allclose(h, entropy, **_tol())
  else:
    with pytest.raises(ValueError, match="no closed-form entropy"):
      dist.entropy(params)
  np.testing.assert_allclose(m, mean, **_tol())
  np.testing.assert_allclose(c, cov, **_tol())


def _kl_quad(logpdf_p, logpdf_q, lo, hi):
  from scipy import integrate
  return integrate.quad(lambda x: np.exp(logpdf_p(x)) *
                        (logpdf_p(x) - logpdf_q(x)), lo, hi, limit=200)[0]


def test_new_kl_against_independent_oracles():
  """Gamma/Beta: quadrature of p log(p/q); Dirichlet with K = 2 equals the
  Beta KL; Poisson: sum over the support; Gaussians: dense float64 formula."""
  gam2 = {"concentration": jnp.array([1.6, 0.8]), "rate": jnp.array([0.7,
                                                                      2.5])}
  p, q = _np(GAM), _np(gam2)
  want = sum(_kl_quad(
      lambda x: stats.gamma.logpdf(x, p["concentration"][i],
                                   scale=1 / p["rate"][i]),
      lambda x: stats.gamma.logpdf(x, q["concentration"][i],
                                   scale=1 / q["rate"][i]), 0, np.inf)
             for i in range(2))
  np.testing.assert_allclose(dists.Gamma.kl(GAM, gam2), want, rtol=1e-4)
  bet2 = {"concentration1": jnp.array([1.2, 1.0]),
          "concentration0": jnp.array([0.9, 2.4])}
  p, q = _np(BET), _np(bet2)
  want_beta = [_kl_quad(
      lambda x: stats.beta.logpdf(x, p["concentration1"][i],
                                  p["concentration0"][i]),
      lambda x: stats.beta.logpdf(x, q["concentration1"][i],
                                  q["concentration0"][i]), 0, 1)
               for i in range(2)]
  np.testing.assert_allclose(dists.Beta.kl(BET, bet2), sum(want_beta),
                             rtol=1e-4)
  dir_p = {"concentration": jnp.stack([BET["concentration1"],
                                       BET["concentration0"]], -1)}
  dir_q = {"concentration": jnp.stack([bet2["concentration1"],
                                       bet2["concentration0"]], -1)}
  np.testing.assert_allclose(dists.Dirichlet.kl(dir_p, dir_q),
                             sum(want_beta), rtol=1e-4)
  k = np.arange(200)[:, None]
  lp = stats.poisson.logpmf(k, [0.8, 3.7])
  lq = stats.poisson.logpmf(k, [2.0, 1.5])
  np.testing.assert_allclose(
      dists.Poisson.kl(POI, {"rate": jnp.array([2.0, 1.5])}),
      np.sum(np.exp(lp) * (lp - lq)), rtol=1e-5)

  def dense_kl(m1, s1, m2, s2):
    s2inv = np.linalg.inv(s2)
    dm = m2 - m1
    return 0.5 * (np.trace(s2inv @ s1) + dm @ s2inv @ dm - len(m1) +
                  np.log(np.linalg.det(s2) / np.linalg.det(s1)))

  mvn2 = {"loc": jnp.zeros(3), "scale_tril": jnp.array(
      [[0.7, 0.0, 0.0], [-0.2, 1.5, 0.0], [0.1, 0.4, 0.9]])}
  a, b = _np(MVN), _np(mvn2)
  np.testing.assert_allclose(
      dists.MultivariateNormalTriL.kl(MVN, mvn2),
      dense_kl(a["loc"], a["scale_tril"] @ a["scale_tril"].T, b["loc"],
               b["scale_tril"] @ b["scale_tril"].T), rtol=1e-4)
  lowr2 = dict(LOWR, cov_diag=jnp.array([1.0, 0.2, 0.6]))
  a, b = _np(LOWR), _np(lowr2)
  np.testing.assert_allclose(
      dists.LowRankMultivariateNormal.kl(LOWR, lowr2),
      dense_kl(a["loc"], _lowrank_cov(a), b["loc"], _lowrank_cov(b)),
      rtol=1e-4)


_ALPHAS = np.array([0.37, 2.9, 11.0])


@functools.lru_cache(maxsize=None)
def _gamma_family_run():
  """ONE jit for every sampled check of the new families (compiling JAX's
  Gamma sampler costs seconds per program): samples, z and dz/dalpha of the
  Gamma path ``[A, 16]``, the Gamma rate weak derivatives, and log_prob at
  tiny-concentration samples with those samples."""

  @fast
  def run(params, alphas, key):
    k1, k2, k3 = jax.random.split(key, 3)
    # Gamma, Beta, Dirichlet and Poisson sampling is checked through the
    # unbiasedness of the score-function estimator in estimators_test.py
    # (wrong samples bias it), the Gaussians' here.
    samples = {name: NEW[name][0].sample(params[name], k1, (N,))
               for name in ("MultivariateNormalTriL",
                            "LowRankMultivariateNormal")}
    tiny = {"Gamma": {"concentration": jnp.full(2, 0.02), "rate": jnp.ones(2)},
            "Beta": {"concentration1": jnp.full(2, 0.02),
                     "concentration0": jnp.full(2, 0.02)},
            "Dirichlet": {"concentration": jnp.full((2, 3), 0.02)}}
    tiny_x = {n: NEW[n][0].sample(p, k1, (1000,)) for n, p in tiny.items()}
    tiny_lp = {n: NEW[n][0].log_prob(p, tiny_x[n]) for n, p in tiny.items()}
    sample = lambda a, k: dists.Gamma.transform(
        {"concentration": a, "rate": jnp.ones(())}, k)
    per_key = jax.vmap(jax.value_and_grad(sample), in_axes=(None, 0))
    path = jax.vmap(per_key, in_axes=(0, None))(
        alphas, jax.random.split(k2, 16))
    weak = [dists.Gamma.weak_derivative(params["Gamma"], k3, (N,), c)["rate"]
            for c in (True, False)]
    return samples, path, weak, tiny_lp, tiny_x

  return jax.tree.map(np.asarray, run({n: NEW[n][1] for n in NEW},
                                      jnp.asarray(_ALPHAS, jnp.float32),
                                      jax.random.key(3)))


def test_new_samples_shapes_and_moments():
  """Sample means within K_Z * SE of the scipy means."""
  samples = _gamma_family_run()[0]
  for name in samples:
    x = np.asarray(samples[name], np.float64)
    _, _, mean, cov = _scipy_new(name)
    assert x.shape == (N,) + mean.shape, name
    se = np.sqrt(np.diag(cov)).reshape(mean.shape) / np.sqrt(N)
    _assert_mc(x.mean(0), mean, se, f"{name} sample mean")
  assert jax.eval_shape(lambda k: dists.Poisson.sample(POI, k, (3,)),
                        jax.random.key(0)).dtype == jnp.int32


def test_gamma_implicit_gradient_matches_figurnov_formula():
  """dz/dalpha of JAX's Gamma sampler == -(dF/dalpha)(z) / p(z) (Figurnov et
  al. 2018, eq. 5), dF/dalpha by float64 central differences of the
  regularised incomplete gamma function (scipy), at 16 sampled z for each of
  alpha = 0.37, 2.9, 11. Tolerance: 2e-3 relative (float32 sampler; JAX
  evaluates dF/dalpha by a series, not exactly)."""
  z, dz = _gamma_family_run()[1]
  z = np.asarray(z, np.float64)
  a = _ALPHAS[:, None]
  h = 1e-6 * a
  dfda = (sp_special.gammainc(a + h, z) - sp_special.gammainc(a - h, z)) / (
      2 * h)
  want = -dfda / stats.gamma.pdf(z, a)
  np.testing.assert_allclose(np.asarray(dz), want, rtol=2e-3, atol=1e-6)


def test_gamma_rate_weak_derivative():
  """c [f(x+) - f(x-)] with f = x^2 is unbiased for d/d rate E[x^2] =
  d/db a (a + 1) / b^2 (central finite difference of the closed form), both
  coupled and uncoupled. Coupling lowers the variance of the d/d rate of the
  larger-variance coordinate (concentration 2.9, rate 0.6: exact variances
  unknown in closed form); both use the same key, so a paired test on
  d_i = (g_u,i - mean g_u)^2 - (g_c,i - mean g_c)^2, whose mean is
  Var_u - Var_c: mean(d) > K_Z * SE(d). (Coordinate 0, concentration 0.37:
  the difference is 3 SE at N = 20000, not established; not asserted.)"""
  a, b, h = _np(GAM)["concentration"], _np(GAM)["rate"], 1e-6
  moment = lambda b: a * (a + 1) / b**2
  exact = (moment(b + h) - moment(b - h)) / (2 * h)
  variances = []
  for wd, what in zip(_gamma_family_run()[2],
                      ("coupled", "uncoupled")):
    g = (np.asarray(wd.constant, np.float64) *
         (np.asarray(wd.positive, np.float64)**2 -
          np.asarray(wd.negative, np.float64)**2))
    _assert_mc(g.mean(0), exact, g.std(0) / np.sqrt(N), f"Gamma rate {what}")
    variances.append((g - g.mean(0))**2)
  d = variances[1] - variances[0]
  z = d.mean(0) / (d.std(0, ddof=1) / np.sqrt(N))
  assert z[1] > K_Z, (variances[0].mean(0), variances[1].mean(0), z)


def test_tiny_concentrations_give_the_scipy_log_prob():
  """alpha = 0.02: float32 Gamma draws underflow to 0 (P(z < 1e-38) ~ 0.17)
  and Beta/Dirichlet draws round to 0 or 1; clipping into the support keeps
  log_prob (hence score-function estimates) finite -- and equal to the
  float64 scipy density at the same (clipped) points. Tolerance: float32
  sums a few terms of size up to |(a - 1) log x| ~ 86, each a few roundings
  (log, lgamma): 64 ulps of float32 times the sum of the terms' magnitudes."""
  eps32 = float(np.finfo(np.float32).eps)
  lps, xs = _gamma_family_run()[3], _gamma_family_run()[4]
  for name, lp in lps.items():
    assert lp.shape == (1000,), name
    x = np.asarray(xs[name], np.float64)
    assert np.all(x > 0) and np.all(x < (np.inf if name == "Gamma" else 1))
    a = 0.02
    if name == "Gamma":
      terms = [(a - 1) * np.log(x), -x, np.full_like(x, -sp_special.gammaln(a))]
      want = stats.gamma.logpdf(x, a).sum(-1)
    elif name == "Beta":
      terms = [(a - 1) * np.log(x), (a - 1) * np.log1p(-x),
               np.full_like(x, -sp_special.betaln(a, a))]
      want = stats.beta.logpdf(x, a, a).sum(-1)
    else:  # scipy's dirichlet rejects float32 simplex rounding: by gammaln
      terms = [(a - 1) * np.log(x),
               np.full_like(x, sp_special.gammaln(3 * a) / 3
                            - sp_special.gammaln(a))]
      want = np.sum(terms[0] + terms[1], axis=(-2, -1))
    scale = sum(np.abs(t).sum(axis=tuple(range(1, t.ndim))) for t in terms)
    assert np.all(np.abs(lp - want) <= 64 * eps32 * scale), (
        name, np.max(np.abs(lp - want) / scale))


def test_bernoulli_entropy_is_stable_for_large_logits():
  logits = np.array([15.0, -15.0, 30.0, 0.3])
  p = sp_special.expit(logits)
  q = sp_special.expit(-logits)
  want = -(p * np.log(p) + q * np.log(q))
  for i, l in enumerate(logits):
    np.testing.assert_allclose(
        dists.Bernoulli.entropy({"logits": jnp.float32(l)}), want[i],
        rtol=1e-4)  # float32 exp/log1p at 1e-13: ~1e-5 (the old form: 0.16)


@pytest.mark.parametrize(
    "name,dist,params,match",
    [("gamma_concentration", dists.Gamma,
      {"concentration": jnp.array([0.0, 1.0]), "rate": jnp.ones(2)},
      "Gamma concentration must be > 0"),
     ("gamma_rate", dists.Gamma,
      {"concentration": jnp.ones(2), "rate": jnp.array([1.0, -2.0])},
      "Gamma rate must be > 0"),
     ("beta_concentration0", dists.Beta,
      {"concentration1": jnp.ones(2), "concentration0": jnp.array([1., 0.])},
      "Beta concentration0 must be > 0"),
     ("dirichlet_concentration", dists.Dirichlet,
      {"concentration": jnp.array([1.0, -0.5, 2.0])},
      "Dirichlet concentration must be > 0"),
     ("dirichlet_no_simplex", dists.Dirichlet,
      {"concentration": jnp.array([[1.0], [2.0]])}, "simplex"),
     ("poisson_rate", dists.Poisson, {"rate": jnp.array([0.0])},
      "Poisson rate must be > 0"),
     ("tril_diagonal", dists.MultivariateNormalTriL,
      {"loc": jnp.zeros(2), "scale_tril": jnp.array([[1.0, 0.], [1., 0.]])},
      "scale_tril diagonal must be > 0"),
     ("tril_shape", dists.MultivariateNormalTriL,
      {"loc": jnp.zeros(2), "scale_tril": jnp.eye(3)}, "scale_tril \\[D, D\\]"),
     ("lowrank_diag", dists.LowRankMultivariateNormal,
      {"loc": jnp.zeros(2), "cov_factor": jnp.ones((2, 1)),
       "cov_diag": jnp.array([1.0, -1.0])}, "cov_diag must be > 0")])
def test_new_bad_params_raise(name, dist, params, match):
  del name
  with pytest.raises(ValueError, match=match):
    dist.event_shape(params)


def test_invalid_params_under_jit_give_nan():
  """Traced values cannot raise: samples, log_prob, entropy come out NaN."""
  bad_gamma = {"concentration": jnp.array([2.0, -1.0]), "rate": jnp.ones(2)}
  bad_normal = {"loc": jnp.zeros(2), "scale": jnp.array([1.0, -1.0])}
  out = fast(lambda g, n, k: (
      dists.Gamma.sample(g, k, (3,)), dists.Gamma.log_prob(g, jnp.ones(2)),
      dists.Normal.sample(n, k, (3,)), dists.Normal.entropy(n),
      dists.Normal.kl(n, n)))(bad_gamma, bad_normal, jax.random.key(0))
  for a in out:
    assert np.all(np.isnan(np.asarray(a)))
  ok = fast(lambda n: dists.Normal.entropy(n))(
      {"loc": jnp.zeros(2), "scale": jnp.ones(2)})
  assert np.isfinite(ok)


def test_capabilities_are_data():
  assert dists.Gamma.reparameterized and dists.Gamma.implicit_reparameterized
  assert dists.Dirichlet.implicit_reparameterized
  assert dists.Normal.reparameterized
  assert not dists.Normal.implicit_reparameterized
  assert not dists.Poisson.reparameterized
  assert dists.Gamma.weak_derivative_params == ("rate",)
  assert dists.Categorical.weak_derivative is None
  assert dists.Categorical.mean is None


@pytest.mark.parametrize("shape", [(7,), (3, 5), (1, 3, 5), (2, 4), (), (0,)])
@pytest.mark.parametrize("impl", ["threefry2x32", "rbg", "raw"])
def test_standard_normal_definition(shape, impl):
  """Even counts and non-threefry generators: exactly jax.random.normal; odd
  counts under threefry: n - 1 values from fold_in(key, 0), one from
  fold_in(key, 1) (the documented definition); also under jit and vmap."""
  key = (jax.random.PRNGKey(3) if impl == "raw"
         else jax.random.key(3, impl=impl))

  def want_fn(k):
    n = int(np.prod(shape))
    if n % 2 == 0 or impl == "rbg":
      return jax.random.normal(k, shape, jnp.float32)
    return jnp.concatenate([
        jax.random.normal(jax.random.fold_in(k, 0), (n - 1,)),
        jax.random.normal(jax.random.fold_in(k, 1), (1,))]).reshape(shape)

  got = dists.standard_normal(key, shape, jnp.float32)
  want = want_fn(key)
  assert got.shape == tuple(shape) and got.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  keys = jax.random.split(key, 3)
  np.testing.assert_array_equal(
      np.asarray(jax.jit(jax.vmap(
          lambda k: dists.standard_normal(k, shape)))(keys)),
      np.asarray(jax.vmap(want_fn)(keys)))


def test_standard_normal_odd_count_is_standard_normal():
  """An odd draw has the N(0, 1) law: KS test (alpha 1e-4) on 20,001 values,
  and the last value (from its own key) is N(0, 1) over 2,001 keys."""
  from scipy import stats
  x = np.asarray(dists.standard_normal(jax.random.key(0), (20001,)))
  assert stats.kstest(x, "norm").pvalue > 1e-4
  keys = jax.random.split(jax.random.key(1), 2001)
  last = np.asarray(jax.vmap(lambda k: dists.standard_normal(k, (3,))[-1])(
      keys))
  assert stats.kstest(last, "norm").pvalue > 1e-4
