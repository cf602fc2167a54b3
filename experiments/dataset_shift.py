r"""Predictive uncertainty under dataset shift (Ovadia et al. 2019, small scale).

A CNN (``jaxbdl.nn.networks.CNN``) on scikit-learn's 8x8 digits, trained on the
classes NOT in ``config.ood_classes`` (default 0..7; labels re-indexed), by
every method in ``config.methods``, each built through the core registry
(``jaxbdl.bayes.registry``): MAP, MAP + temperature scaling (``map_ts``),
MC dropout (the core's ``map_estimate.point_method`` with the CNN's dropout
on at test time; the registry's ``mc_dropout`` is MLP-only), a deep
ensemble, mean-field VI with explicit weight samples (``mfvi``) and with
LRT / Flipout conv layers (``mfvi_conv_lrt`` / ``mfvi_conv_flipout``).

Protocol (nothing is selected on test data):

* a fixed split of the in-distribution images into train / test
  (``test_fraction``); a validation part (``valid_fraction``) is carved from
  the training part once and given to the methods that ask for it
  (``Posterior.valid_fraction > 0``: early stopping, the temperature); every
  method trains on the same remaining images;
* the test images under increasing shift: rotation (degrees, bilinear,
  zero fill), additive Gaussian pixel noise (std on the [0, 1] pixel scale,
  clipped to [0, 1]) and horizontal translation (pixels, zero fill);
* OOD inputs: all images of the held-out digits, and uniform-noise images.

Reported per method and shift level (from the mixture predictive ``pbar``):
accuracy, NLL, Brier score, ECE (equal-width bins); OOD AUROC / AUPR of the
predictive entropy and of the mutual information (epistemic part; 0 for
single-sample methods, AUROC 0.5); accuracy-vs-coverage curves (selective
prediction) on the clean test set and one rotated level. The findings of
Ovadia et al. are checked on these numbers in ``results.md``.

Run::

  python -m experiments.dataset_shift --workdir /tmp/dataset_shift \
      [--config experiments/configs/dataset_shift.py[:quick]]

Writes ``results.json``, ``results.md``, ``shift_metrics.png``,
``selective_prediction.png`` and ``reliability.png``.

References:
  Y. Ovadia et al. (2019), Can you trust your model's uncertainty?
    Evaluating predictive uncertainty under dataset shift, NeurIPS.
  Z. Nado et al. (2021), Uncertainty Baselines, arXiv:2106.04015 (the MNIST
    LeNet numbers quoted as published context).
"""
from __future__ import annotations

import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy import ndimage

from experiments import launch
from jaxbdl.evaluation import calibration
from jaxbdl import data as data_lib
from jaxbdl.evaluation import metrics
from jaxbdl.nn import networks
from jaxbdl.evaluation import results as results_lib
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import map_estimate
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry

# Published for orientation only: uncertainty-baselines, MNIST LeNet
# (different data, different network); not a target.
PUBLISHED = (
    {"method": "Deterministic", "nll": 0.037, "accuracy": 0.991, "ece": None},
    {"method": "Ensemble (10)", "nll": 0.016, "accuracy": 0.994, "ece": 0.005},
    {"method": "VI", "nll": 0.048, "accuracy": 0.985, "ece": 0.010},
)
PUBLISHED_SOURCE = "published: uncertainty-baselines MNIST LeNet (different data)"

_METRICS = ("accuracy", "nll", "brier", "ece")


# --------------------------------------------------------------------------
# Shifts: numpy functions of (images [N, 8, 8], level, rng) -> images.


def _rotate(x, degrees, rng):
  del rng
  if degrees == 0:
    return x
  return ndimage.rotate(x, degrees, axes=(1, 2), reshape=False, order=1,
                        mode="constant", cval=0.0).astype(np.float32)


def _noise(x, std, rng):
  if std == 0:
    return x
  return np.clip(x + std * rng.normal(size=x.shape), 0.0, 1.0).astype(
      np.float32)


