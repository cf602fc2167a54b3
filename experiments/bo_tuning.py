"""Hyper-parameter tuning by Bayesian optimisation vs random and grid search.

UCI part: for each seed, a validation part (``valid_fraction`` of the
TRAINING rows of one UCI split) is carved out; the learning rate, prior scale
and dropout rate of MC dropout (log scales, box ``config.space``) are chosen
to minimise the validation negative log-likelihood (standardised units) by

- ``bo``: :func:`jaxbdl.gaussian_processes.bo.minimize` (GP-EI, Kriging-believer batches),
- ``random``: uniform on the log-scale box,
- ``grid``: the existing grid (``config.grid``; the remaining fields at their
  ``config.uci`` values),

each with the same budget: the grid's size. Every strategy evaluates
``batch_size`` configurations at a time, trained as one vmapped program (one
compilation serves them all). The best-validation configuration of each is
retrained on the whole training split and scored on the test split (test
RMSE and log-likelihood in original units) -- selection never sees test rows.
Reported: best validation NLL against the number of evaluations, the number
of evaluations BO needs to reach the grid's best validation score, and the
test metrics per strategy.

Benchmark part: BO vs random search on Branin (minimum 0.397887) and
Hartmann-6 (minimum -3.32237), gap to the known optimum after the budget.

References:
  Snoek, Larochelle & Adams (2012), "Practical Bayesian Optimization of
    Machine Learning Algorithms", NeurIPS.
  Bergstra & Bengio (2012), "Random Search for Hyper-Parameter Optimization",
    JMLR 13.
  Gal & Ghahramani (2016), "Dropout as a Bayesian Approximation", ICML
    (the UCI protocol and the dropout grid).
"""
from __future__ import annotations

import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from experiments import launch
from jaxbdl.gaussian_processes import bo
from jaxbdl import data as data_lib
from jaxbdl.evaluation import metrics
from jaxbdl.evaluation import results as results_lib
from experiments import uci_protocol
from jaxbdl.bayes import likelihoods as lik_lib
from jaxbdl.bayes import registry

STRATEGIES = ("bo", "random", "grid")
BENCHMARKS = {"branin": (bo.branin, bo.BRANIN_BOUNDS, bo.BRANIN_MINIMUM),
              "hartmann6": (bo.hartmann6, bo.HARTMANN6_BOUNDS,
                            bo.HARTMANN6_MINIMUM)}


def _validate(config) -> None:
  if config.method not in registry.TUNABLE:
    raise ValueError(f"config.method: unknown method {config.method!r}")
  unknown = [f for f in list(config.space) + list(config.grid)
             if f not in registry.TUNABLE[config.method]]
  if unknown:
    raise ValueError(f"config.space/grid: {unknown} not tunable for "
                     f"{config.method!r}; valid: "
                     f"{list(registry.TUNABLE[config.method])}")
  missing = [f for f in config.grid if f not in config.space]
  if missing:
    raise ValueError(f"config.grid fields {missing} are not in config.space")
  if not 0 < config.valid_fraction < 1:
    raise ValueError(f"config.valid_fraction must be in (0, 1), got "
                     f"{config.valid_fraction}")
  if int(config.batch_size) < 1:
    raise ValueError(f"config.batch_size must be >= 1, got {config.batch_size}")
  for name in config.benchmarks:
    if name not in BENCHMARKS:
      raise ValueError(f"config.benchmarks: unknown {name!r}; valid: "
                       f"{sorted(BENCHMARKS)}")
  path = os.path.join(config.data_dir, config.dataset)
  if config.dataset and not os.path.isdir(path):
    raise ValueError(f"config.data_dir/dataset: no folder {path} (cwd "
                     f"{os.getcwd()}); pass --config.data_dir=ROOT_OF_UCI_"
                     "FOLDERS (the default ../shared/data/uci is relative to "
                     "the repository root)")


