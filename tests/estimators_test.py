"""Statistical and contract tests for jaxbdl.gradients.estimators.

Monte Carlo checks assert |estimate - exact| < K_Z * SE (+ a float32 floor
``_F32_ATOL * (1 + |exact|)`` for estimators that are exact up to rounding),
with SE computed from the same draws. K_Z = 4.5: this file makes about 150
such checks; P(|Z| > 4.5) = 6.8e-6 per check, so by Bonferroni the chance any
fails by luck is below 150 * 6.8e-6 = 1e-3.

Compile time dominates on CPU, so every statistical test reads from a few
module-level jitted functions (one per parameter shape) that evaluate all
estimators at once; the test function ``f`` is selected by traced arguments
(``fid``, ``k``), so new cases reuse the compiled code.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from numpy.polynomial import polynomial as P

from jaxbdl.gradients import distributions as dists
from jaxbdl.gradients import estimators as ests

K_Z = 4.5
_F32_ATOL = 1e-4
N_SCALAR = 20000  # keys for the scalar case (one sample each)
N_VECTOR = 4000   # keys for the vector and discrete cases
BASE = (ests.pathwise, ests.score_function, ests.measure_valued)

SCALAR_PARAMS = {"loc": jnp.array(0.5), "scale": jnp.array(0.8)}
VECTOR_PARAMS = {"loc": jnp.array([0.5, -1.0, 2.0]),
                 "scale": jnp.array([0.5, 1.0, 2.0])}
# (name, fid, k): fid 0 is f(x) = sum (x - k)^2, fid 1 is sum exp(-k x^2).
CASES = [("square", 0, 0.0), ("shifted_square", 0, 1.5),
         ("gaussian_bump", 1, 0.5)]


_TRACES = {"f": 0}  # counts Python calls of _f, i.e. traces


def _f(x, fid, k):
  """The test functions, chosen by a traced index (one compilation)."""
  _TRACES["f"] += 1
  return jax.lax.switch(fid, [lambda x: jnp.sum(jnp.square(x - k)),
                              lambda x: jnp.sum(jnp.exp(-k * jnp.square(x)))],
                        x)


_, _UNRAVEL = ravel_pytree({"a": jnp.zeros(1), "b": jnp.zeros(2)})


def _f_on_dict(x, fid, k):
  """The same f, written for a dict of arrays, wrapped to take a flat [3] x."""
  tree = _UNRAVEL(x)
  return _f(tree["a"], fid, k) + _f(tree["b"], fid, k)


def exact_expectation(params, fid, k):
  """E_{N(mu, sigma^2)}[f], coordinate-wise closed forms, summed.

  E[(x - k)^2] = (mu - k)^2 + sigma^2;
  E[exp(-k x^2)] = (1 + 2 k sigma^2)^(-1/2) exp(-k mu^2 / (1 + 2 k sigma^2)).
  """
  mu, s = params["loc"], params["scale"]
  if fid == 0:
    return jnp.sum(jnp.square(mu - k) + jnp.square(s))
  v = 1.0 + 2.0 * k * jnp.square(s)
  return jnp.sum(v**-0.5 * jnp.exp(-k * jnp.square(mu) / v))


def exact_grad(params, fid, k):
  return jax.tree.map(np.asarray, jax.grad(exact_expectation)(params, fid, k))


@jax.jit
def _scalar_estimates(params, keys, fid, k):
  """{estimator name: single-sample estimates [n_keys] per param}."""
  f = lambda x: _f(x, fid, k)
  return {e.name: jax.vmap(e(f, dists.Normal), in_axes=(None, 0, None))(
      params, keys, 1) for e in BASE}


@jax.jit
def _vector_estimates(params, keys, fid, k):
  f = lambda x: _f_on_dict(x, fid, k)
  return {e.name: jax.vmap(e(f, dists.Normal), in_axes=(None, 0, None))(
      params, keys, 1) for e in BASE}


@functools.lru_cache(maxsize=None)
def scalar_run(fid, k, seed=0):
  keys = jax.random.split(jax.random.key(seed), N_SCALAR)
  return jax.tree.map(np.asarray, _scalar_estimates(SCALAR_PARAMS, keys, fid,
                                                    k))


@functools.lru_cache(maxsize=None)
def vector_run(fid, k):
  keys = jax.random.split(jax.random.key(1), N_VECTOR)
  return jax.tree.map(np.asarray, _vector_estimates(VECTOR_PARAMS, keys, fid,
                                                    k))


def assert_unbiased(draws, exact, what):
  """|mean - exact| < K_Z * std / sqrt(n) + float32 floor, per element."""
  for leaf in draws:
    g = np.asarray(draws[leaf], np.float64)
    mean, se = g.mean(0), g.std(0) / math.sqrt(g.shape[0])
    bound = K_Z * se + _F32_ATOL * (1.0 + np.abs(exact[leaf]))
    err = np.abs(mean - exact[leaf])
    assert np.all(err < bound), (f"{what} d/d{leaf}: mean {mean} vs exact "
                                 f"{exact[leaf]} (SE {se}, K_Z {K_Z})")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("estimator", BASE, ids=[e.name for e in BASE])
def test_unbiased_scalar(estimator, case):
  _, fid, k = case
  assert_unbiased(scalar_run(fid, k)[estimator.name],
                  exact_grad(SCALAR_PARAMS, fid, k),
                  f"{estimator.name} scalar {case[0]}")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("estimator", BASE, ids=[e.name for e in BASE])
def test_unbiased_vector_with_dict_f(estimator, case):
  """loc, scale of shape [3]; f is defined on a dict {a: [1], b: [2]}."""
  _, fid, k = case
  draws = vector_run(fid, k)[estimator.name]
  assert draws["loc"].shape == (N_VECTOR, 3)
  assert_unbiased(draws, exact_grad(VECTOR_PARAMS, fid, k),
                  f"{estimator.name} vector {case[0]}")


# ---------------------------------------------------------------------------
# Single-sample variances for f(x) = (x - k)^2, x = mu + sigma eps.


def _gauss_moment(n):
  """E[eps^n] for eps ~ N(0, 1): 0 for odd n, (n - 1)!! for even n."""
  return 0.0 if n % 2 else float(np.prod(np.arange(n - 1, 0, -2)))


def _mean_var_of_poly(c):
  """Mean and variance of the polynomial sum_i c_i eps^i, eps ~ N(0, 1)."""
  moment = lambda p: sum(ci * _gauss_moment(i) for i, ci in enumerate(p))
  m = moment(c)
  return m, moment(P.polymul(c, c)) - m * m


def exact_variances(mu, sigma, k):
  r"""Single-sample variances of each estimator for f(x) = (x - k)^2.

  With a = mu - k and x - k = a + sigma eps, every pathwise and score-function
  estimate is a polynomial in eps; its variance is E[p^2] - E[p]^2 with the
  Gaussian moments E[eps^n] = (n - 1)!! (n even):

  * pathwise d/dmu    = f'(x)            = 2 (a + sigma eps)       -> 4 sigma^2
  * pathwise d/dsigma = f'(x) eps        = 2 a eps + 2 sigma eps^2
                        -> 4 a^2 + 8 sigma^2
  * score d/dmu       = f(x) eps / sigma = (a + sigma eps)^2 eps / sigma
                        -> (a^4 + 18 a^2 sigma^2 + 15 sigma^4) / sigma^2 - 4 a^2
  * score d/dsigma    = f(x) (eps^2 - 1) / sigma
                        -> (2 a^4 + 60 a^2 sigma^2 + 78 sigma^4) / sigma^2
                           - 4 sigma^2

  Measure-valued (W ~ Rayleigh(1): E W = sqrt(pi/2), E W^2 = 2; M double-sided
  Maxwell: E M^2 = 3, E M^3 = 0, E M^4 = 15; U ~ U(0, 1)):

  * d/dmu    = [f(mu + sigma W) - f(mu - sigma W)] / (sqrt(2 pi) sigma)
             = 4 a W / sqrt(2 pi)  -> 16 a^2 (2 - pi/2) / (2 pi)
  * d/dsigma = [f(mu + sigma M) - f(mu + sigma U M)] / sigma
             = 2 a M (1 - U) + sigma M^2 (1 - U^2);
    E[g^2] = 4 a^2 * 3 * E(1-U)^2 + sigma^2 * 15 * E(1-U^2)^2
           = 4 a^2 + 8 sigma^2 (E(1-U)^2 = 1/3, E(1-U^2)^2 = 8/15),
    E g = 2 sigma
             -> 4 a^2 + 4 sigma^2.

  The polynomial means are also returned, to check the algebra against the
  exact gradient (2a, 2 sigma).
  """
  a, s = mu - k, sigma
  polys = {
      ("pathwise", "loc"): [2 * a, 2 * s],
      ("pathwise", "scale"): [0.0, 2 * a, 2 * s],
      ("score_function", "loc"): [0.0, a * a / s, 2 * a, s],
      ("score_function", "scale"): P.polymul([a * a, 2 * a * s, s * s],
                                             [-1.0, 0.0, 1.0]) / s,
  }
  out = {key: _mean_var_of_poly(c) for key, c in polys.items()}
  out[("measure_valued", "loc")] = (
      2 * a, 16 * a * a * (2 - math.pi / 2) / (2 * math.pi))
  out[("measure_valued", "scale")] = (2 * s, 4 * a * a + 4 * s * s)
  return out


def test_exact_variance_formulas_match_closed_forms():
  """The polynomial algebra reproduces the hand-derived formulas above."""
  mu, s, k = 0.5, 0.8, 1.5
  a = mu - k
  v = exact_variances(mu, s, k)
  np.testing.assert_allclose(v[("pathwise", "loc")], (2 * a, 4 * s * s))
  np.testing.assert_allclose(v[("pathwise", "scale")],
                             (2 * s, 4 * a * a + 8 * s * s))
  np.testing.assert_allclose(
      v[("score_function", "loc")],
      (2 * a, (a**4 + 18 * a * a * s * s + 15 * s**4) / s**2 - 4 * a * a))
  np.testing.assert_allclose(
      v[("score_function", "scale")],
      (2 * s, (2 * a**4 + 60 * a * a * s * s + 78 * s**4) / s**2 - 4 * s * s))


@pytest.mark.parametrize("k", [0.0, 1.5], ids=["square", "shifted_square"])
@pytest.mark.parametrize("estimator", BASE, ids=[e.name for e in BASE])
def test_single_sample_variance_matches_closed_form(estimator, k):
  """|s^2 - Var| < K_Z * SE(s^2), SE(s^2) ~= sqrt((m4 - s^4) / n).

  The normal approximation of the sample variance uses the sample fourth
  central moment m4 (valid for non-Gaussian estimates: CLT for the mean of
  (g - mean)^2); n = 20000.
  """
  draws = scalar_run(0, k)[estimator.name]
  mu, s = float(SCALAR_PARAMS["loc"]), float(SCALAR_PARAMS["scale"])
  exact = exact_variances(mu, s, k)
  for leaf in ("loc", "scale"):
    g = np.asarray(draws[leaf], np.float64)
    c = g - g.mean()
    s2, m4 = np.mean(c**2), np.mean(c**4)
    se = math.sqrt(max(m4 - s2 * s2, 0.0) / g.shape[0])
    mean_exact, var_exact = exact[(estimator.name, leaf)]
    np.testing.assert_allclose(mean_exact,
                               exact_grad(SCALAR_PARAMS, 0, k)[leaf],
                               rtol=1e-6, atol=1e-6)
    assert abs(s2 - var_exact) < K_Z * se, (
        f"{estimator.name} d/d{leaf}: sample var {s2} vs exact {var_exact} "
        f"(SE {se})")


def test_pathwise_beats_score_function_on_the_quadratic():
  """Sanity of the ordering Mohamed et al. (2020) report: for a smooth f the
  pathwise estimate is far less noisy than the score function's."""
  v = exact_variances(0.5, 0.8, 1.5)
  for leaf in ("loc", "scale"):
    assert v[("pathwise", leaf)][1] < 0.5 * v[("score_function", leaf)][1]