def _translate(x, pixels, rng):
  del rng
  if pixels == 0:
    return x
  return ndimage.shift(x, (0.0, 0.0, float(pixels)), order=0, mode="constant",
                       cval=0.0).astype(np.float32)


SHIFTS = {"rotation": (_rotate, "rotation angle (degrees)"),
          "noise": (_noise, "additive noise std (pixel scale [0, 1])"),
          "translation": (_translate, "horizontal translation (pixels)")}


# --------------------------------------------------------------------------
# Data.


def _data(config):
  images, labels = data_lib.load_digits()
  ood = np.isin(labels, np.asarray(config.ood_classes))
  keep = np.sort(np.setdiff1d(np.unique(labels), config.ood_classes))
  remap = np.full(10, -1, np.int32)
  remap[keep] = np.arange(keep.size)
  x_in, y_in = images[~ood], remap[labels[~ood]]
  x_tr, y_tr, x_te, y_te = data_lib.train_test_split_arrays(
      config.split_seed, x_in, y_in, config.test_fraction)
  x_fit, y_fit, x_val, y_val = data_lib.train_test_split_arrays(
      config.split_seed + 1, x_tr, y_tr, config.valid_fraction)
  noise_rng = np.random.default_rng(config.seed + 1000)
  x_noise = noise_rng.uniform(size=(config.num_noise_images, 8, 8)).astype(
      np.float32)
  return {"train": {"x": x_fit, "y": y_fit}, "valid": {"x": x_val, "y": y_val},
          "test": {"x": x_te, "y": y_te}, "ood_digits": images[ood],
          "ood_noise": x_noise, "num_classes": int(keep.size)}


def _eval_sets(config, d):
  """Every evaluation input in one array: ``(x_all, {name: slice})``."""
  parts, index, start = [], {}, 0

  def add(name, x):
    nonlocal start
    parts.append(x)
    index[name] = slice(start, start + x.shape[0])
    start += x.shape[0]

  for shift, levels in config.shifts.items():
    fn = SHIFTS[shift][0]
    for i, level in enumerate(levels):
      rng = np.random.default_rng([config.seed, i, len(shift)])
      add(f"{shift}/{i}", fn(d["test"]["x"], float(level), rng))
  add("ood_digits", d["ood_digits"])
  add("ood_noise", d["ood_noise"])
  return np.concatenate(parts, 0), index


# --------------------------------------------------------------------------
# Methods through the core registry.


def _model(config, num_classes):
  c = config.cnn
  cnn = networks.CNN(num_classes=num_classes, features=tuple(c.features),
                     hidden=int(c.hidden), pool=c.pool)
  return post_lib.Model(cnn, lambda hp: likelihoods.categorical(num_classes),
                        lambda hp: priors.gaussian(hp["prior_scale"]))


def _cnn_mc_dropout(model, config):
  """MC dropout of the CNN: the core's point method with dropout on."""
  module = model.module.clone(dropout_rate=float(config.mc_dropout_rate))
  return map_estimate.point_method(
      "mc_dropout", model._replace(module=module),
      registry.method_config("mc_dropout", config.core), stochastic=True,
      num_predict=int(config.core.num_predict_samples))


# Study-specific builders (capability gaps of the registry's versions).
_BUILDERS = {"mc_dropout": _cnn_mc_dropout}


def _build(name, model, config):
  if name in _BUILDERS:
    return _BUILDERS[name](model, config)
  return registry.build(name, model, config.core)


def _hparams(name, config):
  over = dict(config.hp)
  over.update(dict(config.hp_overrides.get(name, {})))
  return registry.default_hparams(name, config.core, over)


# --------------------------------------------------------------------------
# Scores.


def _scores(labels, sample_probs, num_bins):
  pbar = np.mean(sample_probs, axis=0)
  pbar = pbar / pbar.sum(-1, keepdims=True)  # float32 rounding of the mean
  return {"accuracy": float(metrics.accuracy(labels, pbar)),
          "nll": float(calibration.nll(labels, pbar)),
          "brier": float(calibration.brier_score(labels, pbar)),
          "ece": float(calibration.expected_calibration_error(
              labels, pbar, num_bins))}


