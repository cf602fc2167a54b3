"""Tests for jaxbdl.maml: hand-derived meta-gradients on quadratics, replay, shapes."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl import maml
from jaxbdl import train

# float32 round-off on O(1) numbers after a few multiply-adds.
_RTOL = 1e-5
_ATOL = 1e-6


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
  params, task_loss = _tiny_mlp()
  sample = maml.sinusoid_task_sampler(num_tasks=2, num_support=5, num_query=4)
  batch = sample(jax.random.key(1))
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
])
def test_invalid_inner_loop_settings_raise(kwargs):
  with pytest.raises(ValueError, match="num_steps|alpha"):
    maml.make_maml_loss_fn(_quadratic, **kwargs)


def test_invalid_sampler_sizes_raise():
  with pytest.raises(ValueError, match="num_support"):
    maml.sinusoid_task_sampler(num_tasks=2, num_support=0, num_query=3)