# ---------------------------------------------------------------------------
# Contract: determinism, jit, vmap, retracing, shapes, surrogates, errors.


def test_same_key_same_estimate_and_keys_differ():
  keys = jax.random.split(jax.random.key(0), N_SCALAR)
  a = _scalar_estimates(SCALAR_PARAMS, keys, 0, 0.0)
  b = _scalar_estimates(SCALAR_PARAMS, keys, 0, 0.0)
  chex_equal = jax.tree.map(lambda x, y: np.array_equal(x, y), a, b)
  assert all(jax.tree.leaves(chex_equal))
  for name in a:  # different keys give different estimates
    assert np.unique(np.asarray(a[name]["loc"])).size > N_SCALAR // 2


def test_second_call_does_not_retrace():
  """New keys, a new f (fid, k) and a new seed reuse the compiled function:
  _f, which only runs while tracing, is not called again."""
  scalar_run(0, 0.0)
  traces = _TRACES["f"]
  scalar_run(1, 0.25, seed=3)
  scalar_run(0, 2.0, seed=4)
  assert _TRACES["f"] == traces


@pytest.mark.parametrize("estimator", BASE, ids=[e.name for e in BASE])
def test_jit_and_no_jit_agree(estimator):
  """For key i: jax.jit(grad_fn, static_argnums=2) == the vmapped run's row i
  == an eager call (eager skipped for measure-valued: op-by-op dispatch costs
  ~5 s of compiles)."""
  keys = jax.random.split(jax.random.key(0), N_SCALAR)
  grad_fn = estimator(lambda x: _f(x, 0, 1.5), dists.Normal)
  vmapped = scalar_run(0, 1.5)[estimator.name]
  jitted = jax.jit(grad_fn, static_argnums=2)(
      SCALAR_PARAMS, keys[3], 1)
  results = [jitted]
  if estimator is not ests.measure_valued:
    results.append(grad_fn(SCALAR_PARAMS, keys[3], 1))
  for result in results:
    for leaf in ("loc", "scale"):
      np.testing.assert_allclose(result[leaf], vmapped[leaf][3], rtol=1e-5,
                                 atol=1e-5)