def _ood(u_in, u_out):
  out = {}
  for score in ("total", "epistemic"):
    od = calibration.ood_detection(u_in[score], u_out[score])
    name = "entropy" if score == "total" else "mi"
    out[f"auroc_{name}"] = float(od["auroc"])
    out[f"aupr_{name}"] = float(od["aupr"])
  return out


def _rotated_key(config) -> str:
  levels = [float(v) for v in config.shifts.rotation]
  return f"rotation/{levels.index(float(config.selective_rotation))}"


def _selective(labels, sample_probs) -> dict:
  p = np.mean(sample_probs, 0)
  curve = calibration.accuracy_coverage(labels, p / p.sum(-1, keepdims=True))
  return {"area": float(curve["area"]),
          "coverage": np.asarray(curve["coverage"]).tolist(),
          "accuracy": np.asarray(curve["accuracy"]).tolist()}


def _mean_std(values):
  v = np.asarray(values, np.float64)
  return {"mean": float(v.mean(0)) if v.ndim == 1 else v.mean(0).tolist(),
          "std": float(v.std(0)) if v.ndim == 1 else v.std(0).tolist()}


def _evaluate(config, d, index, probs_seeds):
  """probs_seeds ``[R, S, M_all, C]`` -> nested results (mean/std over R)."""
  y_te = d["test"]["y"]
  per_seed = []
  for probs in probs_seeds:
    r = {"shift": {}, "ood": {}}
    for shift, levels in config.shifts.items():
      rows = [_scores(y_te, probs[:, index[f"{shift}/{i}"]], config.ece_bins)
              for i in range(len(levels))]
      r["shift"][shift] = {m: [row[m] for row in rows] for m in _METRICS}
    clean = probs[:, index[f"{next(iter(config.shifts))}/0"]]
    u_in = {k: np.asarray(v) for k, v in
            calibration.uncertainty_decomposition(clean).items()}
    for name in ("ood_digits", "ood_noise"):
      u_out = {k: np.asarray(v) for k, v in
               calibration.uncertainty_decomposition(
                   probs[:, index[name]]).items()}
      r["ood"][name] = _ood(u_in, u_out)
    r["clean"] = _scores(y_te, clean, config.ece_bins)
    r["selective"] = {tag: _selective(y_te, probs[:, index[sl]])
                      for tag, sl in (("clean", f"{next(iter(config.shifts))}/0"),
                                      ("rotated", _rotated_key(config)))}
    r["diagram"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                    for k, v in calibration.reliability_diagram(
                        y_te, np.mean(clean, 0) / np.mean(clean, 0).sum(
                            -1, keepdims=True), 10).items()}
    per_seed.append(r)
  # Aggregate over seeds.
  out = {"clean": {m: _mean_std([r["clean"][m] for r in per_seed])
                   for m in _METRICS},
         "shift": {s: {m: _mean_std([r["shift"][s][m] for r in per_seed])
                       for m in _METRICS} for s in config.shifts},
         "ood": {o: {k: _mean_std([r["ood"][o][k] for r in per_seed])
                     for k in per_seed[0]["ood"][o]}
                 for o in ("ood_digits", "ood_noise")},
         "selective": {t: {"area": _mean_std([r["selective"][t]["area"]
                                              for r in per_seed]),
                           "coverage": per_seed[0]["selective"][t]["coverage"],
                           "accuracy": np.mean([r["selective"][t]["accuracy"]
                                                for r in per_seed], 0).tolist()}
                       for t in ("clean", "rotated")},
         "diagram_seed0": per_seed[0]["diagram"]}
  return out


# --------------------------------------------------------------------------
# The study.