def _validation_objective(config, split: data_lib.UCISplit, key):
  """The ONLY use of the UCI protocol / method registry in this experiment.

  Returns ``(objective, test_metrics)``: ``objective(hp [q, d]) -> [q]`` is
  the validation NLL (standardised units, capped at ``config.nll_cap``) of
  ``config.method`` trained with the ``q`` hyper-parameter vectors (fields in
  ``config.space`` order) on the fitting rows; ``test_metrics(hp [q, d]) ->
  (rmse [q], ll [q])`` retrains on all training rows and scores the test
  rows in original units. Each is one ``jit(vmap)`` program over ``q``;
  common random numbers (one training key) across configurations.
  """
  fields = tuple(config.space)
  ucfg = config.uci
  n, d = split.x_train.shape
  n_val = int(round(n * config.valid_fraction))
  k_perm, k_train, k_pred = jax.random.split(key, 3)
  perm = np.asarray(jax.random.permutation(k_perm, n))
  fit = {"x": split.x_train[perm[n_val:]], "y": split.y_train[perm[n_val:]]}
  valid = {"x": split.x_train[perm[:n_val]], "y": split.y_train[perm[:n_val]]}
  full = {"x": split.x_train, "y": split.y_train}
  test = {"x": split.x_test, "y": split.y_test}

  def score(train_data, eval_data):
    def one(hp_vec):
      hp = registry.default_hparams(config.method, ucfg)
      hp.update({f: hp_vec[i] for i, f in enumerate(fields)})
      method, _ = uci_protocol.method_for(config.method, ucfg,
                                       train_data["x"].shape[0])
      state, _ = method.fit(k_train, train_data, hp, None)
      pred = method.predict(state, eval_data["x"], k_pred, hp)
      ll = lik_lib.mixture_log_prob(pred, eval_data["y"])
      mean = lik_lib.mixture_summary(pred)["mean"]
      return jnp.mean(ll), metrics.rmse(eval_data["y"], mean)
    return jax.jit(jax.vmap(one))

  valid_fn, test_fn = score(fit, valid), score(full, test)
  y_std = float(split.y_std)

  def objective(hp):
    ll, _ = valid_fn(jnp.asarray(hp, jnp.float32))
    nll = -np.asarray(ll, np.float64)
    return np.where(np.isfinite(nll), np.minimum(nll, config.nll_cap),
                    config.nll_cap)

  def test_metrics(hp):
    ll, rmse = test_fn(jnp.asarray(hp, jnp.float32))
    return (np.asarray(rmse, np.float64) * y_std,
            np.asarray(ll, np.float64) - np.log(y_std))

  return objective, test_metrics


def _batched(objective, points, q):
  """Evaluates ``points [n, d]`` in chunks of ``q`` rows (last one padded)."""
  out = []
  for start in range(0, len(points), q):
    chunk = points[start:start + q]
    pad = q - len(chunk)
    full = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
    out.append(objective(full)[:len(chunk)])
  return np.concatenate(out)


def _grid_points(config) -> np.ndarray:
  fields = tuple(config.space)
  mesh = np.meshgrid(*[np.asarray(config.grid[f], np.float64)
                       for f in config.grid], indexing="ij")
  cols = {f: m.reshape(-1) for f, m in zip(config.grid, mesh)}
  g = len(next(iter(cols.values())))
  return np.stack([cols[f] if f in cols else np.full(g, float(
      config.uci[config.method][f] if f in config.uci[config.method]
      else config.uci[f])) for f in fields], axis=1)


def _search(config, objective, bounds, key, budget):
  """Histories ``{strategy: (x [budget, d], y [budget])}``."""
  q = int(config.batch_size)
  out = {}
  res = bo.minimize(lambda x: objective(x), bounds, jax.random.fold_in(key, 0),
                    budget, q, log_scale=True)
  out["bo"] = (res.x_history, res.y_history)
  u = np.asarray(jax.random.uniform(jax.random.fold_in(key, 1),
                                    (budget, bounds.shape[0])), np.float64)
  x_rand = np.asarray(bo.from_unit(u, bounds, True), np.float64)
  out["random"] = (x_rand, _batched(objective, x_rand, q))
  x_grid = _grid_points(config)
  out["grid"] = (x_grid, _batched(objective, x_grid, q))
  return out


def _uci_part(config):
  dataset = data_lib.load_uci(os.path.join(config.data_dir, config.dataset))
  split = data_lib.uci_split(dataset, int(config.split))
  bounds = np.array([config.space[f] for f in config.space], np.float64)
  budget = len(_grid_points(config))
  rows, curves, evals_to_grid = [], {}, []
  for seed in config.seeds:
    t0 = time.time()
    key = jax.random.key(int(seed))
    objective, test_metrics = _validation_objective(
        config, split, jax.random.fold_in(key, 0))
    hist = _search(config, objective, bounds, jax.random.fold_in(key, 1),
                   budget)
    best_x = np.stack([h[0][np.argmin(h[1])] for h in hist.values()])
    rmse, ll = test_metrics(_pad_rows(best_x, int(config.batch_size)))
    grid_best = float(np.min(hist["grid"][1]))
    bo_curve = np.minimum.accumulate(hist["bo"][1])
    reach = np.nonzero(bo_curve <= grid_best)[0]
    n_reach = int(reach[0]) + 1 if reach.size else None
    evals_to_grid.append(n_reach)
    for i, s in enumerate(hist):
      curves[(s, int(seed))] = np.minimum.accumulate(hist[s][1])
      rows.append({"seed": int(seed), "strategy": s, "budget": budget,
                   "best_valid_nll": float(np.min(hist[s][1])),
                   **{f: float(best_x[i, j]) for j, f in enumerate(config.space)},
                   "test_rmse": float(rmse[i]), "test_ll": float(ll[i])})
    logging.info("seed %d: %s; BO reaches the grid's best after %s, %.0fs",
                 seed, [(r["strategy"], round(r["best_valid_nll"], 4))
                        for r in rows[-3:]], n_reach, time.time() - t0)
  return rows, curves, evals_to_grid, budget