@pytest.mark.parametrize("estimator", BASE, ids=[e.name for e in BASE])
def test_output_structure_for_matrix_params(estimator):
  """grads mirror params (here loc/scale [2, 3]) in every form; no compile."""
  params = {"loc": jnp.zeros((2, 3)), "scale": jnp.ones((2, 3))}
  f = lambda x: jnp.sum(jnp.sin(x))
  key = jax.random.key(0)
  g = jax.eval_shape(lambda p, k: estimator(f, dists.Normal)(p, k, 5),
                     params, key)
  assert {n: a.shape for n, a in g.items()} == {"loc": (2, 3),
                                                "scale": (2, 3)}
  per = jax.eval_shape(
      lambda p, k: ests.per_sample(estimator)(f, dists.Normal)(p, k, 5),
      params, key)
  assert {n: a.shape for n, a in per.items()} == {"loc": (5, 2, 3),
                                                  "scale": (5, 2, 3)}
  keys = jax.random.split(key, 7)
  batched = jax.eval_shape(
      lambda p, ks: jax.vmap(estimator(f, dists.Normal),
                             in_axes=(None, 0, None))(p, ks, 5), params, keys)
  assert batched["scale"].shape == (7, 2, 3)
  loss = jax.eval_shape(
      lambda p, k: ests.surrogate(estimator)(f, dists.Normal)(p, k, 5),
      params, key)
  assert loss.shape == ()


