"""Tests for jaxbdl.nn.maml: hand-derived meta-gradients on quadratics, replay, shapes."""
import functools

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl.nn import maml
from jaxbdl.training import train

# float32 round-off on O(1) numbers after a few multiply-adds.
_RTOL = 1e-5
_ATOL = 1e-6
EPS64 = float(np.finfo(np.float64).eps)


def _quadratic(theta, a):
  """L(theta) = 0.5 * (theta - a)^2 for a scalar target a (one task)."""
  return 0.5 * jnp.sum((theta - a) ** 2)


def _quadratic_batch():
  # Support targets a, query targets b for T = 3 tasks.
  a = jnp.array([1.0, -2.0, 0.5], jnp.float32)
  b = jnp.array([0.3, 1.0, -1.5], jnp.float32)
  return maml.TaskBatch(support=a, query=b)


@pytest.mark.parametrize("num_steps,first_order", [
    pytest.param(1, False, id="one_step_second_order"),
    pytest.param(1, True, id="one_step_first_order"),
    pytest.param(3, False, id="three_steps_second_order"),
    pytest.param(3, True, id="three_steps_first_order"),
])
def test_meta_gradient_on_quadratic_matches_hand_derivation(num_steps,
                                                            first_order):
  # theta_n - a = (1 - alpha)^n (theta - a); query loss 0.5 (theta_n - b)^2.
  # Second order: dL/dtheta = (1 - alpha)^n (theta_n - b).
  # First order (the inner gradients are constants): dL/dtheta = theta_n - b.
  alpha, theta = 0.1, jnp.float32(2.0)
  batch = _quadratic_batch()
  a, b = batch.support, batch.query
  theta_n = a + (1 - alpha) ** num_steps * (theta - a)
  factor = 1.0 if first_order else (1 - alpha) ** num_steps
  expected = jnp.mean(factor * (theta_n - b))
  grad = jax.jit(jax.grad(functools.partial(
      maml.maml_loss, _quadratic, task_batch=batch, alpha=alpha,
      num_steps=num_steps, first_order=first_order)))(theta)
  np.testing.assert_allclose(grad, expected, rtol=_RTOL, atol=_ATOL)
  loss = maml.maml_loss(_quadratic, theta, batch, alpha, num_steps)
  np.testing.assert_allclose(loss, jnp.mean(0.5 * (theta_n - b) ** 2),
                             rtol=_RTOL, atol=_ATOL)


def _tiny_problem():
  """A 1-4-1 tanh network and a 2-task sinusoid batch.

  Numpy data (no PRNG programs to compile); float64 under ``enable_x64``,
  else float32.
  """
  rng = np.random.default_rng(0)
  params = {"w1": rng.normal(size=(1, 4)), "b1": 0.1 * rng.normal(size=(4,)),
            "w2": rng.normal(size=(4, 1)) / 2.0, "b2": np.zeros((1,))}
  params = jax.tree_util.tree_map(jnp.asarray, params)

  def apply_fn(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]

  amp = rng.uniform(0.1, 5.0, size=(2, 1, 1))
  phase = rng.uniform(0.0, np.pi, size=(2, 1, 1))
  x = rng.uniform(-5.0, 5.0, size=(2, 9, 1))
  y = amp * np.sin(x - phase)
  batch = maml.TaskBatch(support=(jnp.asarray(x[:, :5]), jnp.asarray(y[:, :5])),
                         query=(jnp.asarray(x[:, 5:]), jnp.asarray(y[:, 5:])))
  return params, maml.mse_task_loss(apply_fn), batch


@pytest.mark.parametrize("weights,first_order", [
    pytest.param((0.5, 0.5), False, id="two_steps_equal_second_order"),
    pytest.param((0.2, 0.3, 0.5), False, id="three_steps_second_order"),
    pytest.param((0.2, 0.3, 0.5), True, id="three_steps_first_order"),
])
def test_multi_step_loss_on_quadratic_matches_hand_derivation(weights,
                                                              first_order):
  # theta_j - a = (1 - alpha)^j (theta - a); loss sum_j w_j 0.5 (theta_j - b)^2.
  # d/dtheta = sum_j w_j c_j (theta_j - b) with c_j = (1 - alpha)^j (second
  # order) or 1 (first order: each inner gradient is a constant).
  alpha, theta = 0.1, jnp.float32(2.0)
  batch = _quadratic_batch()
  a, b = batch.support, batch.query
  n = len(weights)
  want_loss = want_grad = 0.0
  for j, w in enumerate(weights, start=1):
    theta_j = a + (1 - alpha) ** j * (theta - a)
    c_j = 1.0 if first_order else (1 - alpha) ** j
    want_loss = want_loss + w * jnp.mean(0.5 * (theta_j - b) ** 2)
    want_grad = want_grad + w * jnp.mean(c_j * (theta_j - b))
  loss_fn = functools.partial(maml.maml_loss, _quadratic, task_batch=batch,
                              alpha=alpha, num_steps=n, first_order=first_order,
                              step_weights=weights)
  loss, grad = jax.jit(jax.value_and_grad(loss_fn))(theta)
  np.testing.assert_allclose(loss, want_loss, rtol=_RTOL, atol=_ATOL)
  np.testing.assert_allclose(grad, want_grad, rtol=_RTOL, atol=_ATOL)


