"""Tests for jaxbdl.gradients.control_variates: unbiasedness, variance reduction, API.

Monte Carlo checks assert |estimate - exact| < K_Z * SE + a float32 floor
``_F32_ATOL * (1 + |exact|)`` (the delta method is exact on quadratics, so its
spread is pure rounding), SE computed from the draws. K_Z = 4.5: about 120
checks here, P(|Z| > 4.5) = 6.8e-6, so by Bonferroni the chance of a failure
by luck is below 1e-3. Variance comparisons are paired z-tests over keys.

All estimators are evaluated by ONE jitted function (plus one scan for the
stateful moving-average baseline); the test f is picked by traced arguments.
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
from tests.helpers import assert_mc_close

K_Z = 4.5
_F32_ATOL = 1e-4
N_KEYS = 4000
S = 8  # samples per estimate
PARAMS = {"loc": jnp.array([0.5, -1.0, 2.0]),
          "scale": jnp.array([0.5, 1.0, 2.0])}
CASES = [("square", 0, 0.0), ("shifted_square", 0, 1.5),
         ("gaussian_bump", 1, 0.5)]
CASE_IDS = [c[0] for c in CASES]

SCORE_LOO = cvs.with_control_variate(ests.score_function,
                                     cvs.leave_one_out_baseline())
ESTIMATORS = {
    "score_function": ests.score_function,
    "score+loo": SCORE_LOO,
    "score+delta": cvs.with_control_variate(ests.score_function,
                                            cvs.delta_method()),
    "score+delta_xfit": cvs.with_control_variate(
        ests.score_function, cvs.delta_method(),
        cvs.cross_fitted_coefficient),
    "pathwise+delta": cvs.with_control_variate(ests.pathwise,
                                               cvs.delta_method()),
}
MOVING_AVERAGE = cvs.with_control_variate(ests.score_function,
                                          cvs.moving_average_baseline(0.9))


def _f(x, fid, k):
  return jax.lax.switch(fid, [lambda x: jnp.sum(jnp.square(x - k)),
                              lambda x: jnp.sum(jnp.exp(-k * jnp.square(x)))],
                        x)


def exact_grad(fid, k):
  """grad of E f: closed forms (x - k)^2 -> (mu - k)^2 + sigma^2 and
  exp(-k x^2) -> (1 + 2 k s^2)^(-1/2) exp(-k mu^2 / (1 + 2 k s^2))."""

  def expectation(params):
    mu, s = params["loc"], params["scale"]
    if fid == 0:
      return jnp.sum(jnp.square(mu - k) + jnp.square(s))
    v = 1.0 + 2.0 * k * jnp.square(s)
    return jnp.sum(v**-0.5 * jnp.exp(-k * jnp.square(mu) / v))

  return jax.tree.map(np.asarray, jax.grad(expectation)(PARAMS))


@jax.jit
def _all_estimates(params, keys, fid, k):
  f = lambda x: _f(x, fid, k)
  out = {name: jax.vmap(e(f, dists.Normal), in_axes=(None, 0, None))(
      params, keys, S) for name, e in ESTIMATORS.items()}
  # Surrogate of a CV-wrapped estimator: its gradient is the estimate.
  surrogate_grad = jax.grad(SCORE_LOO.surrogate(f, dists.Normal))(
      params, keys[0], S)
  return out, surrogate_grad


@jax.jit
def _moving_average_run(params, keys, fid, k):
  """Scans the stateful estimator over keys, threading its state."""
  grad_fn = MOVING_AVERAGE(lambda x: _f(x, fid, k), dists.Normal)

  def step(state, key):
    grads, state = grad_fn(params, key, S, state)
    return state, grads

  return jax.lax.scan(step, MOVING_AVERAGE.init(params), keys)


def _keys():
  return jax.random.split(jax.random.key(2), N_KEYS)


@functools.lru_cache(maxsize=None)
def run(fid, k):
  out, surrogate_grad = _all_estimates(PARAMS, _keys(), fid, k)
  state, ma = _moving_average_run(PARAMS, _keys(), fid, k)
  out = dict(out, **{"score+moving_average": ma})
  return (jax.tree.map(np.asarray, out), jax.tree.map(np.asarray,
                                                      surrogate_grad), state)


def assert_unbiased(draws, exact, what):
  for leaf in draws:
    g = np.asarray(draws[leaf], np.float64)
    mean, se = g.mean(0), g.std(0) / math.sqrt(g.shape[0])
    bound = K_Z * se + _F32_ATOL * (1.0 + np.abs(exact[leaf]))
    assert np.all(np.abs(mean - exact[leaf]) < bound), (
        f"{what} d/d{leaf}: mean {mean} vs exact {exact[leaf]} (SE {se})")


NAMES = list(ESTIMATORS) + ["score+moving_average"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_unbiased(name, case):
  """The moving-average run is a scan: its errors are martingale differences
  (the baseline only uses earlier calls), so SE = std / sqrt(n) still holds."""
  _, fid, k = case
  assert_unbiased(run(fid, k)[0][name], exact_grad(fid, k), f"{name} {case}")


RATIO = 0.8  # the CV must cut the variance by at least 20 %


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("name", ["score+loo", "score+moving_average"])
def test_baselines_lower_score_function_variance(name, case):
  """Var(CV) < RATIO * Var(plain score function), same S = 8 and same keys.

  Paired test per element: d_i = RATIO (g_i - mean g)^2 - (c_i - mean c)^2
  over the keys i has mean RATIO Var(g) - Var(c); assert mean(d) > K_Z SE(d).
  (Observed ratios are 0.1-0.65.)
  """
  _, fid, k = case
  draws = run(fid, k)[0]
  for leaf in ("loc", "scale"):
    g = np.asarray(draws["score_function"][leaf], np.float64)
    c = np.asarray(draws[name][leaf], np.float64)
    d = RATIO * (g - g.mean(0))**2 - (c - c.mean(0))**2
    z = d.mean(0) / (d.std(0) / math.sqrt(d.shape[0]))
    assert np.all(z > K_Z), (f"{name} d/d{leaf}: var {c.var(0)} vs plain "
                             f"{g.var(0)}, z = {z}")


@pytest.mark.parametrize("case", CASES[:2], ids=CASE_IDS[:2])
@pytest.mark.parametrize("name", ["score+delta", "score+delta_xfit",
                                  "pathwise+delta"])
def test_delta_method_is_exact_on_quadratics(name, case):
  """For quadratic f the Taylor expansion h equals f, so g(f - h) = 0 and the
  estimate is grad E[h] = the exact gradient for every key (up to float32)."""
  _, fid, k = case
  draws, exact = run(fid, k)[0][name], exact_grad(fid, k)
  for leaf in ("loc", "scale"):
    np.testing.assert_allclose(
        draws[leaf], np.broadcast_to(exact[leaf], draws[leaf].shape),
        rtol=1e-4, atol=1e-4)


def test_surrogate_of_cv_estimator_matches_estimate():
  draws, surrogate_grad, _ = run(1, 0.5)
  for leaf in ("loc", "scale"):
    np.testing.assert_allclose(surrogate_grad[leaf],
                               draws["score+loo"][leaf][0], rtol=1e-5,
                               atol=1e-5)


N_CHAINS, N_CALLS = 400, 6


@jax.jit
def _moving_average_baselines(keys):
  """[C, T] keys -> the debiased baseline avg / weight after T calls, per
  independent chain [C]."""
  state = jax.vmap(lambda k: _moving_average_run(PARAMS, k, 0, 1.5)[0])(keys)
  return state.average / state.weight, state.count


def test_moving_average_state_is_threaded():
  """The state is threaded through every call (count), and the debiased
  baseline ``avg / (1 - 0.9^T)`` is an UNBIASED estimate of E f after any
  number T of calls: E avg_T = (1 - 0.9^T) E f. Checked over C = 400
  independent chains of T = 6 calls (weight 0.47, so a missing or wrong
  debiasing is off by ~2x), with SE from the chains (k = 4.5 as K_Z).
  f = sum (x - k)^2, k = 1.5: E f = sum (mu - k)^2 + s^2 = 12.75; per chain
  Var(b) = Var(f) / S * sum_i w_i^2 with Var f = sum 2 s^4 + 4 s^2 (mu - k)^2
  = 64.1 and debiased weights w_i ~ 0.9^i / sum (sum w^2 = 0.176), so
  SD(b) = 1.19 and SE = 0.059 (0.5 % of E f; a 2 % bias fails at 5 SE)."""
  state = run(0, 1.5)[2]
  assert isinstance(state, cvs.MovingAverageState)
  assert int(state.count) == N_KEYS
  e_f = float(np.sum((np.asarray(PARAMS["loc"]) - 1.5)**2 +
                     np.asarray(PARAMS["scale"])**2))
  keys = jax.random.split(jax.random.key(11), N_CHAINS * N_CALLS).reshape(
      N_CHAINS, N_CALLS)
  baselines, counts = _moving_average_baselines(keys)
  np.testing.assert_array_equal(counts, N_CALLS)
  assert_mc_close(np.asarray(baselines), e_f, k=K_Z)


# ---------------------------------------------------------------------------
# The control variates' pure functions (eager, tiny).


def fast(fn):
  """jit: one compile instead of op-by-op dispatch (the XLA optimisation
  level is the suite-wide one set in tests/conftest.py)."""
  return jax.jit(fn)


def test_moving_average_baseline_functions():
  cv = cvs.moving_average_baseline(decay=0.9)
  cv = cv._replace(baseline=fast(cv.baseline), update=fast(cv.update))
  state = cv.init(PARAMS)
  f_values = jnp.array([1.0, 2.0, 3.0, 6.0])
  np.testing.assert_array_equal(cv.baseline(f_values, state), np.zeros(4))
  state = cv.update(f_values, state)
  # Zero-debiased: after one update the baseline is that call's mean, 3.
  np.testing.assert_allclose(cv.baseline(f_values, state), np.full(4, 3.0),
                             rtol=1e-6)
  state = cv.update(jnp.full(4, 5.0), state)
  # (0.9 * 0.3 + 0.1 * 5) / (1 - 0.81) = 0.77 / 0.19.
  np.testing.assert_allclose(cv.baseline(f_values, state)[0], 0.77 / 0.19,
                             rtol=1e-5)
  assert int(state.count) == 2
  with pytest.raises(ValueError, match="decay"):
    cvs.moving_average_baseline(decay=1.0)


def test_leave_one_out_baseline_values():
  cv = cvs.leave_one_out_baseline()
  b = fast(cv.baseline)(jnp.array([1.0, 2.0, 3.0, 6.0]), None)
  np.testing.assert_allclose(b, [11 / 3, 10 / 3, 3.0, 2.0], rtol=1e-6)


def test_coefficients():
  c = jnp.array([[1.0], [-1.0], [2.0], [-2.0], [0.5], [1.5]])
  # Half A (first 3) has g = 3 c, half B has g = 1 c: cross-fitting swaps.
  g = jnp.concatenate([3.0 * c[:3], 1.0 * c[3:]])
  beta = fast(cvs.cross_fitted_coefficient)(g, c)
  np.testing.assert_allclose(beta[:, 0], [1, 1, 1, 3, 3, 3], rtol=1e-5)
  same = fast(cvs.same_sample_coefficient)
  np.testing.assert_allclose(same(2.0 * c, c), np.full((1, 1), 2.0),
                             rtol=1e-5)
  # A constant control variate has Var = 0: coefficient 0, not NaN.
  np.testing.assert_array_equal(same(g, jnp.ones_like(c)), np.zeros((1, 1)))


# Errors at the boundary (jax.eval_shape traces without compiling).

_KEY = jax.random.key(0)
_F = lambda x: jnp.sum(jnp.square(x))


def _trace(estimator, num_samples):
  grad_fn = estimator(_F, dists.Normal)
  return jax.eval_shape(lambda p, k: grad_fn(p, k, num_samples), PARAMS, _KEY)


def test_leave_one_out_needs_two_samples():
  with pytest.raises(ValueError, match="num_samples >= 2"):
    _trace(SCORE_LOO, 1)
  assert _trace(SCORE_LOO, 2)["loc"].shape == (3,)


def test_cross_fitting_needs_four_samples():
  est = ESTIMATORS["score+delta_xfit"]
  with pytest.raises(ValueError, match="num_samples >= 4"):
    _trace(est, 3)
  assert _trace(est, 4)["scale"].shape == (3,)


def test_bad_combinations_raise():
  with pytest.raises(ValueError, match="bias"):
    cvs.with_control_variate(ests.score_function,
                             cvs.leave_one_out_baseline(),
                             cvs.cross_fitted_coefficient)
  with pytest.raises(ValueError, match="Estimator"):
    cvs.with_control_variate(ests.score_function(_F, dists.Normal),
                             cvs.delta_method())
  with pytest.raises(ValueError, match="ControlVariate"):
    cvs.with_control_variate(ests.score_function, "delta")
  with pytest.raises(ValueError, match="coefficient"):
    cvs.with_control_variate(ests.score_function, cvs.delta_method(), "opt")
  with pytest.raises(ValueError, match="mean and covariance.*Categorical"):
    _trace_est = cvs.with_control_variate(ests.score_function,
                                          cvs.delta_method())
    grad_fn = _trace_est(lambda x: jnp.sum(x).astype(jnp.float32),
                         dists.Categorical)
    jax.eval_shape(lambda p, k: grad_fn(p, k, 2),
                   {"logits": jnp.zeros((2, 3))}, _KEY)


def test_stateful_signature():
  """Stateful CV estimators take and return the state; shapes via eval_shape."""
  grad_fn = MOVING_AVERAGE(_F, dists.Normal)
  state = MOVING_AVERAGE.init(PARAMS)
  grads, new_state = jax.eval_shape(lambda p, k, s: grad_fn(p, k, 4, s),
                                    PARAMS, _KEY, state)
  assert grads["loc"].shape == (3,)
  assert isinstance(new_state, cvs.MovingAverageState)
  per_sample, _ = jax.eval_shape(
      lambda p, k, s: MOVING_AVERAGE.samples(_F, dists.Normal)(p, k, 4, s),
      PARAMS, _KEY, state)
  assert per_sample["scale"].shape == (4, 3)


# ---------------------------------------------------------------------------
# Capabilities, stateful surrogates, the early-training decay, the delta
# method beyond the diagonal Normal.


def test_wrapped_estimators_keep_the_reparameterized_flag():
  for est in (ests.pathwise, ests.score_function, ests.measure_valued):
    for cv in (cvs.delta_method(), cvs.leave_one_out_baseline(),
               cvs.moving_average_baseline()):
      wrapped = cvs.with_control_variate(est, cv)
      assert wrapped.reparameterized == est.reparameterized, wrapped.name
      assert wrapped.surrogate is not None, wrapped.name


@functools.partial(jax.jit, static_argnums=2)
def _stateful_surrogate_check(params, key, use_heuristic):
  est = cvs.with_control_variate(
      ests.score_function, cvs.moving_average_baseline(
          0.9, use_decay_early_training_heuristic=use_heuristic))
  f = lambda x: _f(x, 1, 0.5)
  state = est.init(params)
  # Two calls so the baseline of the second is non-zero.
  _, state = est(f, dists.Normal)(params, jax.random.key(1), S, state)
  grads, new_state = est(f, dists.Normal)(params, key, S, state)
  (value, sur_state), sur_grads = jax.value_and_grad(
      est.surrogate(f, dists.Normal), has_aux=True)(params, key, S, state)
  xs = ests.draw_samples(dists.Normal, params, key, S)
  return grads, new_state, sur_grads, sur_state, value, jnp.mean(
      jax.vmap(f)(xs)), state


@pytest.mark.parametrize("use_heuristic", [False, True],
                         ids=["constant_decay", "early_decay"])
def test_stateful_surrogate_gradient_is_the_estimate(use_heuristic):
  """jax.grad(surrogate, has_aux=True) == the estimate with the same key and
  state (the baseline applied to the samples used), same new state, and the
  value is the MC mean of f at those samples."""
  grads, new_state, sur_grads, sur_state, value, mc, state = (
      _stateful_surrogate_check(PARAMS, jax.random.key(9), use_heuristic))
  assert float(state.average) != 0.0
  for leaf in ("loc", "scale"):
    np.testing.assert_allclose(sur_grads[leaf], grads[leaf], rtol=1e-5,
                               atol=1e-6)
  for a, b in zip(new_state, sur_state):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  np.testing.assert_allclose(value, mc, rtol=1e-5)


def test_early_training_decay_heuristic():
  """decay_i = min(decay, (1 + i) / (10 + i)): 0.1 then 2/11 for decay 0.9;
  the zero-debiased baseline divides by 1 - prod_i decay_i."""
  cv = cvs.moving_average_baseline(0.9,
                                   use_decay_early_training_heuristic=True)
  update, baseline = fast(cv.update), fast(cv.baseline)
  state = cv.init(PARAMS)
  state = update(jnp.full(4, 2.0), state)  # decay_0 = 0.1
  np.testing.assert_allclose(state.average, 0.9 * 2.0, rtol=1e-6)
  np.testing.assert_allclose(baseline(jnp.zeros(4), state)[0], 2.0,
                             rtol=1e-6)
  state = update(jnp.full(4, 5.0), state)  # decay_1 = 2/11
  d1 = 2.0 / 11.0
  avg = d1 * 1.8 + (1 - d1) * 5.0
  np.testing.assert_allclose(state.average, avg, rtol=1e-6)
  np.testing.assert_allclose(baseline(jnp.zeros(4), state)[0],
                             avg / (1 - 0.1 * d1), rtol=1e-6)
  # Late in training (i = 200: 201/210 > 0.9) decay_i = decay.
  late = cvs.MovingAverageState(jnp.float32(1.0), jnp.int32(200),
                                jnp.float32(0.5))
  late = update(jnp.full(4, 3.0), late)
  np.testing.assert_allclose(late.average, 0.9 * 1.0 + 0.1 * 3.0, rtol=1e-6)
  np.testing.assert_allclose(late.weight, 1.0 - 0.9 * 0.5, rtol=1e-6)


_MVN = {"loc": jnp.array([0.4, -0.7]),
        "scale_tril": jnp.array([[0.8, 0.0], [0.5, 1.2]])}
_A = np.array([1.0, 2.0])


def _mvn_quadratic(x):
  return jnp.square(jnp.sum(jnp.asarray(_A, jnp.float32) * x) - 1.0)


@jax.jit
def _mvn_delta(params, keys):
  est = cvs.with_control_variate(ests.score_function, cvs.delta_method())
  return jax.vmap(est(_mvn_quadratic, dists.MultivariateNormalTriL),
                  in_axes=(None, 0, None))(params, keys, 2)


def test_delta_method_uses_full_covariance():
  """For a quadratic f with cross terms under a full-covariance Normal the
  delta method is exact: every estimate equals grad E f, E f = (a.mu - 1)^2
  + a^T L L^T a (grads by float64 central differences)."""
  draws = _mvn_delta(_MVN, jax.random.split(jax.random.key(3), 8))
  p = {k: np.asarray(v, np.float64) for k, v in _MVN.items()}

  def expect(loc, scale_tril):
    tril = np.tril(scale_tril)
    return (_A @ loc - 1.0) ** 2 + _A @ tril @ tril.T @ _A

  h = 1e-6
  for leaf in ("loc", "scale_tril"):
    g = np.zeros_like(p[leaf])
    for i in np.ndindex(g.shape):
      up, dn = dict(p), dict(p)
      up[leaf], dn[leaf] = p[leaf].copy(), p[leaf].copy()
      up[leaf][i] += h
      dn[leaf][i] -= h
      g[i] = (expect(**up) - expect(**dn)) / (2 * h)
    np.testing.assert_allclose(
        draws[leaf], np.broadcast_to(g, draws[leaf].shape), rtol=1e-4,
        atol=1e-4)
