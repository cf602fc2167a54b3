"""Tests for jaxbdl.training.train: convergence, determinism, vmap, chunking, early stopping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl.training import train

N, D = 64, 3


def _linear_data(seed=0, noise=0.1):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(N, D)).astype(np.float32)
  w = np.array([1.0, -2.0, 0.5], np.float32)
  y = (x @ w + 0.3 + noise * rng.normal(size=N)).astype(np.float32)
  return {"x": x, "y": y}


def _mse_loss(params, model_state, batch, key):
  del key
  pred = batch["x"] @ params["w"] + params["b"]
  loss = jnp.mean((pred - batch["y"]) ** 2)
  return loss, (model_state, {"mse": loss})


def _init(key):
  return {"w": 0.1 * jax.random.normal(key, (D,)), "b": jnp.zeros(())}


OPT = optax.adam(0.05)
FIT = train.make_fit(_mse_loss, OPT, num_epochs=40, batch_size=16)
JIT_FIT = jax.jit(FIT)


def _fit_one(seed):
  key = jax.random.key(seed)
  state = train.init_train_state(_init(key), OPT)
  return JIT_FIT(state, _linear_data(), key)


def test_fit_reaches_least_squares_solution():
  data = _linear_data()
  state, history = _fit_one(0)
  x1 = np.concatenate([data["x"], np.ones((N, 1), np.float32)], axis=1)
  coef = np.linalg.lstsq(x1, data["y"], rcond=None)[0]
  got = np.concatenate([np.asarray(state.params["w"]), [float(state.params["b"])]])
  # Adam with a constant step jitters around the optimum by ~lr; bound by 2*lr.
  np.testing.assert_allclose(got, coef, atol=0.1)
  assert history["loss"].shape == (40,)
  assert history["loss"][-1] < 0.1 * history["loss"][0]
  assert int(state.step) == 40 * (N // 16)
  assert np.all(np.asarray(history["finite"]) == 1.0)


def test_same_key_same_result_and_no_retrace():
  traces = []

  @jax.jit
  def fit(state, data, key):
    traces.append(1)
    return FIT(state, data, key)

  key = jax.random.key(3)
  state = train.init_train_state(_init(key), OPT)
  a, _ = fit(state, _linear_data(), key)
  b, _ = fit(state, _linear_data(), key)
  assert len(traces) == 1
  for x, y in zip(jax.tree_util.tree_leaves(a.params),
                  jax.tree_util.tree_leaves(b.params)):
    np.testing.assert_array_equal(x, y)


def test_vmap_over_seeds_matches_single_runs():
  seeds = [0, 1, 2]
  keys = jax.vmap(jax.random.key)(jnp.array(seeds))
  states = jax.vmap(lambda k: train.init_train_state(_init(k), OPT))(keys)
  vstates, vhist = jax.jit(jax.vmap(FIT, in_axes=(0, None, 0)))(
      states, _linear_data(), keys)
  for i, seed in enumerate(seeds):
    single, hist = _fit_one(seed)
    np.testing.assert_allclose(vstates.params["w"][i], single.params["w"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vhist["loss"][i], hist["loss"], rtol=1e-5)


@pytest.mark.default_xla
def test_chunked_epochs_replay_the_uninterrupted_fit():
  fitter = train.make_fitter(_mse_loss, OPT, batch_size=16)
  key = jax.random.key(7)
  fs0 = fitter.init(train.init_train_state(_init(key), OPT))
  run = jax.jit(fitter.run_epochs, static_argnames="num_epochs")
  whole, _ = run(fs0, _linear_data(), key, num_epochs=6)
  part, _ = run(fs0, _linear_data(), key, num_epochs=2)
  part, _ = run(part, _linear_data(), key, num_epochs=4)
  for x, y in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(part)):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      continue
    np.testing.assert_array_equal(x, y)


def _noisy_mse_loss(params, model_state, batch, key):
  # Uses the key, so the test sees which key each step got.
  noise = 0.1 * jax.random.normal(key, ())
  pred = batch["x"] @ params["w"] + params["b"] + noise
  loss = jnp.mean((pred - batch["y"]) ** 2)
  return loss, (model_state, {"mse": loss})


@pytest.mark.parametrize("donate", [True, False], ids=["donated", "copied"])
def test_jit_step_is_the_step_with_fold_in_keys(donate):
  data = jax.tree.map(jnp.asarray, _linear_data())
  batches = [jax.tree.map(lambda a: a[16 * i:16 * (i + 1)], data)
             for i in range(3)]
  key = jax.random.key(5)
  raw = train.make_train_step(_noisy_mse_loss, OPT)
  traces = []

  def counted(state, batch, k):
    traces.append(1)
    return raw(state, batch, k)

  step = train.jit_step(counted, key, donate=donate)
  init = lambda: train.init_train_state(_init(jax.random.key(0)), OPT)
  state, ref = init(), init()
  for b in batches:
    state, metrics = step(state, b)
    ref, ref_metrics = raw(ref, b, jax.random.fold_in(key, ref.step))
  assert len(traces) == 1  # no retrace on later calls
  assert int(state.step) == 3
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(ref)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=1e-6)


def test_jit_step_donates_the_state():
  step = train.jit_step(train.make_train_step(_mse_loss, OPT),
                        jax.random.key(0))
  state = train.init_train_state(_init(jax.random.key(0)), OPT)
  new_state, _ = step(state, jax.tree.map(jnp.asarray, _linear_data()))
  assert state.params["w"].is_deleted()  # consumed: buffers reused
  assert not new_state.params["w"].is_deleted()


def _climb_loss(params, model_state, batch, key):
  del batch, key
  return -params["w"], (model_state, {})


def test_early_stopping_restores_best_epoch():
  # SGD(lr=1) on loss -w with one step per epoch: w = 1, 2, 3, 4, 5, ... after
  # epochs 0, 1, 2, ...; validation (w - 3.2)^2 is best at epoch 2 (w = 3) and
  # worse at epochs 3 and 4, so patience 2 stops at epoch 4.
  opt = optax.sgd(1.0)
  eval_fn = lambda p, s, v: (p["w"] - v) ** 2
  fit = train.make_fit(_climb_loss, opt, num_epochs=8, batch_size=4,
                       eval_fn=eval_fn, patience=2)
  state = train.init_train_state({"w": jnp.zeros(())}, opt)
  data = {"x": jnp.zeros((4, 1))}
  state, hist = jax.jit(fit)(state, data, jax.random.key(0), jnp.float32(3.2))
  assert int(hist["best_epoch"]) == 2
  assert int(hist["stopped_epoch"]) == 4
  assert float(state.params["w"]) == 3.0
  np.testing.assert_array_equal(np.asarray(hist["stopped"]),
                                [False] * 5 + [True] * 3)
  assert np.all(np.isnan(np.asarray(hist["valid_metric"])[5:]))


def test_skip_nonfinite_keeps_state():
  def loss(params, model_state, batch, key):
    del key
    value = jnp.sum(batch["x"] @ params["w"])
    value = jnp.where(jnp.any(batch["bad"]), jnp.nan, value)
    return value, (model_state, {})

  opt = optax.sgd(0.1)
  step = train.skip_nonfinite(train.make_train_step(loss, opt))
  state = train.init_train_state({"w": jnp.ones(2)}, opt)
  bad = {"x": jnp.ones((2, 2)), "bad": jnp.array([False, True])}
  good = {"x": jnp.ones((2, 2)), "bad": jnp.array([False, False])}
  s1, m1 = jax.jit(step)(state, bad, jax.random.key(0))
  assert float(m1["finite"]) == 0.0
  np.testing.assert_array_equal(s1.params["w"], state.params["w"])
  assert int(s1.step) == 1
  s2, m2 = jax.jit(step)(s1, good, jax.random.key(0))
  assert float(m2["finite"]) == 1.0
  np.testing.assert_allclose(s2.params["w"], [0.8, 0.8], rtol=1e-6)


@pytest.mark.parametrize("bad_call, message", [
    (lambda: train.make_fit(_mse_loss, OPT, num_epochs=1, batch_size=65)(
        train.init_train_state(_init(jax.random.key(0)), OPT), _linear_data(),
        jax.random.key(0)), "exceeds the number of training examples"),
    (lambda: train.make_fit(_mse_loss, OPT, num_epochs=1, batch_size=8)(
        train.init_train_state(_init(jax.random.key(0)), OPT),
        {"x": np.zeros((8, 3)), "y": np.zeros(9)}, jax.random.key(0)),
     "same leading"),
    (lambda: train.make_fit(_mse_loss, OPT, num_epochs=0, batch_size=8)(
        train.init_train_state(_init(jax.random.key(0)), OPT), _linear_data(),
        jax.random.key(0)), "num_epochs"),
    (lambda: train.make_fitter(_mse_loss, OPT, batch_size=8, patience=3),
     "needs an eval_fn"),
    (lambda: train.check_finite_data({"x": np.array([1.0, np.nan])}, "train"),
     r"train\['x'\] has a non-finite value"),
], ids=["batch_too_big", "ragged_data", "zero_epochs", "patience_no_eval",
        "nan_data"])
def test_bad_input_raises_clear_error(bad_call, message):
  with pytest.raises(ValueError, match=message):
    bad_call()


def test_eval_fn_aux_metrics_are_recorded():
  opt = optax.sgd(1.0)
  eval_fn = lambda p, s, v: ((p["w"] - v) ** 2, {"w": p["w"]})
  fit = train.make_fit(_climb_loss, opt, num_epochs=3, batch_size=4,
                       eval_fn=eval_fn)
  state = train.init_train_state({"w": jnp.zeros(())}, opt)
  _, hist = jax.jit(fit)(state, {"x": jnp.zeros((4, 1))}, jax.random.key(0),
                         jnp.float32(0.0))
  np.testing.assert_array_equal(hist["valid_w"], [1.0, 2.0, 3.0])
  np.testing.assert_array_equal(hist["valid_metric"], [1.0, 4.0, 9.0])