@jax.jit
def _surrogate_check(params, key):
  """Per estimator: (grad of surrogate, estimate, surrogate value, MC mean)."""
  flat, unravel = ravel_pytree({"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)})
  del flat
  f = lambda x: (jnp.sum(jnp.tanh(unravel(x.reshape(-1))["w"])) +
                 jnp.sum(jnp.square(unravel(x.reshape(-1))["b"] - 1.0)))
  mc_mean = jnp.mean(jax.vmap(f)(ests.draw_samples(dists.Normal, params, key,
                                                   3)))
  out = {}
  for e in BASE:
    value, grads = jax.value_and_grad(e.surrogate(f, dists.Normal))(params,
                                                                   key, 3)
    out[e.name] = (grads, e(f, dists.Normal)(params, key, 3), value, mc_mean)
  return out


def test_surrogate_gradient_equals_estimate_and_value_is_mc_mean():
  """loc/scale [2, 3]; f reads them as a dict {w: [2, 2], b: [2]}."""
  params = {"loc": jnp.array([[0.1, -0.2, 0.3], [0.5, 1.0, -1.0]]),
            "scale": jnp.array([[0.5, 1.0, 1.5], [0.3, 0.7, 2.0]])}
  out = _surrogate_check(params, jax.random.key(5))
  for name, (grads, estimate, value, mc_mean) in out.items():
    for leaf in ("loc", "scale"):
      np.testing.assert_allclose(grads[leaf], estimate[leaf], rtol=1e-5,
                                 atol=1e-5, err_msg=f"{name} d/d{leaf}")
    np.testing.assert_allclose(value, mc_mean, rtol=1e-5, atol=1e-5,
                               err_msg=name)


# Discrete distributions and Laplace: score function (and pathwise for Laplace).

BERN = {"logits": jnp.array([-1.0, 0.5, 2.0])}
CAT = {"logits": jnp.array([[0.0, 1.0, -1.0], [2.0, 0.0, 0.5]])}
LAP = {"loc": jnp.array([0.5, -1.0]), "scale": jnp.array([0.5, 1.5])}
_CAT_TABLE = jnp.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])


