"""Tests for jaxbdl.training.parallel and jaxbdl.training.distributed.

Multi-device checks need several devices before JAX starts, so they run once in
a SUBPROCESS (this file executed as a script) with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``; the child prints one
JSON line of measured differences that the parent asserts. The pytest process
itself has one CPU device and checks validation and the 1-device paths.

Tolerances: the data-parallel step sums per-example gradients in a different
order (4 partial sums then an all-reduce), so parameters agree to float32
rounding: |diff| <= 1e-5 absolute after one step of size 0.05 (8 ulp at the
parameters' scale of ~1). After 3 epochs of Adam the rounding can be amplified
by Adam's normalisation (roughly by lr / sqrt(v)): 1e-4. The run axis does no
cross-device arithmetic, so per-run results must agree to 1e-6.
"""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

NUM_DEVICES = 4


def _problem():
  """A small nonlinear regression loss and data shared by parent and child."""
  import jax
  import jax.numpy as jnp
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype(np.float32)
  y = np.tanh(x @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)

  def loss_fn(params, model_state, batch, key):
    del key
    h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"][None, :])
    pred = h @ params["w2"]
    loss = jnp.mean((pred - batch["y"]) ** 2)
    return loss, (model_state, {"mse": loss})

  def init(key):
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (3, 8)) / np.sqrt(3.0),
            "b1": jnp.zeros((8,)),
            "w2": jax.random.normal(k2, (8,)) / np.sqrt(8.0)}

  return {"x": x, "y": y}, loss_fn, init


def _child() -> None:
  """Runs with 4 host devices; prints a JSON dict of max abs differences."""
  import jax
  import optax
  from jax.sharding import PartitionSpec as P
  from jaxbdl.training import parallel, train
  jax.config.update("jax_numpy_rank_promotion", "raise")
  assert jax.device_count() == NUM_DEVICES, jax.devices()
  data, loss_fn, init = _problem()
  opt = optax.adam(0.05)
  key = jax.random.key(0)
  state = train.init_train_state(init(key), opt)
  maxdiff = lambda a, b: float(max(
      np.max(np.abs(np.asarray(u) - np.asarray(v)))
      for u, v in zip(jax.tree_util.tree_leaves(a),
                      jax.tree_util.tree_leaves(b))))
  out = {}

  # 1. One data-parallel step (batch of 16 split 4 ways) vs one device.
  batch = jax.tree_util.tree_map(lambda a: a[:16], data)
  ref_state, ref_m = jax.jit(train.make_train_step(loss_fn, opt))(
      state, batch, key)
  dp = parallel.make_strategy("data")
  step = parallel.jit_data_parallel_step(
      train.make_train_step(dp.loss(loss_fn), opt), dp.mesh)
  dp_state, dp_m = step(dp.state(state), batch, key)
  out["step_param_diff"] = maxdiff(ref_state.params, dp_state.params)
  out["step_loss_diff"] = abs(float(ref_m["loss"]) - float(dp_m["loss"]))
  out["step_params_replicated"] = bool(
      dp_state.params["w1"].sharding.is_fully_replicated)

  # 2. A data-parallel fit (3 epochs through make_fitter, unchanged) vs one
  #    device; the batch inside the scan is sharded by the loss combinator.
  def fit(strategy, st, d):
    fitter = train.make_fitter(strategy.loss(loss_fn), opt, batch_size=16)
    run = jax.jit(functools.partial(fitter.run_epochs, num_epochs=3))
    compiled = run.lower(fitter.init(st), d, key).compile()
    fs, hist = compiled(fitter.init(st), d, key)
    return fitter.result(fs), hist, compiled.as_text()
  ref_fit, ref_hist, _ = fit(parallel.make_strategy("none"), state, data)
  dp_fit, dp_hist, hlo = fit(dp, dp.state(state), dp.shared(data))
  out["fit_param_diff"] = maxdiff(ref_fit.params, dp_fit.params)
  out["fit_loss_diff"] = maxdiff(ref_hist["loss"], dp_hist["loss"])
  out["fit_has_all_reduce"] = "all-reduce" in hlo

  # 3. Run axis: 8 seeds, 2 per device, vs the same vmapped fit on one device.
  keys = jax.random.split(jax.random.key(1), 8)
  fitter = parallel.vmap_fitter(train.make_fitter(loss_fn, opt, batch_size=16))
  states = jax.vmap(lambda k: train.init_train_state(init(k), opt))(keys)
  run = jax.jit(functools.partial(fitter.run_epochs, num_epochs=2))
  fs_ref, h_ref = run(fitter.init(states), data, keys)
  rs = parallel.make_strategy("runs")
  fs_sh, h_sh = run(fitter.init(rs.state(states)), rs.shared(data),
                    rs.per_run(keys))
  out["runs_param_diff"] = maxdiff(fs_ref.train.params, fs_sh.train.params)
  out["runs_loss_diff"] = maxdiff(h_ref["loss"], h_sh["loss"])
  w1 = fs_sh.train.params["w1"]
  out["runs_spec"] = str(w1.sharding.spec)
  out["runs_bytes_per_device"] = parallel.per_device_bytes(w1)
  out["runs_bytes_total"] = int(w1.nbytes)
  # Per-run results equal independent single fits (run 5 alone).
  single = train.make_fitter(loss_fn, opt, batch_size=16)
  s5 = jax.tree_util.tree_map(lambda a: a[5], states)
  fs5, _ = jax.jit(functools.partial(single.run_epochs, num_epochs=2))(
      single.init(s5), data, keys[5])
  out["run5_vs_single_diff"] = maxdiff(
      fs5.train.params, jax.tree_util.tree_map(lambda a: a[5],
                                               fs_sh.train.params))
  try:
    rs.per_run(jax.random.split(key, 6))
    out["indivisible_error"] = ""
  except ValueError as e:
    out["indivisible_error"] = str(e)
  del P
  print("RESULT " + json.dumps(out))