def _validate(config):
  unknown = [m for m in config.methods
             if m not in _BUILDERS and m not in registry.METHODS]
  if unknown or not config.methods:
    raise ValueError(f"unknown config.methods entries {unknown}; valid: "
                     f"{sorted(set(registry.METHODS) | set(_BUILDERS))}")
  bad = [s for s in config.shifts if s not in SHIFTS]
  if bad:
    raise ValueError(f"unknown config.shifts {bad}; valid: {list(SHIFTS)}")
  if "rotation" not in config.shifts or float(config.selective_rotation) not in [
      float(v) for v in config.shifts.rotation]:
    raise ValueError("config.selective_rotation must be one of "
                     "config.shifts.rotation")
  for s, levels in config.shifts.items():
    if not levels or float(levels[0]) != 0.0:
      raise ValueError(f"config.shifts.{s} must start with level 0 (clean), "
                       f"got {tuple(levels)}")
  if config.num_seeds < 1:
    raise ValueError(f"num_seeds must be >= 1, got {config.num_seeds}")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains every method, evaluates under shift / OOD, writes the outputs."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t_start = time.time()
  d = _data(config)
  x_all, index = _eval_sets(config, d)
  model = _model(config, d["num_classes"])
  key = jax.random.key(config.seed)
  results: dict[str, Any] = {
      "config": config.to_dict(), "num_classes": d["num_classes"],
      "num_train": int(d["train"]["x"].shape[0]),
      "num_valid": int(d["valid"]["x"].shape[0]),
      "num_test": int(d["test"]["x"].shape[0]),
      "num_ood_digits": int(d["ood_digits"].shape[0]),
      "loadavg_start": open("/proc/loadavg").read().split()[:3],
      "methods": {}}
  x_all = jnp.asarray(x_all)
  # Device arrays: methods may index the data with traced indices.
  train, valid_all = (jax.tree_util.tree_map(jnp.asarray, d[k])
                      for k in ("train", "valid"))
  for name in config.methods:
    t0 = time.time()
    method = _build(name, model, config)
    hp = _hparams(name, config)
    valid = valid_all if method.valid_fraction > 0 else None
    # One key for every method (common random numbers): map and map_ts share
    # their network, so the temperature is the only difference.
    k = key
    keys = jax.random.split(k, config.num_seeds)
    fit = jax.jit(jax.vmap(lambda kk: method.fit(kk, train, hp, valid)))
    state, history = fit(keys)
    pred_keys = jax.random.split(jax.random.fold_in(k, 10_000),
                                 config.num_seeds)
    predict = jax.jit(jax.vmap(
        lambda s, kk: method.predict(s, x_all, kk, hp)["probs"]))
    probs = np.asarray(predict(state, pred_keys), np.float32)
    res = _evaluate(config, d, index, probs)
    res["seconds"] = time.time() - t0
    res["num_predict_samples"] = int(probs.shape[1])
    if "temperature" in history:
      res["temperature"] = _mean_std(np.asarray(history["temperature"]))
    if "loss" in history:
      res["final_train_loss"] = _mean_std(np.asarray(history["loss"])[:, -1])
    results["methods"][name] = res
    logging.info("%s: clean %s (%.1fs)", name, res["clean"], res["seconds"])
  results["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
  results["findings"] = _findings(config, results["methods"])
  results["seconds"] = time.time() - t_start
  results_lib.write_outputs(workdir, results, _report(config, results))
  _plot_shift(config, results, os.path.join(workdir, "shift_metrics.png"))
  _plot_selective(config, results,
                  os.path.join(workdir, "selective_prediction.png"))
  _plot_reliability(results, os.path.join(workdir, "reliability.png"))
  return results


# --------------------------------------------------------------------------
# Findings of Ovadia et al., checked on these numbers.


def _shifted_mean(res, shift, metric):
  """Mean of a metric over the shifted levels (level 0 excluded)."""
  return float(np.mean(res["shift"][shift][metric]["mean"][1:]))


def _findings(config, methods) -> list[dict]:
  out = []
  names = list(methods)
  shifts = [s for s in config.shifts if len(config.shifts[s]) > 1]
  if "ensemble" in methods and len(names) > 1:
    wins = []
    for s in shifts:
      nll = {m: _shifted_mean(methods[m], s, "nll") for m in names}
      best = min(nll, key=nll.get)
      wins.append(best == "ensemble")
      out.append({"finding": f"ensemble has the lowest NLL under {s} shift "
                             "(mean over shifted levels)",
                  "holds": best == "ensemble",
                  "detail": f"best {best} {nll[best]:.3f}; ensemble "
                            f"{nll['ensemble']:.3f}"})
  if "map_ts" in methods and "map" in methods:
    e_ts, e_map = (methods["map_ts"]["clean"]["ece"]["mean"],
                   methods["map"]["clean"]["ece"]["mean"])
    out.append({"finding": "temperature scaling lowers in-distribution ECE "
                           "(map_ts vs map, clean test)",
                "holds": e_ts < e_map,
                "detail": f"map_ts {e_ts:.3f} vs map {e_map:.3f}"})
    if "ensemble" in methods:
      for s in shifts:
        ts_, en = (_shifted_mean(methods["map_ts"], s, "ece"),
                   _shifted_mean(methods["ensemble"], s, "ece"))
        out.append({"finding": f"under {s} shift temperature scaling is not "
                               "better calibrated than the ensemble (ECE, "
                               "mean over shifted levels)",
                    "holds": ts_ >= en,
                    "detail": f"map_ts {ts_:.3f} vs ensemble {en:.3f}"})
  vi = [m for m in names if m.startswith("mfvi")]
  ref = [m for m in ("map", "ensemble") if m in methods]
  for m in vi:
    for r in ref:
      a_vi, a_r = (methods[m]["clean"]["accuracy"]["mean"],
                   methods[r]["clean"]["accuracy"]["mean"])
      n_vi, n_r = (methods[m]["clean"]["nll"]["mean"],
                   methods[r]["clean"]["nll"]["mean"])
      out.append({"finding": f"{m} is weaker than {r} in-distribution "
                             "(lower accuracy and higher NLL)",
                  "holds": a_vi < a_r and n_vi > n_r,
                  "detail": f"acc {a_vi:.3f} vs {a_r:.3f}, NLL {n_vi:.3f} vs "
                            f"{n_r:.3f}"})
  return out


# --------------------------------------------------------------------------
# Report and plots.


def _report(config, results) -> str:
  methods = results["methods"]
  seeds = config.num_seeds
  lines = [f"# Dataset shift on 8x8 digits ({results['num_classes']} "
           f"in-distribution classes; train {results['num_train']}, valid "
           f"{results['num_valid']}, test {results['num_test']}; {seeds} "
           f"seed(s), mean{' +- std' if seeds > 1 else ''})\n"]
  rows = []
  for name, r in methods.items():
    c = r["clean"]
    rows.append({"method": name, **{m: c[m]["mean"] for m in _METRICS},
                 "selective area": r["selective"]["clean"]["area"]["mean"],
                 "selective area rotated": r["selective"]["rotated"]["area"][
                     "mean"],
                 "S": r["num_predict_samples"], "seconds": r["seconds"]})
  for p in PUBLISHED:
    rows.append({"method": f"{p['method']} ({PUBLISHED_SOURCE})",
                 "accuracy": p["accuracy"], "nll": p["nll"],
                 "ece": "" if p["ece"] is None else p["ece"]})
  lines.append("## Clean test set\n")
  lines.append(results_lib.markdown_table(
      rows, ["method", "accuracy", "nll", "brier", "ece", "selective area",
             "selective area rotated", "S", "seconds"], precision=3))
  lines.append(f"\nSelective area: mean accuracy over coverages k/N of the k "
               f"most confident (max prob); rotated = "
               f"{config.selective_rotation:g} degrees.\n")
  lines.append("\n## Under shift (mean over the shifted levels, level 0 "
               "excluded)\n")
  rows = []
  for name, r in methods.items():
    row = {"method": name}
    for s in config.shifts:
      if len(config.shifts[s]) > 1:
        for m in ("accuracy", "nll", "ece"):
          row[f"{s} {m}"] = _shifted_mean(r, s, m)
    rows.append(row)
  lines.append(results_lib.markdown_table(rows, precision=3))
  lines.append("\n## OOD detection (clean test vs OOD; AUROC / AUPR-out)\n")
  rows = []
  for name, r in methods.items():
    row = {"method": name}
    for o, tag in (("ood_digits", "held-out digits"), ("ood_noise", "noise")):
      for k in ("auroc_entropy", "auroc_mi", "aupr_entropy"):
        row[f"{tag} {k}"] = r["ood"][o][k]["mean"]
    rows.append(row)
  lines.append(results_lib.markdown_table(rows, precision=3))
  lines.append("\nMI is 0 for single-sample predictives (MAP, map_ts): "
               "AUROC 0.5 by construction.\n")
  lines.append("\n## Findings of Ovadia et al. (2019) checked here\n")
  for f in results["findings"]:
    lines.append(f"- {'HOLDS' if f['holds'] else 'does NOT hold'}: "
                 f"{f['finding']} ({f['detail']})")
  lines.append(f"\nLoad average at start / end: {results['loadavg_start']} / "
               f"{results['loadavg_end']} (2 shared CPU cores); "
               f"total {results['seconds']:.0f} s.\n")
  return "\n".join(lines) + "\n"


def _plot_shift(config, results, path):
  plt = results_lib.pyplot()
  shifts = list(config.shifts)
  fig, axes = plt.subplots(len(_METRICS), len(shifts),
                           figsize=(4.2 * len(shifts), 2.6 * len(_METRICS)),
                           squeeze=False)
  for j, s in enumerate(shifts):
    levels = np.asarray(config.shifts[s], float)
    for i, m in enumerate(_METRICS):
      ax = axes[i][j]
      for name, r in results["methods"].items():
        ax.plot(levels, r["shift"][s][m]["mean"], marker="o", ms=3,
                label=name)
      if j == 0 and m in ("accuracy", "nll", "ece"):
        for p, mk in zip(PUBLISHED, ("*", "P", "X")):
          if p[m] is not None:
            ax.plot([0.0], [p[m]], mk, color="k", ms=8,
                    label=f"{p['method']}: {PUBLISHED_SOURCE}")
      ax.set_xlabel(SHIFTS[s][1])
      ax.set_ylabel({"accuracy": "accuracy (fraction)",
                     "nll": "NLL (nats / example)",
                     "brier": "Brier score", "ece": "ECE (fraction)"}[m])
      ax.grid(alpha=0.3)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5),
             fontsize=8)
  fig.tight_layout()
  results_lib.save_figure(fig, path)


def _plot_selective(config, results, path):
  plt = results_lib.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  titles = {"clean": "clean test",
            "rotated": f"rotated {config.selective_rotation:g} degrees"}
  for ax, tag in zip(axes, ("clean", "rotated")):
    for name, r in results["methods"].items():
      sel = r["selective"][tag]
      ax.plot(100 * np.asarray(sel["coverage"]), sel["accuracy"],
              label=f"{name} (area {sel['area']['mean']:.3f})")
    ax.set_xlabel("coverage (% of examples kept, most confident first)")
    ax.set_ylabel("accuracy on kept examples")
    ax.set_title(titles[tag])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
  fig.tight_layout()
  results_lib.save_figure(fig, path)


def _plot_reliability(results, path):
  plt = results_lib.pyplot()
  names = list(results["methods"])
  fig, axes = plt.subplots(1, len(names), figsize=(2.8 * len(names), 2.8),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    dg = {k: np.asarray(v) if isinstance(v, list) else v
          for k, v in results["methods"][name]["diagram_seed0"].items()}
    calibration.plot_reliability_diagram(ax, dg, name)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(name, fontsize=9)
  fig.tight_layout()
  results_lib.save_figure(fig, path)


if __name__ == "__main__":
  launch.main("dataset_shift", run)