def _f_bern(x):
  return jnp.square(jnp.sum(x * jnp.array([1.0, 2.0, -3.0])) - 0.5)


def _f_cat(x):
  return _CAT_TABLE[0, x[0]] * _CAT_TABLE[1, x[1]] + _CAT_TABLE[1, x[1]]


def _f_lap(x):
  return jnp.sum(jnp.square(x - 1.0))


def _exact_grad_discrete(dist, params, f, outcomes):
  """grad E f = sum_x f(x) q(x) grad log q(x), by enumeration (numpy).

  Bernoulli: d log q / d l_d = x_d - sigmoid(l_d); Categorical:
  d log q / d l_{e,c} = 1[x_e = c] - softmax(l_e)_c.
  """
  logits = np.asarray(params["logits"], np.float64)
  total = np.zeros_like(logits)
  for x in outcomes:
    if dist is dists.Bernoulli:
      p1 = 1.0 / (1.0 + np.exp(-logits))
      q = np.prod(np.where(x == 1, p1, 1.0 - p1))
      score = x - p1
    else:
      probs = np.exp(logits - logits.max(-1, keepdims=True))
      probs /= probs.sum(-1, keepdims=True)
      q = np.prod(probs[np.arange(len(x)), x])
      score = (np.arange(logits.shape[-1]) == x[:, None]) - probs
    total += float(f(jnp.asarray(x))) * q * score
  return {"logits": total}


def _exact_bern(params):
  outcomes = np.indices((2, 2, 2)).reshape(3, -1).T  # the 8 outcomes
  return _exact_grad_discrete(dists.Bernoulli, params, _f_bern, outcomes)


def _exact_cat(params):
  outcomes = np.indices((3, 3)).reshape(2, -1).T  # the 9 outcomes
  return _exact_grad_discrete(dists.Categorical, params, _f_cat, outcomes)


def _exact_lap(params):
  """E (x - 1)^2 = (m - 1)^2 + 2 b^2 under Laplace(m, b): grads 2(m-1), 4b."""
  return {"loc": 2.0 * (np.asarray(params["loc"]) - 1.0),
          "scale": 4.0 * np.asarray(params["scale"])}


@functools.lru_cache(maxsize=None)
def _other_runs():

  @jax.jit
  def run(keys):
    est = lambda e, f, d, p: jax.vmap(e(f, d), in_axes=(None, 0, None))(
        p, keys, 1)
    return {
        "bernoulli_score": est(ests.score_function, _f_bern, dists.Bernoulli,
                               BERN),
        "categorical_score": est(ests.score_function, _f_cat,
                                 dists.Categorical, CAT),
        "laplace_score": est(ests.score_function, _f_lap, dists.Laplace, LAP),
        "laplace_pathwise": est(ests.pathwise, _f_lap, dists.Laplace, LAP),
    }

  keys = jax.random.split(jax.random.key(11), N_VECTOR)
  return jax.tree.map(np.asarray, run(keys))


@pytest.mark.parametrize(
    "name,exact_fn,params",
    [("bernoulli_score", _exact_bern, BERN),
     ("categorical_score", _exact_cat, CAT),
     ("laplace_score", _exact_lap, LAP),
     ("laplace_pathwise", _exact_lap, LAP)])
def test_unbiased_other_distributions(name, exact_fn, params):
  assert_unbiased(_other_runs()[name], exact_fn(params), name)


# Errors at the boundary (trace time: jax.eval_shape compiles nothing).

_KEY = jax.random.key(0)
_F = lambda x: jnp.sum(jnp.square(x))


def _trace(grad_fn, params, num_samples):
  return jax.eval_shape(lambda p, k: grad_fn(p, k, num_samples), params, _KEY)


@pytest.mark.parametrize("num_samples", [0, -2, 1.5, True, "3"],
                         ids=["zero", "negative", "float", "bool", "str"])
