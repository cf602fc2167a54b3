"""UCI regression benchmark: 20 standard splits, jaxbdl methods vs published numbers.

  python -m experiments.uci_regression --workdir DIR \
      [--config experiments/configs/uci_regression.py[:quick]] \
      [--dataset NAME|all] [--method NAME[,NAME]|all] [--data_dir DIR] \
      [--num_splits N]

``--data_dir`` is the ROOT holding data-set folders (default
``../shared/data/uci``, relative to the repository root) or one data-set
folder. For every (data set, method)
all splits train as one vmapped, jitted program (``experiments.uci_protocol``
over ``jaxbdl.bayes.registry``). Every method is scored on a validation part
of each TRAINING split (after a hyper-parameter grid when ``--grid_search``),
and the per-data-set ``best_by_validation`` method is chosen on that score
only; the test split is scored once, after every choice.
Outputs in ``--workdir``: ``results.json`` (per data set and method:
``rmse_mean``, ``rmse_se``, ``ll_mean``, ``ll_se`` in original units, a
``per_split`` list, ``seconds``), ``results.md`` (jaxbdl beside the published
VI, PBP and MC-dropout columns of ``experiments/reference_results.py``, with
the target checks) and ``uci.png``. Both files are rewritten after every
(data set, method) and MERGED with the complete entries of an earlier run
in the same workdir (each entry records its config fingerprint); the file's
``complete`` is true only when every planned (data set, method) finished.
With ``--dataset all`` a broken folder is reported in ``errors``, the others
run, and the command exits non-zero at the end.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
from ml_collections import config_flags

from experiments import launch
from experiments import reference_results as ref
from jaxbdl.evaluation import metric_writers
from jaxbdl import data as data_lib
from jaxbdl.evaluation import results as results_lib
from jaxbdl.bayes import registry
from experiments import uci_protocol

def _define_flags() -> None:
  """Defines the flags; only when run as a program, so that several
  experiments can be imported in one process (tests)."""
  flags.DEFINE_string("workdir", None, "Output directory.", required=True)
  config_flags.DEFINE_config_file(
      "config", os.path.join(os.path.dirname(__file__), "configs",
                             "uci_regression.py"),
      "Config file.", lock_config=True)
  flags.DEFINE_string("dataset", None, "Data-set folder name or 'all' "
                      "(overrides config.dataset).")
  flags.DEFINE_string("method", None, "Method name(s), comma-separated, or "
                      "'all' (overrides config.method).")
  flags.DEFINE_string("data_dir", None, "Root of data-set folders, or one "
                      "folder (overrides config.data_dir).")
  flags.DEFINE_integer("num_splits", None, "Run only the first N splits "
                       "(overrides config.num_splits; 0 = all).")
  flags.DEFINE_bool("grid_search", None, "Select hyper-parameters per split "
                    "on a validation part over config.grid (overrides "
                    "config.grid_search).")


def resolve_datasets(data_dir: str, dataset: str) -> list[tuple[str, str]]:
  """Returns ``[(name, folder)]`` to run; validates the paths and names.

  Raises:
    FileNotFoundError: ``data_dir`` does not exist.
    ValueError: no data set in the standard layout, or an unknown name.
  """
  data_dir = os.path.expanduser(data_dir or "")
  if not data_dir or not os.path.isdir(data_dir):
    raise FileNotFoundError(
        f"--data_dir {data_dir!r} does not exist or is not a directory "
        f"(cwd {os.getcwd()}); pass --data_dir ROOT_OF_UCI_FOLDERS (or "
        "--config.data_dir); the default ../shared/data/uci is relative to "
        "the repository root")
  if os.path.isfile(os.path.join(data_dir, "data.txt")):
    # One data-set folder.
    name = os.path.basename(os.path.normpath(data_dir))
    if dataset not in ("all", name):
      raise ValueError(f"--data_dir is the folder of data set {name!r}, but "
                       f"--dataset is {dataset!r}")
    if not os.path.isfile(os.path.join(data_dir, "index_features.txt")):
      raise ValueError(f"{data_dir} has data.txt but no index files "
                       "(index_features.txt, index_target.txt, n_splits.txt, "
                       "index_train_K.txt, index_test_K.txt)")
    return [(name, data_dir)]
  names = data_lib.list_uci_datasets(data_dir)
  if not names:
    raise ValueError(f"no data set in the standard layout under {data_dir} "
                     "(expected folders holding data.txt, n_splits.txt and "
                     "the index files)")
  if dataset == "all":
    return [(n, os.path.join(data_dir, n)) for n in names]
  if dataset not in names:
    raise ValueError(f"unknown dataset {dataset!r} under {data_dir}; valid: "
                     f"{names} or 'all'")
  return [(dataset, os.path.join(data_dir, dataset))]


def _fmt(mean: float, se: float, num_splits: int = 2) -> str:
  """``mean ± SE``; one split has no standard error, and says so."""
  if not np.isfinite(mean):
    return "nan"
  if num_splits < 2:
    return f"{mean:.2f} (1 split, no SE)"
  return f"{mean:.2f} ± {se:.2f}"


def _ref(table, name, col):
  m = table.get(name, {}).get(col)
  return "-" if m is None else _fmt(*m)


def make_table(results: dict) -> str:
  """Markdown: jaxbdl beside published VI / PBP / MC dropout, and the checks."""
  rows = []
  for name, by_method in results["datasets"].items():
    for method, r in by_method.items():
      row = {"dataset": name,
             "method": method + (" (grid)" if "grid" in r else ""),
             "RMSE": _fmt(r["rmse_mean"], r["rmse_se"], r["num_splits"]),
             "RMSE VI": _ref(ref.RMSE, name, "vi"),
             "RMSE PBP": _ref(ref.RMSE, name, "pbp"),
             "RMSE MC-dropout": _ref(ref.RMSE, name, "mc_dropout"),
             "LL": _fmt(r["ll_mean"], r["ll_se"], r["num_splits"]),
             "LL VI": _ref(ref.LOG_LIKELIHOOD, name, "vi"),
             "LL PBP": _ref(ref.LOG_LIKELIHOOD, name, "pbp"),
             "LL MC-dropout": _ref(ref.LOG_LIKELIHOOD, name, "mc_dropout"),
             "splits": r["num_splits"], "epochs": r["num_epochs"],
             "seconds": f"{r['seconds'] + r.get('grid_seconds', 0.0):.0f}"}
      rows.append(row)
  table = results_lib.markdown_table(rows, precision=2) if rows else ""
  checks = [
      "", "Targets: (a) mfvi beats published VI on both RMSE and LL; "
      "(b) the jaxbdl method chosen on validation data is within one SE "
      "(of the MC-dropout number) of, or better than, MC dropout. "
      "Published columns (VI, PBP, MC-dropout) are the papers' numbers on "
      "all 20 splits (sources in results.json); RMSE in target units, LL in "
      "nats per test point; ± is one standard error over splits. Each check "
      "cell is True/False: whether THIS run met the target.", "",
      "| dataset | (a) mfvi < VI RMSE | (a) mfvi > VI LL | best RMSE (method) "
      "| (b) RMSE | best LL (method) | (b) LL |", "|---|---|---|---|---|---|---|"]
  for name, chk in results.get("checks", {}).items():
    checks.append(
        f"| {name} | {chk.get('mfvi_beats_vi_rmse', '-')} | "
        f"{chk.get('mfvi_beats_vi_ll', '-')} | {chk['best_rmse']:.3f} "
        f"({chk['best_rmse_method']}) | {chk['rmse_within_mc_dropout']} | "
        f"{chk['best_ll']:.3f} ({chk['best_ll_method']}) | "
        f"{chk['ll_within_mc_dropout']} |")
  splits = results.get("config", {}).get("num_splits", 0)
  if 0 < splits < 20:
    checks.insert(2, f"This run used {splits} of the 20 splits (a quick "
                  "config); quick configs are not expected to meet the "
                  "targets.")
  return table + "\n".join(checks) + "\n"


def best_by_validation(by_method: dict) -> Optional[dict]:
  """The method with the highest mean VALIDATION log-likelihood (held-out
  rows of the training splits) and its test metrics; never test-selected."""
  scored = {m: r for m, r in by_method.items() if "valid_ll_mean" in r
            and np.isfinite(r["valid_ll_mean"])}
  if not scored:
    return None
  best = max(scored, key=lambda m: scored[m]["valid_ll_mean"])
  r = scored[best]
  return {"method": best, "valid_ll_mean": r["valid_ll_mean"],
          "rmse_mean": r["rmse_mean"], "rmse_se": r["rmse_se"],
          "ll_mean": r["ll_mean"], "ll_se": r["ll_se"]}


def compute_checks(name: str, by_method: dict) -> Optional[dict]:
  """The target checks for one data set (None without reference numbers).

  (b) compares the method chosen on VALIDATION data (:func:`best_by_validation`)
  with MC dropout's published column; nothing is chosen by test score.
  """
  best = best_by_validation(by_method)
  if name not in ref.RMSE or best is None:
    return None
  vi_r, vi_l = ref.RMSE[name]["vi"][0], ref.LOG_LIKELIHOOD[name]["vi"][0]
  mc_r, mc_rse = ref.RMSE[name]["mc_dropout"]
  mc_l, mc_lse = ref.LOG_LIKELIHOOD[name]["mc_dropout"]
  out = {
      "best_rmse_method": best["method"], "best_rmse": best["rmse_mean"],
      "best_ll_method": best["method"], "best_ll": best["ll_mean"],
      # Within one SE: against the published mean +- its SE or our SE,
      # whichever is larger.
      "rmse_within_mc_dropout": bool(
          best["rmse_mean"] <= mc_r + max(mc_rse, best["rmse_se"])),
      "ll_within_mc_dropout": bool(
          best["ll_mean"] >= mc_l - max(mc_lse, best["ll_se"])),
  }
  if "mfvi" in by_method:
    out["mfvi_beats_vi_rmse"] = bool(by_method["mfvi"]["rmse_mean"] < vi_r)
    out["mfvi_beats_vi_ll"] = bool(by_method["mfvi"]["ll_mean"] > vi_l)
  return out


def _plot(results: dict, path: str) -> None:
  plt = results_lib.pyplot()
  names = list(results["datasets"])
  if not names:
    return
  fig, axes = plt.subplots(2, len(names), figsize=(3 * len(names), 6),
                           squeeze=False)
  for j, name in enumerate(names):
    by_method = results["datasets"][name]
    methods = list(by_method)
    for i, (metric, table, label) in enumerate(
        (("rmse", ref.RMSE, "test RMSE (target units)"),
         ("ll", ref.LOG_LIKELIHOOD, "test LL (nats per point)"))):
      ax = axes[i, j]
      ys = [by_method[m][f"{metric}_mean"] for m in methods]
      es = [by_method[m][f"{metric}_se"] for m in methods]
      ax.errorbar(range(len(methods)), ys, yerr=es, fmt="o",
                  label="jaxbdl (this run, ± 1 SE)")
      for col, style in (("vi", "r--"), ("pbp", "g:"), ("mc_dropout", "k-")):
        if name in table:
          ax.axhline(table[name][col][0], color=style[0],
                     linestyle=style[1:], label=_PUBLISHED[col])
      ax.set_xticks(range(len(methods)))
      ax.set_xticklabels(methods, rotation=60, fontsize=8)
      ax.set_title(name, fontsize=9)
      ax.set_ylabel(label)
  handles, labels = [], []
  for ax in axes.flat:    # the first panel with reference lines has them all
    h, lab = ax.get_legend_handles_labels()
    if len(h) > len(handles):
      handles, labels = h, lab
  fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95),
             fontsize=8)
  fig.tight_layout()
  results_lib.save_figure(fig, path)


_PUBLISHED = {
    "vi": "published VI (Graves 2011, via Gal & Ghahramani 2016)",
    "pbp": "published PBP (Hernandez-Lobato & Adams 2015)",
    "mc_dropout": "published MC dropout (Gal & Ghahramani, 2018 re-run)",
}


def _method_grid(config, method: str) -> Optional[dict]:
  """``{field: [values]}`` to search for ``method``, or None (fixed config)."""
  if not config.grid_search or method not in config.grid:
    return None
  return {f: list(v) for f, v in config.grid[method].items()}


def _grid_summary(r: dict) -> dict:
  """What the per-split selection chose and how the grid scored (JSON-able)."""
  fields = sorted(r["grid"])
  return {
      "grid": {f: [float(v) for v in r["grid"][f]] for f in fields},
      "grid_criterion": "validation log-likelihood",
      "grid_valid_ll_mean": [float(v) for v in np.mean(r["valid_ll"], 1)],
      "grid_valid_rmse_mean": [float(v) for v in np.mean(r["valid_rmse"], 1)],
      "chosen": [int(c) for c in r["chosen"]],
      "chosen_hparams": {f: [float(v) for v in r["hparams"][f]]
                         for f in fields},
      "grid_seconds": float(r["grid_seconds"]),
  }


def check_inputs(config) -> tuple[list[str], list[tuple[str, str]]]:
  """``(methods, datasets)`` of ``config``, checked before any work; raises
  ``ValueError`` / ``FileNotFoundError`` with one line naming the problem."""
  methods = registry.check_names(
      str(config.method), uci_protocol.uci_model(config, "map").module)
  if config.num_splits < 0:
    raise ValueError(f"num_splits must be >= 0, got {config.num_splits}")
  return methods, resolve_datasets(config.data_dir, config.dataset)


def run(config, workdir: str, checked=None) -> dict:
  """Runs the benchmark described by ``config``; writes outputs to ``workdir``.

  ``checked``: what :func:`check_inputs` returned for ``config`` (the
  command line checks first), else it is called here.
  """
  methods, datasets = checked or check_inputs(config)
  fingerprint = hashlib.sha256(json.dumps(
      config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]
  results = {"datasets": _previous_entries(workdir), "checks": {},
             "seconds_per_dataset": {}, "complete": False, "errors": {},
             "config": config.to_dict(), "reference_sources": ref.SOURCES,
             "devices": [str(d) for d in jax.devices()],
             "note": "MC dropout / map / ensemble use learned homoscedastic "
                     "(ensemble: heteroscedastic) noise; 1 hidden layer of "
                     f"{config.hidden} ReLU units for every data set."}
  key = jax.random.key(config.seed)
  for name, folder in datasets:
    try:
      ds = data_lib.load_uci(folder)
    except (OSError, ValueError) as e:
      if len(datasets) == 1:
        raise
      # --dataset all: report the broken folder, go on with the others.
      logging.error("%s: skipped: %s", name, e)
      results["errors"][name] = str(e)
      results_lib.write_outputs(workdir, results, make_table(results))
      continue
    n = ds.n_splits if config.num_splits == 0 else min(config.num_splits,
                                                       ds.n_splits)
    splits = data_lib.uci_stacked_splits(ds, list(range(n)))
    results["datasets"].setdefault(name, {})
    t_ds = time.time()
    for method in methods:
      logging.info("%s / %s: %d splits, %d train points", name, method, n,
                   splits.x_train.shape[1])
      grid = _method_grid(config, method)
      r = uci_protocol.select_and_evaluate(
          method, splits, config, jax.random.fold_in(key, 0), grid,
          np.arange(n), float(config.grid_valid_fraction))
      s = uci_protocol.summarise(r)
      if grid is not None:
        s.update(_grid_summary(r))
      s["first_loss"] = float(np.mean(r["first_loss"]))
      s["final_loss"] = float(np.mean(r["final_loss"]))
      s["config_fingerprint"] = fingerprint
      s["complete"] = True
      results["datasets"][name][method] = s
      with metric_writers.open_run(workdir, f"{name}/{method}") as w:
        for i in range(n):        # TensorBoard step = split index
          w.write_scalars(i, {f"test/{k}": v[i] for k, v in r.items()
                              if k in ("rmse", "ll") and np.ndim(v) == 1})
        w.write_scalars(0, {"mean/rmse": s["rmse_mean"],
                            "mean/ll": s["ll_mean"]})
      logging.info("%s / %s: RMSE %.3f +- %.3f, LL %.3f +- %.3f (%.0f s)",
                   name, method, s["rmse_mean"], s["rmse_se"], s["ll_mean"],
                   s["ll_se"], s["seconds"])
      best = best_by_validation(results["datasets"][name])
      if best is not None:
        results.setdefault("best_by_validation", {})[name] = best
      chk = compute_checks(name, results["datasets"][name])
      if chk is not None:
        results["checks"][name] = chk
      results["seconds_per_dataset"][name] = time.time() - t_ds
      results_lib.write_outputs(workdir, results, make_table(results))
  results["complete"] = not results["errors"]
  results_lib.write_outputs(workdir, results, make_table(results))
  _plot(results, os.path.join(workdir, "uci.png"))
  if results["errors"]:
    raise ValueError(f"{len(results['errors'])} data set folder(s) could not "
                     f"be read (the others ran; see {workdir}/results.json): "
                     + "; ".join(f"{k}: {v}" for k, v in
                                 results["errors"].items()))
  return results


def _previous_entries(workdir: str) -> dict:
  """Completed (data set, method) entries of an earlier run in ``workdir``:
  a new run replaces those it re-runs and keeps the rest, so a killed or
  failed re-run never leaves fewer complete results than before. Each entry
  carries the ``config_fingerprint`` of the run that made it."""
  path = os.path.join(workdir, "results.json")
  if not os.path.isfile(path):
    return {}
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: existing results file is not readable JSON "
                     f"({e}); move it away or use a new --workdir") from None
  return {name: {m: r for m, r in by.items()
                 if isinstance(r, dict) and r.get("complete")}
          for name, by in old.get("datasets", {}).items()}


def main(argv):
  del argv
  launch.quiet_logs(sys.argv)
  f = flags.FLAGS
  config = f.config
  with config.unlocked():
    for name in ("dataset", "method", "data_dir", "num_splits", "grid_search"):
      if f[name].value is not None:
        config[name] = f[name].value
  checked = launch.check_input("uci_regression", check_inputs, config)
  workdir = results_lib.ensure_workdir(f.workdir)
  res = run(config, workdir, checked)
  print(make_table(res))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
