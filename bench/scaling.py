r"""Scaling benchmark: sharded steps on 1/2/4 devices, and CPU vs GPU.

Default mode (runs anywhere): for 1, 2 and 4 devices -- forced host (CPU)
devices, ``XLA_FLAGS=--xla_force_host_platform_device_count=M``, each in its
own subprocess so JAX starts with that many devices -- it times

* ``data``: one data-parallel train step (:mod:`jaxbdl.training.parallel`, batch
  sharded, parameters replicated) of an MLP on a batch of 1024, and
* ``runs``: one epoch of ``R = 8`` vmapped UCI-sized fits (MLP 1x50, 9000x8
  data, batch 32) with the run axis sharded,

and reports time per step / epoch and the memory per device (JAX's
``memory_stats()`` peak where the backend has it, else the bytes of the
sharded state and batch held by device 0). Forced host devices share the
machine's CPU cores, so on a 2-core machine more devices cannot be faster;
the table shows the overhead of the partitioning and the memory split.

``--gpu`` mode (for a GPU machine; falls back to CPU only): in one process,
the same programs on the CPU device and on the GPU device side by side:
the UCI-sized Bayes-by-backprop (mean-field VI, :mod:`jaxbdl.vi`) train epoch
(MLP 1x50, 9000x8, batch 32 and 1024; 1 and 20 vmapped runs) and the
estimator study's vmapped gradient program
(``experiments.estimator_variance.make_mc_program``) at a large replica count.

Run::

  python bench/scaling.py              # -> bench/results/scaling.{json,md}
  python bench/scaling.py --gpu        # -> bench/results/scaling_gpu.{json,md}
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

N_UCI, D_UCI = 9000, 8


def _timeit(fn, repeats: int) -> float:
  """Best wall seconds of ``repeats`` calls of ``fn()`` (which must block),
  after one warm-up call (compilation)."""
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return min(times)


def _peak_bytes(device):
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if not stats:
    return None
  return int(stats.get("peak_bytes_in_use", stats.get("bytes_in_use", 0)))


def _mlp_problem(features, n, d, seed=0):
  import jax.numpy as jnp
  import numpy as np
  from jaxbdl.nn import networks
  net = networks.MLP(features=tuple(features))
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = np.sin(x.sum(axis=1)).astype(np.float32)

  def loss_fn(params, model_state, batch, key):
    del key
    pred = net.apply({"params": params}, batch["x"])[:, 0]
    loss = jnp.mean(jnp.square(pred - batch["y"]))
    return loss, (model_state, {})

  init = lambda key: net.init(key, jnp.zeros((1, d), jnp.float32))["params"]
  return {"x": x, "y": y}, loss_fn, init


def child(num_devices: int) -> dict:
  """Runs inside a subprocess with ``num_devices`` forced host devices."""
  import jax
  import optax
  from jaxbdl.training import parallel, train
  assert jax.device_count() == num_devices, jax.devices()
  out = {"devices": num_devices, "platform": jax.devices()[0].platform}
  opt = optax.adam(1e-3)
  key = jax.random.key(0)

  # Data-parallel step: MLP (256, 256, 1), batch 1024.
  data, loss_fn, init = _mlp_problem((256, 256, 1), 1024, D_UCI)
  s = parallel.make_strategy("data")
  step = parallel.jit_data_parallel_step(
      train.make_train_step(s.loss(loss_fn), opt), s.mesh)
  state = s.state(train.init_train_state(init(key), opt))
  batch = parallel.shard_leading_axis(data, s.mesh, "batch")
  run = lambda: jax.block_until_ready(step(state, batch, key))
  out["data_step_ms"] = 1e3 * _timeit(run, 10)
  out["data_state_bytes"] = parallel.per_device_bytes(state)
  out["data_batch_bytes"] = parallel.per_device_bytes(batch)
  out["data_peak_bytes"] = _peak_bytes(jax.devices()[0])

  # Run-sharded epoch: 8 UCI-sized fits (MLP 1x50, 9000x8, batch 32).
  data, loss_fn, init = _mlp_problem((50, 1), N_UCI, D_UCI)
  r = 8
  s = parallel.make_strategy("runs")
  fitter = parallel.vmap_fitter(train.make_fitter(loss_fn, opt, batch_size=32))
  keys = jax.random.split(key, r)
  states = jax.jit(jax.vmap(lambda k: train.init_train_state(init(k), opt)))(
      keys)
  fs = s.state(jax.jit(fitter.init)(states))
  shared, keys = s.shared(data), s.per_run(keys)
  epoch = jax.jit(functools.partial(fitter.run_epochs, num_epochs=1))
  run = lambda: jax.block_until_ready(epoch(fs, shared, keys))
  out["runs_epoch_ms"] = 1e3 * _timeit(run, 3)
  out["runs_state_bytes"] = parallel.per_device_bytes(fs)
  out["runs_data_bytes"] = parallel.per_device_bytes(shared)
  out["runs_peak_bytes"] = _peak_bytes(jax.devices()[0])
  return out


def scaling(device_counts=(1, 2, 4)) -> list[dict]:
  rows = []
  for m in device_counts:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={m}")
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, os.path.abspath(__file__),
                           "--child", str(m)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
      raise RuntimeError(f"child with {m} devices failed:\n"
                         f"{proc.stderr[-3000:]}")
    rows.append(json.loads(lines[-1][len("RESULT "):]))
    print(rows[-1], flush=True)
  return rows


def gpu_mode() -> list[dict]:
  """CPU vs GPU in one process (GPU rows only where a GPU exists)."""
  import jax
  import jax.numpy as jnp
  import optax
  from experiments import estimator_variance as ev
  from jaxbdl.nn import networks
  from jaxbdl.training import parallel, train
  from jaxbdl.bayes import elbo, likelihoods, priors
  backends = [("cpu", jax.devices("cpu")[0])]
  try:
    backends.append(("gpu", jax.devices("gpu")[0]))
  except RuntimeError:
    print("no GPU: timing the CPU only", flush=True)
  rows = []
  data, _, init = _mlp_problem((50, 1), N_UCI, D_UCI)
  net = networks.MLP(features=(50, 1))
  apply_fn = lambda w, x: net.apply({"params": w}, x)
  prior = priors.gaussian(1.0)
  noise = likelihoods.gaussian(0.5)
  loss_fn = elbo.make_loss_fn(elbo.weight_space(apply_fn), noise, prior,
                              num_data=N_UCI)
  opt = optax.adam(1e-3)

  def bnn_state(k):
    params = elbo.init_params(elbo.init_mean_field(init(k), 1e-3), prior, noise)
    return train.init_train_state(params, opt)

  for batch_size in (32, 1024):
    for runs in (1, 20):
      fitter = parallel.vmap_fitter(
          train.make_fitter(loss_fn, opt, batch_size=batch_size))
      keys = jax.random.split(jax.random.key(0), runs)
      fs0 = jax.jit(lambda k: fitter.init(jax.vmap(bnn_state)(k)))(keys)
      epoch = jax.jit(functools.partial(fitter.run_epochs, num_epochs=1))
      row = {"program": "BNN (VI) epoch, MLP 1x50, 9000x8",
             "batch": batch_size, "runs": runs,
             "steps": N_UCI // batch_size}
      for name, dev in backends:
        fs, d, k = jax.device_put((fs0, data, keys), dev)
        t = _timeit(lambda: jax.block_until_ready(epoch(fs, d, k)), 2)
        row[f"{name}_ms"] = 1e3 * t
        row[f"{name}_ms_per_step"] = 1e3 * t / (N_UCI // batch_size)
      rows.append(row)
      print(row, flush=True)

  spec = ev.ESTIMATORS["score_function"]
  for replicas in (20_000, 100_000):
    # program(locs [S], scales [S], ks [C, K], key): S=2 settings, C=1 cost.
    program = ev.make_mc_program(spec, ("cos",), 4, replicas)
    locs, scales = jnp.array([1.0, 0.5]), jnp.array([1.0, 2.0])
    ks = jnp.linspace(0.25, 5.0, 9)[None, :]
    row = {"program": "estimator_variance MC program (score fn, cos)",
           "batch": 4, "runs": 2 * 9 * replicas, "steps": 1}
    for name, dev in backends:
      args = jax.device_put((locs, scales, ks, jax.random.key(0)), dev)
      t = _timeit(lambda: jax.block_until_ready(program(*args)), 2)
      row[f"{name}_ms"] = 1e3 * t
      row[f"{name}_ms_per_step"] = 1e3 * t
    rows.append(row)
    print(row, flush=True)
  return rows


def _write(name: str, results: dict, table: str) -> None:
  from jaxbdl.evaluation import results as results_lib
  out = os.path.join(ROOT, "bench", "results")
  os.makedirs(out, exist_ok=True)
  results_lib.atomic_write_json(os.path.join(out, name + ".json"),
                                {**results,
                                 "provenance": results_lib.provenance()})
  results_lib.atomic_write_text(os.path.join(out, name + ".md"), table)
  print(table)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--gpu", action="store_true",
                      help="CPU vs GPU timings in one process.")
  parser.add_argument("--child", type=int, default=None,
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child is not None:
    print("RESULT " + json.dumps(child(args.child)), flush=True)
    return
  import platform
  from jaxbdl.evaluation import results as results_lib
  meta = {"machine": platform.platform(), "cpu_count": os.cpu_count(),
          "python": platform.python_version()}
  t0 = time.time()
  if args.gpu:
    rows = gpu_mode()
    cols = ["program", "batch", "runs", "steps", "cpu_ms", "cpu_ms_per_step"]
    if any("gpu_ms" in r for r in rows):
      cols += ["gpu_ms", "gpu_ms_per_step"]
    table = ("CPU vs GPU, same process (best of 2 after a warm-up; `runs` "
             "= vmapped runs or MC replicas x settings).\n\n" +
             results_lib.markdown_table(rows, cols, precision=3))
    meta["seconds"] = time.time() - t0
    _write("scaling_gpu", {"meta": meta, "rows": rows}, table)
    return
  rows = scaling()
  for r in rows:
    for k in ("data_peak_bytes", "runs_peak_bytes"):
      r[k] = "n/a" if r[k] is None else r[k]
  cols = ["devices", "platform", "data_step_ms", "data_state_bytes",
          "data_batch_bytes", "data_peak_bytes", "runs_epoch_ms",
          "runs_state_bytes", "runs_data_bytes", "runs_peak_bytes"]
  table = (
      "Forced host devices (XLA_FLAGS=--xla_force_host_platform_device_count"
      f"), {os.cpu_count()} CPU cores shared by all devices. `data`: one "
      "data-parallel step, MLP (256, 256, 1), batch 1024 sharded; `runs`: one "
      "epoch of 8 vmapped UCI-sized fits (MLP 1x50, 9000x8, batch 32) with "
      "the run axis sharded. Bytes = what device 0 holds of the state "
      "(replicated for `data`, 1/M of the runs for `runs`) and of the batch "
      "(1/M) or the shared training set (replicated); `peak` = JAX "
      "memory_stats, n/a on CPU.\n\n" +
      results_lib.markdown_table(rows, cols, precision=2))
  meta["seconds"] = time.time() - t0
  _write("scaling", {"meta": meta, "rows": rows}, table)


if __name__ == "__main__":
  main()