def _pad_rows(x, q):
  pad = (-len(x)) % q
  return np.concatenate([x, np.repeat(x[-1:], pad, 0)]) if pad else x


def _benchmark_part(config):
  rows, curves = [], {}
  for name in config.benchmarks:
    fn, bounds, minimum = BENCHMARKS[name]
    spec = config.benchmarks[name]
    n, q = int(spec.num_evaluations), int(spec.batch_size)
    for seed in config.benchmark_seeds:
      t0 = time.time()
      key = jax.random.key(int(seed))
      with jax.enable_x64(True):
        res = bo.minimize(fn, bounds, key, n, q)
      u = np.asarray(jax.random.uniform(jax.random.fold_in(key, 1),
                                        (n, bounds.shape[0])), np.float64)
      rand = fn(bounds[:, 0] + u * (bounds[:, 1] - bounds[:, 0]))
      for s, ys in (("bo", res.y_history), ("random", rand)):
        curves[(name, s, int(seed))] = np.minimum.accumulate(ys) - minimum
        rows.append({"function": name, "seed": int(seed), "strategy": s,
                     "evaluations": n, "batch_size": q,
                     "best": float(np.min(ys)), "known_minimum": minimum,
                     "gap": float(np.min(ys) - minimum)})
      logging.info("%s seed %d: BO gap %.4g, random gap %.4g, %.0fs", name,
                   seed, rows[-2]["gap"], rows[-1]["gap"], time.time() - t0)
  return rows, curves


def _plot(curves, bench_curves, config, path):
  plt = results_lib.pyplot()
  ncols = 1 + len(config.benchmarks)
  fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 3.8))
  axes = np.atleast_1d(axes)
  colours = {"bo": "C0", "random": "C1", "grid": "C2"}
  for (s, seed), c in curves.items():
    axes[0].plot(np.arange(1, len(c) + 1), c, color=colours[s], alpha=0.8,
                 label=s if seed == config.seeds[0] else None)
  axes[0].set_xlabel("evaluations (trained configurations)")
  axes[0].set_ylabel("best validation NLL (standardised units)")
  axes[0].set_title(f"{config.method} on {config.dataset}")
  for ax, name in zip(axes[1:], config.benchmarks):
    for (fname, s, seed), c in bench_curves.items():
      if fname == name:
        ax.semilogy(np.arange(1, len(c) + 1), np.maximum(c, 1e-8),
                    color=colours[s], alpha=0.8,
                    label=s if seed == config.benchmark_seeds[0] else None)
    ax.set_xlabel("function evaluations")
    ax.set_ylabel("best value - known minimum (published)")
    ax.set_title(name)
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95))
  fig.tight_layout()
  results_lib.save_figure(fig, path)


def run(config, workdir: str) -> dict:
  """Runs the UCI and benchmark-function studies; writes results and a plot."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t0 = time.time()
  rows, curves, evals_to_grid, budget = _uci_part(config)
  bench_rows, bench_curves = _benchmark_part(config)
  summary = []
  for s in STRATEGIES:
    rs = [r for r in rows if r["strategy"] == s]
    summary.append({"strategy": s, "budget": budget,
                    "mean_best_valid_nll": float(np.mean(
                        [r["best_valid_nll"] for r in rs])),
                    "mean_test_rmse": float(np.mean([r["test_rmse"] for r in rs])),
                    "mean_test_ll": float(np.mean([r["test_ll"] for r in rs]))})
  results = {"uci_rows": rows, "uci_summary": summary,
             "bo_evaluations_to_reach_grid_best": evals_to_grid,
             "benchmark_rows": bench_rows,
             "uci_curves": {f"{s}/{seed}": c for (s, seed), c in curves.items()},
             "config": config.to_dict(), "seconds": time.time() - t0,
             "jax_backend": jax.default_backend(),
             "load_average_at_end": list(os.getloadavg())}
  fields = list(config.space)
  table = (f"# BO vs random vs grid: {config.method} on {config.dataset} "
           f"(split {config.split}), budget {budget}\n\n"
           + results_lib.markdown_table(
               rows, ["seed", "strategy", "best_valid_nll", *fields,
                      "test_rmse", "test_ll"], precision=4)
           + "\n" + results_lib.markdown_table(
               summary, ["strategy", "budget", "mean_best_valid_nll",
                         "mean_test_rmse", "mean_test_ll"], precision=4)
           + f"\nEvaluations BO needed to reach the grid's best validation "
             f"NLL (per seed; None = not within {budget}): {evals_to_grid}\n\n"
           + "## Test functions (known minima, published)\n\n"
           + results_lib.markdown_table(
               bench_rows, ["function", "seed", "strategy", "evaluations",
                            "batch_size", "best", "known_minimum", "gap"],
               precision=5))
  results_lib.write_outputs(workdir, results, table)
  _plot(curves, bench_curves, config, os.path.join(workdir, "bo_tuning.png"))
  return results


if __name__ == "__main__":
  launch.main("bo_tuning", run)
