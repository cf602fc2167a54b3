r"""A checkpointed, resumable, optionally sharded MAP MLP regression fit.

``num_runs`` MAP networks (different seeds) train as one vmapped program with
:func:`jaxbdl.training.resume.resumable_fit`: the fit state is checkpointed every
``checkpoint_every_epochs`` epochs to ``WORKDIR/checkpoints``; killing the
process at any point and starting the same command again resumes from the
latest good checkpoint and ends with bitwise the same parameters as an
uninterrupted run (CPU). ``config.parallel`` lays the fit out on devices
(:mod:`jaxbdl.training.parallel`): ``"data"`` shards every minibatch, ``"runs"`` shards
the seeds.

Faults it survives (see ``docs/notes/faults.md``): a resume with a changed
config or data is refused (the checkpoints carry a fingerprint of
:data:`RESUMABLE_FIELDS`-free config, data digests and package versions; pass
``--overwrite`` to start over); a second process on the same workdir exits at
once (:data:`LOCKED_EXIT_CODE`, naming the holder's pid); SIGTERM/SIGINT
finish the current chunk, checkpoint and exit with
:data:`jaxbdl.training.resume.PREEMPTED_EXIT_CODE` (75); several processes
(``--num_processes``) train one fit on global arrays, and only process 0
writes the results files. The loss is the per-datum negative log joint
``-(1/N) [sum_n log N(y_n; f_W(x_n), noise_scale^2) + log N(W; 0, s^2 I)]``.

Run::

  python -m experiments.train_resumable --workdir workdirs/train_resumable \
      [--data_dir ../shared/data/uci/yacht] \
      [--config experiments/configs/train_resumable.py[:quick]] \
      [--config.parallel=data] [--sleep_per_chunk 0.5] [--overwrite]
  # multi-host: add --coordinator_address host0:1234 --num_processes 2
  #             --process_id {0,1}  (see jaxbdl.training.distributed)

Outputs in ``--workdir``: ``results.json``, ``results.md``, ``loss.png``,
``final_params.npz`` (the final parameters, keys = pytree paths) and
``checkpoints/``.

References:
  Bishop (2006), Sec. 3.3 (MAP with a Gaussian prior); Hernandez-Lobato &
    Adams (2015) for the UCI splits.
"""
from __future__ import annotations

import functools
import io
import os
import sys
import time
from typing import Any, Optional

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import optax

from experiments import launch
from jaxbdl import data as data_lib
from jaxbdl.training import distributed
from jaxbdl.bayes import likelihoods
from jaxbdl.evaluation import metrics
from jaxbdl.nn import networks
from jaxbdl.nn import objectives
from jaxbdl.training import parallel
from jaxbdl.bayes import priors
from jaxbdl.evaluation import results as results_lib
from jaxbdl.training import resume
from jaxbdl.training import train

TABLE_COLUMNS = ("run", "test_rmse", "test_log_lik", "final_train_loss")
# Config fields that may change when a run is resumed (they do not change
# what the run computes, only how long, how often it is saved, on which
# devices, and what happens after a NaN); every other field is part of the
# run's fingerprint.
RESUMABLE_FIELDS = ("num_epochs", "checkpoint_every_epochs", "keep",
                    "parallel", "on_nonfinite")
# Exit codes of main() (sysexits.h): another process holds the workdir;
# the checkpoints belong to a different run (config/data/versions).
LOCKED_EXIT_CODE = 73      # EX_CANTCREAT
MISMATCH_EXIT_CODE = 78    # EX_CONFIG


def _validate(config) -> None:
  if config.parallel not in parallel.STRATEGIES:
    raise ValueError(f"unknown config.parallel {config.parallel!r}; expected "
                     f"one of {list(parallel.STRATEGIES)}")
  if config.on_nonfinite not in resume.ON_NONFINITE:
    raise ValueError(f"unknown config.on_nonfinite {config.on_nonfinite!r}; "
                     f"expected one of {list(resume.ON_NONFINITE)}")
  networks.get_activation(config.activation)  # Raises on unknown names.
  for name in ("num_runs", "num_epochs", "batch_size",
               "checkpoint_every_epochs", "keep"):
    if isinstance(config[name], bool) or int(config[name]) < 1:
      raise ValueError(f"config.{name} must be an int >= 1, got "
                       f"{config[name]!r}")
  for name in ("noise_scale", "prior_scale", "learning_rate"):
    if not config[name] > 0:
      raise ValueError(f"config.{name} must be > 0, got {config[name]!r}")
  if not config.hidden or any(int(h) < 1 for h in config.hidden):
    raise ValueError(f"config.hidden must be positive sizes, got "
                     f"{tuple(config.hidden)}")