def test_last_step_weight_only_is_the_plain_maml_loss():
  params, task_loss, batch = _tiny_problem()
  plain, weighted = jax.jit(lambda p: (
      maml.maml_loss(task_loss, p, batch, 0.05, 2),
      maml.maml_loss(task_loss, p, batch, 0.05, 2, step_weights=(0.0, 1.0))))(
          params)
  # The same float32 operations in the same order.
  np.testing.assert_allclose(weighted, plain, rtol=_RTOL)


def test_zero_inner_steps_is_joint_training_loss():
  theta = jnp.float32(0.7)
  batch = _quadratic_batch()
  loss = maml.maml_loss(_quadratic, theta, batch, 0.1, 0)
  np.testing.assert_allclose(loss, jnp.mean(0.5 * (theta - batch.query) ** 2),
                             rtol=_RTOL)


def test_adaptation_curve_matches_closed_form():
  alpha, theta, n = 0.25, jnp.float32(-1.0), 4
  a, b = jnp.float32(2.0), jnp.float32(1.0)
  curve = maml.adaptation_curve(_quadratic, theta, a, b, alpha, n)
  steps = jnp.arange(n + 1, dtype=jnp.float32)
  theta_j = a + (1 - alpha) ** steps * (theta - a)
  np.testing.assert_allclose(curve, 0.5 * (theta_j - b) ** 2, rtol=_RTOL,
                             atol=_ATOL)


def _tiny_mlp():
  """A 1-8-1 tanh network as plain jnp (cheap to trace)."""
  k1, k2 = jax.random.split(jax.random.key(0))
  params = {"w1": jax.random.normal(k1, (1, 8)), "b1": jnp.zeros((8,)),
            "w2": jax.random.normal(k2, (8, 1)) / jnp.sqrt(8.0),
            "b2": jnp.zeros((1,))}

  def apply_fn(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]

  return params, maml.mse_task_loss(apply_fn)