@pytest.mark.parametrize("estimator", BASE, ids=[e.name for e in BASE])
def test_bad_num_samples_raise(estimator, num_samples):
  with pytest.raises(ValueError, match="num_samples"):
    _trace(estimator(_F, dists.Normal), VECTOR_PARAMS, num_samples)


def test_traced_num_samples_raises():
  grad_fn = ests.pathwise(_F, dists.Normal)
  with pytest.raises(ValueError, match="static"):
    jax.jit(grad_fn)(VECTOR_PARAMS, _KEY, 2)


def test_numpy_int_num_samples_ok():
  out = _trace(ests.score_function(_F, dists.Normal), VECTOR_PARAMS,
               np.int64(4))
  assert out["loc"].shape == (3,)


def test_unsupported_distributions_raise():
  with pytest.raises(ValueError, match="reparameterised"):
    ests.pathwise(_F, dists.Bernoulli)
  with pytest.raises(ValueError, match="Laplace has none .*score_function"):
    ests.measure_valued(_F, dists.Laplace)
  with pytest.raises(ValueError, match="Distribution"):
    ests.score_function(_F, "Normal")
  with pytest.raises(ValueError, match="Estimator"):
    ests.surrogate(ests.pathwise(_F, dists.Normal))


@pytest.mark.parametrize("estimator", BASE, ids=[e.name for e in BASE])
def test_non_scalar_f_and_bad_params_raise(estimator):
  with pytest.raises(ValueError, match="scalar"):
    _trace(estimator(lambda x: x, dists.Normal), VECTOR_PARAMS, 2)
  with pytest.raises(ValueError, match="missing \\['scale'\\]"):
    _trace(estimator(_F, dists.Normal), {"loc": jnp.zeros(3)}, 2)
  with pytest.raises(ValueError, match="equal shapes"):
    _trace(estimator(_F, dists.Normal),
           {"loc": jnp.zeros(3), "scale": jnp.ones(2)}, 2)


# ---------------------------------------------------------------------------
# New families: implicit reparameterisation (Gamma, Beta, Dirichlet), the
# multivariate Normals, and measure-valued estimators beyond the Normal.
# Exact gradients are float64 central finite differences of closed-form
# expectations; parameters were picked fresh for these tests (not the values
# used while writing the code). Same K_Z; about 60 more checks, so the
# Bonferroni bound of the file becomes 210 * 6.8e-6 < 1.5e-3.

GAM = {"concentration": jnp.array([0.43, 3.6]), "rate": jnp.array([0.9, 2.2])}
BET = {"concentration1": jnp.array([0.55, 2.7]),
       "concentration0": jnp.array([1.9, 0.65])}
DIR = {"concentration": jnp.array([[0.7, 2.4, 1.3], [3.1, 0.8, 1.6]])}
_DIR_W = jnp.array([[1.0, -2.0, 3.0], [0.5, 2.0, -1.0]])
POI = {"rate": jnp.array([0.6, 4.3])}
MVN = {"loc": jnp.array([0.3, -0.8]),
       "scale_tril": jnp.array([[0.9, 0.0], [0.4, 1.3]])}
LOWR = {"loc": jnp.array([0.3, -0.8, 1.1]),
        "cov_factor": jnp.array([[0.6], [-0.3], [0.9]]),
        "cov_diag": jnp.array([0.4, 1.2, 0.7])}

_f_sq1 = lambda x: jnp.sum(jnp.square(x - 1.0))
_f_beta = lambda x: jnp.sum(jnp.square(x - 0.3))
_f_dir = lambda x: jnp.sum(_DIR_W * jnp.square(x))
_f_poi = lambda x: jnp.sum(jnp.square(x.astype(jnp.float32) - 2.0))
_FAMILY_RUNS = {  # name: (estimator, dist, f, params)
    "gamma_pathwise": (ests.pathwise, dists.Gamma, _f_sq1, GAM),
    "gamma_score": (ests.score_function, dists.Gamma, _f_sq1, GAM),
    "beta_pathwise": (ests.pathwise, dists.Beta, _f_beta, BET),
    "beta_score": (ests.score_function, dists.Beta, _f_beta, BET),
    "dirichlet_pathwise": (ests.pathwise, dists.Dirichlet, _f_dir, DIR),
    "dirichlet_score": (ests.score_function, dists.Dirichlet, _f_dir, DIR),
    "mvn_pathwise": (ests.pathwise, dists.MultivariateNormalTriL, _f_sq1,
                     MVN),
    "mvn_score": (ests.score_function, dists.MultivariateNormalTriL, _f_sq1,
                  MVN),
    "lowrank_pathwise": (ests.pathwise, dists.LowRankMultivariateNormal,
                         _f_sq1, LOWR),
    "poisson_score": (ests.score_function, dists.Poisson, _f_poi, POI),
    "poisson_mvd": (ests.measure_valued, dists.Poisson, _f_poi, POI),
    "poisson_mvd_uncoupled": (ests.measure_valued_uncoupled, dists.Poisson,
                              _f_poi, POI),
    "bernoulli_mvd": (ests.measure_valued, dists.Bernoulli, _f_bern, BERN),
    "bernoulli_mvd_uncoupled": (ests.measure_valued_uncoupled,
                                dists.Bernoulli, _f_bern, BERN),
}