def load_data(config, data_dir: Optional[str]) -> dict[str, Any]:
  """Standardised train/test arrays ``x [N, D]``, ``y [N]`` and ``y_std``."""
  if data_dir:
    split = data_lib.uci_split(data_lib.load_uci(data_dir), int(config.split))
    return dict(x_train=split.x_train, y_train=split.y_train,
                x_test=split.x_test, y_test=split.y_test,
                y_std=float(split.y_std),
                name=os.path.basename(os.path.normpath(data_dir)))
  x, y = data_lib.load_diabetes()
  x_tr, y_tr, x_te, y_te = data_lib.train_test_split_arrays(
      int(config.split_seed), x, y, config.test_fraction)
  (x_tr, x_te), _, _ = data_lib.standardise(x_tr, x_te)
  (y_tr, y_te), _, y_std = data_lib.standardise(y_tr, y_te)
  return dict(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
              y_std=float(y_std), name="diabetes")


def _npz_bytes(tree) -> bytes:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  arrays = {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  return buf.getvalue()


@functools.partial(jax.jit, static_argnums=0)
def _evaluate(apply, params, x_test, y_test, y_std, noise_scale) -> dict:
  """Test RMSE and log-likelihood (original units) per run and of the ensemble.

  Args:
    apply: ``apply(params, x [N, D]) -> [N]`` standardised predictions.
    params: run-stacked parameters ``[R, ...]``.
    x_test, y_test: ``[N, D]``, ``[N]`` (standardised).
    y_std: scalar target std; noise_scale: the likelihood's std (std units).

  Returns:
    ``rmse``, ``log_lik`` ``[R]``; ``ens_rmse``, ``ens_log_lik`` scalars (the
    ensemble is the equal-weight mixture of the runs' Gaussians).
  """
  means = jax.vmap(apply, in_axes=(0, None))(params, x_test)  # [R, N]
  var = jnp.square(noise_scale)
  ll_one = jax.vmap(lambda m: metrics.gaussian_predictive_log_likelihood(
      y_test, m[None, :], var))(means)  # [R, N]
  ll_ens = metrics.gaussian_predictive_log_likelihood(y_test, means, var)
  return {
      "rmse": jax.vmap(lambda m: metrics.rmse_original_units(
          y_test, m, y_std))(means),
      "log_lik": jnp.mean(metrics.denormalise_log_likelihood(ll_one, y_std),
                          axis=1),
      "ens_rmse": metrics.rmse_original_units(
          y_test, jnp.mean(means, axis=0), y_std),
      "ens_log_lik": jnp.mean(metrics.denormalise_log_likelihood(ll_ens,
                                                                 y_std))}


def fingerprint(config, d: dict) -> dict:
  """What defines this run: the config without :data:`RESUMABLE_FIELDS`, the
  digests of the test arrays and ``y_std`` (:func:`jaxbdl.training.resume.resumable_fit`
  adds the training arrays' digests and the package versions)."""
  fields = {k: v for k, v in config.to_dict().items()
            if k not in RESUMABLE_FIELDS}
  fields["data"] = d["name"]
  return resume.run_fingerprint(
      fields, test={"x": d["x_test"], "y": d["y_test"]},
      y_std=np.float64(d["y_std"]))


def run(config, workdir: str, data_dir: Optional[str] = None,
        sleep_per_chunk: float = 0.0, overwrite: bool = False) -> dict:
  """Trains (or resumes) the fit and writes the outputs; returns the results.

  With several processes every process calls it (same arguments); process 0
  alone writes the files.
  """
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  d = load_data(config, data_dir)
  n, dim = d["x_train"].shape
  if config.batch_size > n:
    raise ValueError(f"config.batch_size {config.batch_size} exceeds the "
                     f"{n} training examples")
  strategy = parallel.make_strategy(config.parallel)
  net = networks.MLP(features=tuple(config.hidden) + (1,),
                     activation=config.activation)
  apply = lambda params, x: net.apply({"params": params}, x)[:, 0]
  prior = priors.gaussian(float(config.prior_scale))
  loss_fn = objectives.scale_loss(
      objectives.make_map_loss_fn(
          objectives.stateless(apply),
          functools.partial(likelihoods.normal_log_prob,
                            scale=float(config.noise_scale)),
          lambda p: prior.log_prob({}, p),
          num_data=n), 1.0 / n)
  opt = optax.adam(config.learning_rate)
  fitter = parallel.vmap_fitter(train.make_fitter(
      strategy.loss(loss_fn), opt, batch_size=int(config.batch_size),
      step_wrapper=resume.step_wrapper_for(config.on_nonfinite)))

  x0 = jnp.zeros((1, dim), jnp.float32)

  @jax.jit
  def init(seed_key):
    # Per run r: init key fold_in(k_r, 0), fit key fold_in(k_r, 1).
    keys = jax.random.split(seed_key, config.num_runs)
    init_one = lambda k: train.init_train_state(
        net.init(jax.random.fold_in(k, 0), x0)["params"], opt)
    return (jax.vmap(init_one)(keys),
            jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys))

  state, fit_keys = init(jax.random.key(config.seed))
  state = strategy.state(state)
  train_data = strategy.shared({"x": d["x_train"], "y": d["y_train"]})

  def on_checkpoint(epoch, path):
    logging.info("epoch %d/%d checkpointed to %s", epoch, config.num_epochs,
                 path)
    if sleep_per_chunk > 0:
      time.sleep(sleep_per_chunk)

  t0 = time.time()
  res = resume.resumable_fit(
      fitter, state, train_data, strategy.per_run(fit_keys),
      num_epochs=int(config.num_epochs),
      checkpoint_dir=os.path.join(workdir, "checkpoints"),
      checkpoint_every_epochs=int(config.checkpoint_every_epochs),
      keep=int(config.keep), on_nonfinite=config.on_nonfinite,
      on_checkpoint=on_checkpoint, fingerprint=fingerprint(config, d),
      overwrite=overwrite)
  seconds = time.time() - t0

  final = distributed.to_host(res.state.params)
  ev = jax.device_get(_evaluate(apply, final, d["x_test"], d["y_test"],
                                jnp.float32(d["y_std"]),
                                jnp.float32(config.noise_scale)))
  final_loss = np.asarray(res.history["loss"])[:, -1]
  rows = [{"run": str(r), "test_rmse": float(ev["rmse"][r]),
           "test_log_lik": float(ev["log_lik"][r]),
           "final_train_loss": float(final_loss[r])}
          for r in range(config.num_runs)]
  rows.append({"run": "ensemble", "test_rmse": float(ev["ens_rmse"]),
               "test_log_lik": float(ev["ens_log_lik"]),
               "final_train_loss": float(np.mean(final_loss))})
  y_te = d["y_test"]
  table = results_lib.markdown_table(rows, TABLE_COLUMNS, precision=4)
  results = {
      "data": d["name"], "num_train": int(n), "num_test": int(len(y_te)),
      "parallel": config.parallel, "num_devices": strategy.num_devices,
      "num_processes": jax.process_count(),
      "num_epochs": int(config.num_epochs), "resumed_from": res.resumed_from,
      "seconds": seconds, "rows": rows,
      "train_loss": np.asarray(res.history["loss"]),
      "config": config.to_dict()}
  if not distributed.is_chief():
    return results
  results_lib.atomic_write_bytes(os.path.join(workdir, "final_params.npz"),
                                 _npz_bytes(final))
  results_lib.write_outputs(workdir, results, table)
  plt = results_lib.pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for r in range(config.num_runs):
    ax.plot(np.arange(1, config.num_epochs + 1), res.history["loss"][r],
            label=f"run {r}")
  ax.set_xlabel("epoch")
  ax.set_ylabel("per-datum negative log joint")
  ax.set_title(f"MAP MLP on {d['name']} ({config.parallel})")
  ax.legend()
  results_lib.save_figure(fig, os.path.join(workdir, "loss.png"))
  return results