def test_maml_loss_on_network_matches_unrolled_python_loop():
  params, task_loss, batch = _tiny_problem()
  alpha, n = 0.01, 2

  def reference(p):
    losses = []
    for t in range(2):
      support = jax.tree_util.tree_map(lambda z: z[t], batch.support)
      query = jax.tree_util.tree_map(lambda z: z[t], batch.query)
      q = p
      for _ in range(n):
        g = jax.grad(task_loss)(q, support)
        q = jax.tree_util.tree_map(lambda w, gw: w - alpha * gw, q, g)
      losses.append(task_loss(q, query))
    return sum(losses) / 2

  got = jax.jit(jax.grad(
      lambda p: maml.maml_loss(task_loss, p, batch, alpha, n)))(params)
  want = jax.jit(jax.grad(reference))(params)
  for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("first_order", [
    pytest.param(False, id="second_order"),
    pytest.param(True, id="first_order_drops_hessian"),
])
def test_one_step_meta_gradient_equals_explicit_hessian_formula(first_order):
  # One inner step theta' = theta - alpha g_s(theta). Chain rule (Finn et al.
  # 2017, Sec. 2.2): d L_q(theta') / d theta = (I - alpha H_s(theta)) g_q(theta'),
  # H_s the Hessian of the support loss (symmetric); FOMAML keeps only
  # g_q(theta'). Here H_s is formed explicitly with jax.hessian on the
  # flattened parameters (13 of them), independently of maml.inner_adapt.
  with jax.enable_x64(True):
    params, task_loss, batch = _tiny_problem()
    flat, unravel = ravel_pytree(params)
    alpha = 0.1  # large enough that the Hessian term is far above round-off
    loss = lambda w, d: task_loss(unravel(w), d)

    @jax.jit
    def explicit(w):
      def one_task(support, query):
        g_q = jax.grad(loss)(w - alpha * jax.grad(loss)(w, support), query)
        return g_q, alpha * jax.hessian(loss)(w, support) @ g_q
      g_q, hess_term = jax.vmap(one_task)(batch.support, batch.query)
      return jnp.mean(g_q, 0), jnp.mean(hess_term, 0)

    g_q, hess_term = explicit(flat)
    want = g_q if first_order else g_q - hess_term
    got = jax.jit(jax.grad(
        lambda w: maml.maml_loss(task_loss, unravel(w), batch, alpha, 1,
                                 first_order=first_order)))(flat)
    # Both are float64 sums of O(100) products of O(1-10) numbers in different
    # orders: error ~ 100 * eps64 * scale; 1e4 * eps64 * scale leaves margin.
    tol = 1e4 * EPS64 * (float(jnp.max(jnp.abs(want))) + 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    # The check tells the two apart: the dropped term is far above tolerance.
    dropped = float(jnp.max(jnp.abs(hess_term)))
    assert dropped > 1e6 * tol, dropped


def test_multi_step_meta_gradient_equals_central_differences():
  # Directional derivative of the 2-step MAML loss along random unit v:
  # grad . v against (L(theta + h v) - L(theta - h v)) / (2 h). The central
  # difference errs by <= h^2 / 6 * |d3| (truncation; d3 the third derivative
  # along v) + eps64 * |L| / h (round-off of the two evaluations); with
  # h = eps64^(1/3) both are O(eps64^(2/3)) ~ 4e-11. d3 is itself estimated
  # from L alone by the 4-point stencil with step k = 1e-2 (relative error
  # O(k^2) plus round-off eps64 |L| / k^3 ~ 1e-10); a factor 10 covers that,
  # the variation of d3 over [-h, h] and the roundings inside L.
  with jax.enable_x64(True):
    params, task_loss, batch = _tiny_problem()
    flat, unravel = ravel_pytree(params)
    alpha, n = 0.05, 2
    f = jax.jit(lambda w: maml.maml_loss(task_loss, unravel(w), batch, alpha, n))
    grad = jax.jit(jax.grad(f))(flat)
    h, k = EPS64 ** (1 / 3), 1e-2
    for i in range(3):  # three random directions
      v = np.random.default_rng(10 + i).normal(size=flat.shape)
      v = jnp.asarray(v / np.linalg.norm(v))
      at = lambda t: float(f(flat + t * v))
      fd = (at(h) - at(-h)) / (2 * h)
      d3 = (at(2 * k) - 2 * at(k) + 2 * at(-k) - at(-2 * k)) / (2 * k ** 3)
      bound = 10 * (h * h / 6 * abs(d3) + EPS64 * max(abs(at(0.0)), 1.0) / h)
      assert bound < 1e-8  # not vacuous against O(0.1-1) derivatives
      exact = float(grad @ v)
      assert abs(exact - fd) < bound, (i, exact, fd, bound)


def test_meta_train_in_chunks_replays_one_long_run_and_compiles_once():
  params, task_loss = _tiny_mlp()
  opt = optax.adam(1e-2)
  sample = maml.sinusoid_task_sampler(num_tasks=4, num_support=5, num_query=5)
  # num_steps=0 keeps compilation cheap; replay does not depend on it.
  step = maml.make_meta_step(task_loss, opt, sample, alpha=0.01, num_steps=0)
  traces = []

  def counted(state, key):
    traces.append(1)
    return maml.make_meta_train(step, 5)(state, key)

  run5 = jax.jit(counted)
  run10 = jax.jit(maml.make_meta_train(step, 10))
  key = jax.random.key(3)
  state0 = train.init_train_state(params, opt)
  s, m1 = run5(state0, key)
  s, m2 = run5(s, key)
  s_long, m_long = run10(state0, key)
  assert len(traces) == 1, "second chunk recompiled"
  assert int(s.step) == 10
  np.testing.assert_allclose(np.concatenate([m1["meta_loss"], m2["meta_loss"]]),
                             m_long["meta_loss"], rtol=1e-5)
  for x, y in zip(jax.tree_util.tree_leaves(s.params),
                  jax.tree_util.tree_leaves(s_long.params)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [
    pytest.param(dict(alpha=0.01, num_steps=-1), id="negative_steps"),
    pytest.param(dict(alpha=-0.1, num_steps=1), id="negative_alpha"),
    pytest.param(dict(alpha=0.01, num_steps=1.5), id="float_steps"),
    pytest.param(dict(alpha=0.01, num_steps=2, step_weights=(1.0,)),
                 id="step_weights_length"),
    pytest.param(dict(alpha=0.01, num_steps=2, step_weights=(1.0, -0.5)),
                 id="negative_step_weight"),
    pytest.param(dict(alpha=0.01, num_steps=2, step_weights=(0.0, 0.0)),
                 id="all_zero_step_weights"),
])
def test_invalid_inner_loop_settings_raise(kwargs):
  with pytest.raises(ValueError, match="num_steps|alpha|step_weights"):
    maml.make_maml_loss_fn(_quadratic, **kwargs)


def test_invalid_sampler_sizes_raise():
  with pytest.raises(ValueError, match="num_support"):
    maml.sinusoid_task_sampler(num_tasks=2, num_support=0, num_query=3)