@pytest.fixture(scope="module")
def child_results():
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={NUM_DEVICES}")
  env["JAX_PLATFORMS"] = "cpu"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"],
                        capture_output=True, text=True, timeout=240, env=env,
                        cwd=root)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, (proc.stdout[-3000:],
                                          proc.stderr[-3000:])
  return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("name,tol", [
    ("step_param_diff", 1e-5), ("step_loss_diff", 1e-6),
    ("fit_param_diff", 1e-4), ("fit_loss_diff", 1e-4),
    ("runs_param_diff", 1e-6), ("runs_loss_diff", 1e-6),
    ("run5_vs_single_diff", 1e-6)])
def test_sharded_equals_single_device(child_results, name, tol):
  assert child_results[name] <= tol, (name, child_results[name])


def test_sharding_is_real(child_results):
  assert child_results["step_params_replicated"]
  assert child_results["fit_has_all_reduce"]  # gradients are all-reduced
  assert "runs" in child_results["runs_spec"]
  assert (child_results["runs_bytes_per_device"] * NUM_DEVICES
          == child_results["runs_bytes_total"])
  assert "multiple of the 4 devices" in child_results["indivisible_error"]


# ---------------------------------------------------------------------------
# In-process checks (1 device).


def test_none_strategy_is_identity():
  from jaxbdl.training import parallel
  s = parallel.make_strategy("none")
  tree = {"a": np.ones(3)}
  assert s.mesh is None and s.num_devices == 1
  assert s.state(tree) is tree and s.shared(tree) is tree
  assert s.per_run(tree) is tree
  f = lambda *a: a
  assert s.loss(f) is f


@pytest.mark.parametrize("call,message", [
    (lambda p: p.make_strategy("model"), "unknown parallel strategy 'model'"),
    (lambda p: p.make_mesh("data", devices=[]), "at least one device"),
    (lambda p: p.shard_leading_axis({"s": np.float32(1.0)},
                                    p.make_mesh("runs")), "tree['s']"),
])
def test_parallel_errors(call, message):
  from jaxbdl.training import parallel
  with pytest.raises(ValueError, match=re.escape(message)):
    call(parallel)


def test_host_shard_splits_rows():
  from jaxbdl.training import distributed
  data = {"x": np.arange(12).reshape(6, 2), "y": np.arange(6)}
  parts = [distributed.host_shard(data, i, 3) for i in range(3)]
  np.testing.assert_array_equal(parts[1]["y"], [2, 3])
  np.testing.assert_array_equal(
      np.concatenate([p["x"] for p in parts]), data["x"])


@pytest.mark.parametrize("kwargs,message", [
    (dict(data={"x": np.zeros((5, 2))}, process_index=0, process_count=2),
     "5 examples is not a multiple of 2 processes"),
    (dict(data={"x": np.zeros((4, 2)), "y": np.zeros(3)}, process_index=0,
          process_count=2), "leading sizes differ"),
    (dict(data={"x": np.zeros((4, 2))}, process_index=2, process_count=2),
     "process_index must be in [0, 2)"),
    (dict(data={}, process_index=0, process_count=1), "no arrays"),
])
def test_host_shard_errors(kwargs, message):
  from jaxbdl.training import distributed
  with pytest.raises(ValueError, match=re.escape(message)):
    distributed.host_shard(**kwargs)


def test_initialize_single_process_is_noop_and_validates():
  from jaxbdl.training import distributed
  assert distributed.initialize(None, 1, 0) is False
  with pytest.raises(ValueError, match="coordinator_address"):
    distributed.initialize("", 2, 0)
  with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\)"):
    distributed.initialize("localhost:1234", 2, 5)
  with pytest.raises(ValueError, match="num_processes must be an int >= 1"):
    distributed.initialize("localhost:1234", 0, 0)


def test_global_array_single_process():
  import jax
  from jaxbdl.training import distributed, parallel
  mesh = parallel.make_mesh("data")
  local = distributed.host_shard({"x": np.arange(8.0)})
  arr = distributed.global_array(local, mesh)["x"]
  assert isinstance(arr, jax.Array)
  np.testing.assert_array_equal(np.asarray(arr), np.arange(8.0))


def test_to_host_place_and_collectives_single_process():
  """One process: ``place`` keeps typed keys typed, ``to_host`` returns key
  data and plain numpy; ``any_process`` / ``barrier`` are local. (Their
  cross-process paths run in tests/multihost_test.py.)"""
  import jax
  from jaxbdl.training import distributed, parallel
  keys = jax.random.split(jax.random.key(0), 2)
  placed = parallel.place({"k": keys, "x": np.arange(3.0)},
                          parallel.replicated(parallel.make_mesh("data")))
  assert jax.dtypes.issubdtype(placed["k"].dtype, jax.dtypes.prng_key)
  host = distributed.to_host(placed)
  np.testing.assert_array_equal(host["k"],
                                np.asarray(jax.random.key_data(keys)))
  assert isinstance(host["x"], np.ndarray) and host["k"].shape == (2, 2)
  assert distributed.any_process(True) is True
  assert distributed.any_process(False) is False
  distributed.barrier("single")  # returns at once


if __name__ == "__main__" and "--child" in sys.argv:
  _child()