def _define_flags() -> None:
  """Defines the flags; only when run as a program, so that several
  experiments can be imported in one process (tests)."""
  flags.DEFINE_string("workdir", None, "Output directory.", required=True)
  config_flags.DEFINE_config_file(
      "config", os.path.join(os.path.dirname(__file__), "configs", "train_resumable.py"), "Config file.",
      lock_config=True)
  flags.DEFINE_string(
      "data_dir", None, "UCI data set folder (standard split layout); the "
      "scikit-learn diabetes data when not given.")
  flags.DEFINE_float(
      "sleep_per_chunk", 0.0, "Seconds to sleep after each checkpoint (to make "
      "a kill land mid-run in tests).")
  flags.DEFINE_string(
      "coordinator_address", None, "host:port of process 0 (multi-host).")
  flags.DEFINE_integer("num_processes", 1, "Number of processes (multi-host).")
  flags.DEFINE_integer("process_id", 0, "This process's index.")
  flags.DEFINE_bool(
      "overwrite", False, "Delete the workdir's checkpoints and start over "
      "(needed to re-run a workdir with changed settings).")


def main(argv):
  del argv
  launch.quiet_logs(sys.argv)
  f = flags.FLAGS
  distributed.initialize(f.coordinator_address, f.num_processes, f.process_id)
  workdir = results_lib.ensure_workdir(f.workdir)
  try:
    # The workdir's lock, held for the whole run (results files included).
    with resume.workdir_lock(workdir):
      res = run(f.config, workdir, f.data_dir, f.sleep_per_chunk, f.overwrite)
  except resume.WorkdirLockedError as e:
    print(f"train_resumable: {e}", file=sys.stderr)
    sys.exit(LOCKED_EXIT_CODE)
  except resume.RunMismatchError as e:
    print(f"train_resumable: {e}", file=sys.stderr)
    sys.exit(MISMATCH_EXIT_CODE)
  except resume.Preempted as e:
    print(f"train_resumable: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
  if distributed.is_chief():
    print(results_lib.markdown_table(res["rows"], TABLE_COLUMNS, precision=4))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
