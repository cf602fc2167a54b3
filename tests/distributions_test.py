"""Tests for jaxbdl.distributions against scipy oracles and Monte Carlo.

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

from jaxbdl import distributions as dists

K_Z = 4.5
# XLA's LLVM optimisation dominates CPU compile time (4x); these tiny test
# programs run in milliseconds either way. Per-function, no global effect.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
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
  """jit with FAST_COMPILE: one cheap compile instead of op-by-op dispatch."""
  return jax.jit(fn, compiler_options=FAST_COMPILE)


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
  sample = jax.jit(lambda p, k: DIST[name].sample(p, k, (N,)),
                   compiler_options=FAST_COMPILE)
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
def test_sample_equals_transform_of_noise(name):
  dist, params = DIST[name], PARAMS[name]
  two_steps = jax.jit(
      lambda p, k: dist.transform(p, dist.noise(p, k, (N,))),
      compiler_options=FAST_COMPILE)
  x = np.asarray(two_steps(params, jax.random.key(7)))  # same key as _samples
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