def _np64(params):
  return {k: np.asarray(v, np.float64) for k, v in params.items()}


def _expectations(name, p):
  """Closed-form E_q[f] in float64 numpy for each family's test f."""
  if name.startswith("gamma"):
    a, b = p["concentration"], p["rate"]
    return np.sum(a * (a + 1) / b**2 - 2 * a / b + 1)
  if name.startswith("beta"):
    a, b = p["concentration1"], p["concentration0"]
    n = a + b
    return np.sum(a * (a + 1) / (n * (n + 1)) - 0.6 * a / n + 0.09)
  if name.startswith("dirichlet"):
    a = p["concentration"]
    a0 = a.sum(-1, keepdims=True)
    return np.sum(np.asarray(_DIR_W) * a * (a + 1) / (a0 * (a0 + 1)))
  if name.startswith("mvn"):
    l = np.tril(p["scale_tril"])
    return np.sum((p["loc"] - 1) ** 2) + np.trace(l @ l.T)
  if name.startswith("lowrank"):
    return (np.sum((p["loc"] - 1) ** 2) + np.sum(p["cov_factor"] ** 2) +
            np.sum(p["cov_diag"]))
  if name.startswith("poisson"):
    lam = p["rate"]
    return np.sum(lam + (lam - 2.0) ** 2)
  raise KeyError(name)


def _fd_grad(name, params):
  """Central finite differences (h = 1e-6 relative) of the closed form."""
  if name.startswith("bernoulli"):
    return _exact_bern(params)
  p = _np64(params)
  out = {}
  for leaf, v in p.items():
    g = np.zeros_like(v)
    for i in np.ndindex(v.shape):
      h = 1e-6 * max(1.0, abs(v[i]))
      up, dn = dict(p), dict(p)
      up[leaf], dn[leaf] = v.copy(), v.copy()
      up[leaf][i] += h
      dn[leaf][i] -= h
      g[i] = (_expectations(name, up) - _expectations(name, dn)) / (2 * h)
    out[leaf] = g
  return out


@functools.lru_cache(maxsize=None)
def _family_runs():
  """ONE jit for all (compiling JAX's Gamma sampler costs seconds each)."""

  @jax.jit
  def run(keys):
    return {name: jax.vmap(e(f, d), in_axes=(None, 0, None))(p, keys, 1)
            for name, (e, d, f, p) in _FAMILY_RUNS.items()}

  return jax.tree.map(np.asarray, run(jax.random.split(jax.random.key(23),
                                                       N_VECTOR)))


@pytest.mark.parametrize("name", list(_FAMILY_RUNS))
def test_unbiased_new_families(name):
  params = _FAMILY_RUNS[name][3]
  draws = _family_runs()[name]
  assert set(draws) == set(params)
  assert_unbiased(draws, _fd_grad(name, params), name)


def test_coupling_lowers_poisson_mvd_variance():
  """Coupled and uncoupled measure-valued estimates use the same keys, so a
  paired test: d_i = (u_i - mean u)^2 - (c_i - mean c)^2 has mean
  Var_u - Var_c; assert mean(d) > K_Z * SE(d) (not a bare comparison of two
  sample variances, which holds or fails by chance when they are close)."""
  runs = _family_runs()
  c = np.asarray(runs["poisson_mvd"]["rate"], np.float64)
  u = np.asarray(runs["poisson_mvd_uncoupled"]["rate"], np.float64)
  d = (u - u.mean(0))**2 - (c - c.mean(0))**2
  z = d.mean(0) / (d.std(0, ddof=1) / np.sqrt(d.shape[0]))
  assert np.all(z > K_Z), (c.var(0), u.var(0), z)


