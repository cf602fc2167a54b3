"""Tests for jaxbdl.nn.objectives: training is MAP (the lecture's re-formulation)."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl.nn import networks, objectives
from jaxbdl.training import train
from jaxbdl.bayes import likelihoods, priors


def _squeeze(y, out):
  return out[:, 0] if out.ndim == 2 and y.ndim == 1 else out


def _gauss(tau=1.0, scale=None):
  """Per-example Gaussian log density (summed over outputs), precision tau."""
  sd = scale if scale is not None else tau ** -0.5

  def log_lik(y, out):
    lp = likelihoods.normal_log_prob(y, _squeeze(y, out), sd)
    return lp if lp.ndim == 1 else jnp.sum(lp, -1)

  return log_lik


def _bern(y, logits):
  return likelihoods.bernoulli_log_prob(y, _squeeze(y, logits))


def _gprior(scale=1.0):
  return lambda p: priors.gaussian(scale).log_prob({}, p)


def _lprior(scale):
  return lambda p: priors.laplace(scale).log_prob({}, p)


def _flat(p):
  return jnp.float32(0.0)

# Float32 sums of N = 16 squared residuals / P = 6 weights of order 1-100:
# a few hundred ulps relative to the magnitude of the largest term.
EPS32 = float(np.finfo(np.float32).eps)
N, D = 16, 5
P = D + 1

_rng = np.random.default_rng(2)
X = jnp.asarray(_rng.normal(size=(N, D)), jnp.float32)
Y = jnp.asarray(X @ _rng.normal(size=D) + 0.3 * _rng.normal(size=N), jnp.float32)
PARAMS = {"w": jnp.asarray(_rng.normal(size=(D, 1)), jnp.float32),
          "b": jnp.asarray(_rng.normal(size=(1,)), jnp.float32)}


def linear(params, x):  # [B, D] -> [B, 1]
  return x @ params["w"] + params["b"][None, :]


def _sse(params):
  r = linear(params, X)[:, 0] - Y
  return jnp.sum(r * r)


def _close(a, b, magnitude):
  assert abs(float(a) - float(b)) <= 256 * EPS32 * float(magnitude), (a, b)


@pytest.mark.parametrize("tau,s", [(1.0, 1.0), (4.0, 0.5), (0.25, 3.0)])
def test_gaussian_likelihood_gaussian_prior_is_sse_plus_weight_decay(tau, s):
  loss = objectives.map_loss(PARAMS, (X, Y), linear,
                             _gauss(tau),
                             _gprior(s), N)
  l2 = priors.l2_penalty(PARAMS)
  explicit = (tau / 2 * _sse(PARAMS) + l2 / s ** 2
              + N / 2 * math.log(2 * math.pi / tau)
              + P / 2 * math.log(2 * math.pi * s ** 2))
  _close(loss, explicit, tau * _sse(PARAMS) + l2 / s ** 2 + 10 * (N + P))
  # Gradients agree: the constants drop out.
  g_map = jax.grad(objectives.map_loss)(
      PARAMS, {"x": X, "y": Y}, linear, _gauss(tau),
      _gprior(s), N)
  g_explicit = jax.grad(lambda p: tau / 2 * _sse(p) + priors.l2_penalty(p) / s ** 2)(PARAMS)
  for a, b in zip(jax.tree_util.tree_leaves(g_map), jax.tree_util.tree_leaves(g_explicit)):
    np.testing.assert_allclose(a, b, rtol=64 * EPS32, atol=64 * EPS32 * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("tau,b", [(1.0, 1.0), (4.0, 0.5)])
def test_gaussian_likelihood_laplace_prior_is_sse_plus_l1(tau, b):
  loss = objectives.map_loss(PARAMS, (X, Y), linear,
                             _gauss(tau),
                             _lprior(b), N)
  l1 = priors.l1_penalty(PARAMS)
  explicit = (tau / 2 * _sse(PARAMS) + l1 / b
              + N / 2 * math.log(2 * math.pi / tau) + P * math.log(2 * b))
  _close(loss, explicit, tau * _sse(PARAMS) + l1 / b + 10 * (N + P))
  g_map = jax.grad(lambda p: objectives.map_loss(
      p, (X, Y), linear, _gauss(tau),
      _lprior(b), N))(PARAMS)
  g_explicit = jax.grad(lambda p: tau / 2 * _sse(p) + priors.l1_penalty(p) / b)(PARAMS)
  for a, e in zip(jax.tree_util.tree_leaves(g_map), jax.tree_util.tree_leaves(g_explicit)):
    np.testing.assert_allclose(a, e, rtol=64 * EPS32, atol=64 * EPS32 * float(jnp.max(jnp.abs(e))))


def test_minibatch_estimates_average_to_full_batch():
  """Over a partition into N/B minibatches the (N/B)-scaled losses average exactly."""
  lik = _gauss(2.0)
  full = objectives.map_loss(PARAMS, (X, Y), linear, lik, _gprior(), N)
  b = 4
  parts = [objectives.map_loss(PARAMS, (X[i:i + b], Y[i:i + b]), linear, lik,
                               _gprior(), N) for i in range(0, N, b)]
  _close(np.mean(parts), full, 4 * abs(float(full)))


def test_categorical_likelihood_is_softmax_cross_entropy():
  logits_fn = lambda p, x: x @ p  # [B, D] @ [D, C]
  w = jnp.asarray(_rng.normal(size=(D, 4)), jnp.float32)
  labels = jnp.asarray(_rng.integers(0, 4, size=N))
  loss = objectives.map_loss(w, (X, labels), logits_fn, likelihoods.categorical_log_prob,
                             _flat, N)
  ce = optax.softmax_cross_entropy_with_integer_labels(X @ w, labels)
  _close(loss, jnp.sum(ce), jnp.sum(ce))


def test_make_map_loss_fn_stateless_matches_map_loss():
  lik = _gauss(2.0)
  loss_fn = objectives.make_map_loss_fn(objectives.stateless(linear), lik,
                                        _gprior(), N)
  batch = {"x": X[:8], "y": Y[:8]}
  loss, (state, metrics) = loss_fn(PARAMS, {}, batch, jax.random.key(0))
  expected = objectives.map_loss(PARAMS, batch, linear, lik, _gprior(), N)
  _close(loss, expected, abs(float(expected)))
  assert state == {}
  assert set(metrics) == {"loss", "nll", "neg_log_prior"}
  _close(metrics["nll"], -jnp.mean(lik(Y[:8], linear(PARAMS, X[:8]))), 100.0)
  scaled, (_, m2) = objectives.scale_loss(loss_fn, 1 / N)(PARAMS, {}, batch,
                                                        jax.random.key(0))
  _close(scaled * N, loss, abs(float(loss)))
  _close(m2["loss"], scaled, abs(float(scaled)))


def test_flax_train_apply_uses_key_and_updates_batch_stats():
  model = networks.MLP((8, 3), batch_norm=True, dropout_rate=0.5)
  variables = model.init(jax.random.key(0), X)
  y3 = jnp.tile(Y[:, None], (1, 3))
  # Eager (not jitted): the manual apply below then reuses the compiled ops.
  loss_fn = objectives.make_map_loss_fn(
      objectives.flax_train_apply(model),
      _gauss(scale=1.0), _gprior(), N)
  state0 = {"batch_stats": variables["batch_stats"]}
  l1, (s1, _) = loss_fn(variables["params"], state0, (X, y3), jax.random.key(1))
  l1b, _ = loss_fn(variables["params"], state0, (X, y3), jax.random.key(1))
  l2, _ = loss_fn(variables["params"], state0, (X, y3), jax.random.key(2))
  assert float(l1) == float(l1b) and float(l1) != float(l2)
  # Same numbers as calling the module by hand with the key as dropout rng.
  out, _ = model.apply(variables, X, train=True, rngs={"dropout": jax.random.key(1)},
                       mutable=["batch_stats"])
  manual = -jnp.sum(_gauss(scale=1.0)(y3, out)) - _gprior()(
      variables["params"])
  _close(l1, manual, abs(float(manual)))
  assert not np.allclose(s1["batch_stats"]["BatchNorm_0"]["mean"],
                         state0["batch_stats"]["BatchNorm_0"]["mean"])


def test_ridge_solution_is_the_map_estimate_and_fit_finds_it():
  """Gaussian lik. + Gaussian prior on a linear model: MAP = ridge regression.

  w* = (tau X1^T X1 + I / s^2)^{-1} tau X1^T y, with X1 = [X, 1] (bias has the
  same prior). The gradient of the MAP loss vanishes there (to float32
  rounding of its terms), and train.make_fit gets to the same loss.
  """
  tau, s = 4.0, 0.5
  x1 = np.concatenate([np.float64(X), np.ones((N, 1))], axis=1)
  a = tau * x1.T @ x1 + np.eye(P) / s ** 2
  w_star = np.linalg.solve(a, tau * x1.T @ np.float64(Y))
  p_star = {"w": jnp.asarray(w_star[:D, None], jnp.float32),
            "b": jnp.asarray(w_star[D:], jnp.float32)}
  lik = _gauss(tau)
  prior = _gprior(s)
  grad = jax.grad(objectives.map_loss)(p_star, (X, Y), linear, lik, prior, N)
  # Gradient terms are of order tau * |X^T r| + |w| / s^2 ~ the Hessian scale;
  # float32 rounding of w* alone moves it by ~ ||A|| * eps * ||w*||.
  bound = 64 * EPS32 * np.linalg.norm(a, 2) * np.linalg.norm(w_star)
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(grad)) < bound

  loss_fn = objectives.scale_loss(
      objectives.make_map_loss_fn(objectives.stateless(linear), lik, prior, N), 1 / N)
  opt = optax.adam(0.05)
  fit = jax.jit(train.make_fit(loss_fn, opt, num_epochs=300, batch_size=N))
  zeros = jax.tree.map(jnp.zeros_like, PARAMS)
  state, history = fit(train.init_train_state(zeros, opt), {"x": X, "y": Y},
                       jax.random.key(0))
  best = float(objectives.map_loss(p_star, (X, Y), linear, lik, prior, N))
  final = float(objectives.map_loss(state.params, (X, Y), linear, lik, prior, N))
  first = float(history["loss"][0]) * N
  assert best <= final + 1e-4 * abs(best)  # w* is the minimiser
  assert final - best < 1e-3 * (first - best)  # fit closed 99.9% of the gap


@pytest.mark.parametrize("call,word", [
    (lambda: objectives.map_loss(PARAMS, {"x": X}, linear, _bern,
                                 _flat, N), "missing"),
    (lambda: objectives.map_loss(PARAMS, (X, Y), linear, _bern,
                                 _flat, 0), "num_data"),
    (lambda: objectives.map_loss(PARAMS, (X, Y), linear, lambda y, o: o,
                                 _flat, N), r"\[B\]"),
    (lambda: objectives.map_loss(PARAMS, (X, Y), linear, _bern,
                                 lambda p: jnp.zeros(2), N), "scalar"),
], ids=["batch-keys", "num-data", "likelihood-shape", "prior-shape"])
def test_invalid_inputs_raise(call, word):
  with pytest.raises(ValueError, match=word):
    call()


def test_jitted_loss_fn_traces_once():
  lik = _gauss(2.0)
  loss_fn = objectives.make_map_loss_fn(objectives.stateless(linear), lik,
                                        _gprior(), N)
  step = jax.jit(chex.assert_max_traces(loss_fn, n=1))
  for i in range(2):  # new data and key, same shapes: no retrace
    batch = {"x": X[8 * i:8 * i + 8], "y": Y[8 * i:8 * i + 8]}
    loss, _ = step(PARAMS, {}, batch, jax.random.key(i))
    # The one trace computes each NEW batch's loss (not a stale value): the
    # minibatch estimate of the negative log joint, (N / B) * sum of the
    # per-example NLLs - log prior, by hand from the batch in float64.
    x, y = np.asarray(batch["x"], np.float64), np.asarray(batch["y"], np.float64)
    w = np.asarray(PARAMS["w"], np.float64)[:, 0]
    b = float(PARAMS["b"][0])
    sd2 = 1.0 / 2.0  # precision tau = 2
    nll = 0.5 * np.log(2 * np.pi * sd2) + (x @ w + b - y)**2 / (2 * sd2)
    theta = np.concatenate([w, [b]])
    neg_log_prior = 0.5 * P * np.log(2 * np.pi) + 0.5 * theta @ theta
    want = N / 8 * nll.sum() + neg_log_prior
    _close(loss, want, N / 8 * np.abs(nll).sum() + neg_log_prior)