@jax.jit
def _uncoupled_scalar(params, keys, fid, k):
  f = lambda x: _f(x, fid, k)
  return jax.vmap(ests.measure_valued_uncoupled(f, dists.Normal),
                  in_axes=(None, 0, None))(params, keys, 1)


@pytest.mark.parametrize("case", [("shifted_square", 0, 1.5),
                                  ("gaussian_bump", 1, 0.5)],
                         ids=["shifted_square", "gaussian_bump"])
def test_uncoupled_measure_valued_unbiased_and_variance(case):
  """Mean within K_Z SE of the exact gradient; single-sample variance within
  K_Z SE(s^2) of the quadrature variance (quadrature.measure_valued_variance,
  coupled=False), which exceeds the coupled one."""
  from jaxbdl.gradients import quadrature
  _, fid, k = case
  keys = jax.random.split(jax.random.key(29), N_SCALAR)
  draws = jax.tree.map(np.asarray, _uncoupled_scalar(SCALAR_PARAMS, keys,
                                                     fid, k))
  assert_unbiased(draws, exact_grad(SCALAR_PARAMS, fid, k), case[0])
  f = (lambda x: (x - k)**2) if fid == 0 else (lambda x: jnp.exp(-k * x * x))
  mu, s = float(SCALAR_PARAMS["loc"]), float(SCALAR_PARAMS["scale"])
  var_unc = quadrature.measure_valued_variance(f, mu, s, coupled=False)
  var_cpl = quadrature.measure_valued_variance(f, mu, s, coupled=True)
  for leaf in ("loc", "scale"):
    g = np.asarray(draws[leaf], np.float64)
    c = g - g.mean()
    s2, m4 = np.mean(c**2), np.mean(c**4)
    se = math.sqrt(max(m4 - s2 * s2, 0.0) / g.shape[0])
    assert abs(s2 - var_unc[leaf]) < K_Z * se, (leaf, s2, var_unc[leaf], se)
    assert var_cpl[leaf] <= var_unc[leaf]


def test_capability_flags():
  assert ests.pathwise.reparameterized
  assert not ests.score_function.reparameterized
  assert not ests.measure_valued.reparameterized
  assert not ests.measure_valued_uncoupled.reparameterized


def test_pathwise_rejects_piecewise_constant_f():
  for f in (lambda x: jnp.sum(jnp.round(x)),
            lambda x: jnp.sum((x > 0).astype(jnp.float32)),
            lambda x: jnp.sum(jax.lax.stop_gradient(x))):
    for make in (ests.pathwise, ests.pathwise.surrogate):
      with pytest.raises(ValueError,
                         match="pathwise needs f differentiable.*"
                         "score_function or measure_valued"):
        _trace(make(f, dists.Normal), VECTOR_PARAMS, 2)
  # A constant f is fine (its zero gradient is right), as is a smooth one.
  out = _trace(ests.pathwise(lambda x: jnp.float32(1.0), dists.Normal),
               VECTOR_PARAMS, 2)
  assert out["loc"].shape == (3,)
  out = _trace(ests.pathwise(_F, dists.Gamma), GAM, 2)
  assert out["concentration"].shape == (2,)


def test_measure_valued_names_missing_weak_derivatives():
  with pytest.raises(ValueError, match="Gamma has no closed-form weak "
                     "derivative for \\['concentration'\\].*score_function"):
    ests.measure_valued(_F, dists.Gamma)
  with pytest.raises(ValueError, match="Dirichlet has none"):
    ests.measure_valued_uncoupled(_F, dists.Dirichlet)


@pytest.mark.parametrize("estimator", BASE, ids=[e.name for e in BASE])
def test_invalid_scale_under_jit_gives_nan(estimator):
  """A traced negative scale cannot raise: the estimate is NaN, not garbage;
  eagerly it raises."""
  bad = {"loc": jnp.zeros(3), "scale": jnp.array([1.0, -0.5, 2.0])}
  grads = jax.jit(estimator(_F, dists.Normal), static_argnums=2)(bad, _KEY, 2)
  for leaf in grads.values():
    assert np.all(np.isnan(np.asarray(leaf)))
  with pytest.raises(ValueError, match="Normal scale must be > 0"):
    estimator(_F, dists.Normal)(bad, _KEY, 2)
