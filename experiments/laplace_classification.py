r"""MAP vs last-layer and KFAC Laplace on scikit-learn's 8x8 digits.

The calibration claim of the Laplace literature (Daxberger et al. 2021,
*Laplace Redux*: a post-hoc last-layer KFAC Laplace with the
GLM predictive and the probit approximation brings a CIFAR-10 WRN-16-4's ECE
from 2.0 % to 0.8 % at unchanged accuracy), tested at small scale:

* data: the 1797 digits, 10 classes; a fixed train / test split
  (``test_fraction``), a validation part carved from the training part
  (``valid_fraction``) used ONLY for the MAP's early stopping; nothing is
  chosen on the test split;
* networks: ``networks.CNN`` and ``networks.MLP`` (on the 64 pixels);
* MAP: the core's ``map`` method (negative log joint with a ``N(0,
  prior_scale^2)`` prior, Adam, early stopping on validation NLL),
  ``num_seeds`` initialisations vmapped;
* Laplace around THE SAME MAP weights (paired comparison): ``last_layer``
  (full GGN of the head) and ``kfac`` (KFAC GGN of every layer), prior
  precision by the post-hoc Laplace evidence on the training part (Adam(0.1),
  ``marglik_steps``; laplace-torch's ``optimize_prior_precision``), GLM
  predictive with the probit link (``link_approx``);
* the alternative to the evidence, rows ``<variant>_valgrid``: the scalar
  prior precision from ``prior_grid`` with the lowest VALIDATION NLL
  (laplace-torch's ``optimize_prior_precision(method="gridsearch")``);
* scores on the test split: accuracy, NLL, ECE (``ece_bins`` equal-width
  bins), Brier, mean +- SE over seeds, plus the paired MAP -> Laplace change
  of each score (mean +- SE of the per-seed difference).

Run::

  python -m experiments.laplace_classification --workdir W \
      [--config experiments/configs/laplace_classification.py[:quick]]

Outputs in ``--workdir``: ``results.json`` (with provenance), ``results.md``,
``reliability.png`` (seed 0) and TensorBoard runs ``W/<network>_<method>``
(MAP training curves, evidence optimisation, test scores).

References:
  Daxberger et al. (2021), *Laplace Redux -- Effortless Bayesian Deep
  Learning*, NeurIPS (laplace-torch).
  Immer, Korzepa & Bauer (2021), *Improving predictions of Bayesian neural
  nets via local linearization*, AISTATS (GLM predictive).
  Guo et al. (2017), *On calibration of modern neural networks* (ECE).
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import launch
from jaxbdl.evaluation import calibration
from jaxbdl import data as data_lib
from jaxbdl.evaluation import metric_writers
from jaxbdl.evaluation import metrics
from jaxbdl.nn import networks
from jaxbdl.evaluation import results as results_lib
from jaxbdl.bayes import laplace
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry

PUBLISHED = {"ece_map": 0.020, "ece_laplace": 0.008,
             "source": "Daxberger et al. (2021), Laplace Redux: CIFAR-10, "
                       "WRN-16-4, last-layer KFAC Laplace, GLM + probit"}
NETWORKS = ("cnn", "mlp")
VARIANTS = {"last_layer": ("last_layer", "full"), "kfac": ("all", "kron")}
SCORES = ("accuracy", "nll", "ece", "brier")


def _validate(config):
  bad = [n for n in config.networks if n not in NETWORKS]
  if bad or not config.networks:
    raise ValueError(f"config.networks must be a non-empty subset of "
                     f"{NETWORKS}, got {tuple(config.networks)}")
  for net in config.networks:
    bad = [v for v in config[net].laplace if v not in VARIANTS]
    if bad:
      raise ValueError(f"config.{net}.laplace entries must be in "
                       f"{tuple(VARIANTS)}, got {bad}")
  if config.prior_structure not in laplace.marglik.PRIOR_STRUCTURES:
    raise ValueError("config.prior_structure must be one of "
                     f"{laplace.marglik.PRIOR_STRUCTURES}, got "
                     f"{config.prior_structure!r}")
  if config.link_approx not in ("probit", "mc"):
    raise ValueError("config.link_approx must be 'probit' or 'mc', got "
                     f"{config.link_approx!r}")
  if not 0.0 < config.valid_fraction < 1.0:
    raise ValueError("config.valid_fraction must be in (0, 1) (the MAP's "
                     f"early stopping), got {config.valid_fraction}")


def _data(config):
  images, labels = data_lib.load_digits()
  images = images.reshape((images.shape[0], 64))   # both networks take [N, 64]
  x_tr, y_tr, x_te, y_te = data_lib.train_test_split_arrays(
      config.split_seed, images, labels, config.test_fraction)
  x_fit, y_fit, x_val, y_val = data_lib.train_test_split_arrays(
      config.split_seed + 1, x_tr, y_tr, config.valid_fraction)
  as_jnp = lambda x, y: {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  return {"train": as_jnp(x_fit, y_fit), "valid": as_jnp(x_val, y_val),
          "test": as_jnp(x_te, y_te)}


def _module(config, name):
  if name == "cnn":
    c = config.cnn
    return networks.CNN(num_classes=10, features=tuple(c.features),
                        hidden=int(c.hidden), pool=c.pool)
  return networks.MLP(tuple(config.mlp.hidden) + (10,),
                      activation=config.mlp.activation)


def _normalised(probs):
  """float64 probabilities renormalised (float32 rounding of the sums)."""
  p = np.asarray(probs, np.float64)
  return p / p.sum(-1, keepdims=True)


def _scores(labels, probs, num_bins) -> dict:
  return {"accuracy": float(metrics.accuracy(labels, probs)),
          "nll": float(calibration.nll(labels, probs)),
          "ece": float(calibration.expected_calibration_error(
              labels, probs, num_bins)),
          "brier": float(calibration.brier_score(labels, probs))}


def _summary(per_seed: list[dict]) -> dict:
  out = {}
  for k in per_seed[0]:
    mean, se = metrics.mean_and_se(jnp.asarray([s[k] for s in per_seed]))
    out[k] = {"mean": float(mean), "se": float(se),
              "seeds": [float(s[k]) for s in per_seed]}
  return out


def _paired(base: list[dict], other: list[dict]) -> dict:
  """Mean +- SE over seeds of ``other - base`` per score."""
  out = {}
  for k in SCORES:
    d = jnp.asarray([o[k] - b[k] for o, b in zip(other, base)])
    mean, se = metrics.mean_and_se(d)
    out[k] = {"mean": float(mean), "se": float(se)}
  return out


def _laplace_variant(config, module, nets, data, variant):
  """Fits one Laplace variant around each seed's MAP.

  Returns ``{variant: row}`` (prior precision by the evidence) and, with
  ``config.prior_grid``, ``{variant + "_valgrid": row}`` (the scalar prior
  precision of the grid with the lowest validation NLL; laplace-torch's
  ``method="gridsearch"``). A row holds test ``probs`` per seed etc.
  """
  subset, structure = VARIANTS[variant]
  apply_fn = post_lib.point_apply(module)
  net0 = jax.tree.map(lambda a: a[0], nets)
  la = laplace.Laplace(apply_fn, net0, "classification",
                       subset_of_weights=subset, hessian_structure=structure,
                       chunk_size=int(config.curvature_batch_size))
  x, y = data["train"]["x"], data["train"]["y"]
  new = lambda: {"probs": [], "prior_precision": [], "log_marglik": [],
                 "neg_log_marglik_curve": [], "map_warnings": []}
  ev, grid = new(), new()

  def predict(state, x_eval, s):
    return _normalised(la.predict(
        state, x_eval, link_approx=config.link_approx,
        key=jax.random.key(s) if config.link_approx == "mc" else None)[
            "probs"])

  def record(row, state, probs):
    row["probs"].append(probs)
    row["prior_precision"].append(np.asarray(state.prior_precision).tolist())
    row["log_marglik"].append(float(la.log_marginal_likelihood(state)))

  for s in range(config.num_seeds):
    net = jax.tree.map(lambda a, s=s: a[s], nets)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      state = la.fit(net, x, y, prior_precision=1.0 / config.prior_scale ** 2)
    ev["map_warnings"] += [str(w.message) for w in caught]
    fitted, hist = la.optimize_prior_precision(
        state, prior_structure=config.prior_structure,
        n_steps=int(config.marglik_steps), lr=float(config.marglik_lr))
    record(ev, fitted, predict(fitted, data["test"]["x"], s))
    ev["neg_log_marglik_curve"].append(np.asarray(hist["neg_log_marglik"]))
    if config.prior_grid:
      yv = np.asarray(data["valid"]["y"])
      cands = [state._replace(prior_precision=jnp.full(
          (1,), d, state.theta.dtype)) for d in config.prior_grid]
      nll = [float(calibration.nll(yv, predict(c, data["valid"]["x"], s)))
             for c in cands]
      best = cands[int(np.argmin(nll))]
      record(grid, best, predict(best, data["test"]["x"], s))
      grid["neg_log_marglik_curve"].append(np.asarray(nll))
  rows = {variant: ev}
  if config.prior_grid:
    rows[variant + "_valgrid"] = grid
  return rows


def _run_network(config, name, data, key, workdir) -> dict:
  module = _module(config, name)
  model = post_lib.Model(module, lambda hp: likelihoods.categorical(10),
                         lambda hp: priors.gaussian(hp["prior_scale"]))
  method = registry.build("map", model, config.core)
  hp = registry.default_hparams("map", config.core, {
      "learning_rate": config.learning_rate,
      "prior_scale": config.prior_scale})
  keys = jax.random.split(key, config.num_seeds)
  t0 = time.time()
  fit = jax.jit(jax.vmap(lambda k: method.fit(k, data["train"], hp,
                                              data["valid"])))
  state, history = fit(keys)
  predict = jax.jit(jax.vmap(lambda st, k: method.predict(
      st, data["test"]["x"], k, hp)["probs"][0]))
  map_probs = _normalised(predict(state, keys))
  labels = np.asarray(data["test"]["y"])
  rows = {"map": {"probs": list(map_probs), "seconds": time.time() - t0}}
  for variant in config[name].laplace:
    t0 = time.time()
    got = _laplace_variant(config, module, state["net"], data, variant)
    for k, r in got.items():
      r["seconds"] = (time.time() - t0) / len(got)
    rows.update(got)
  out = {}
  for meth, r in rows.items():
    per_seed = [_scores(labels, p, config.ece_bins) for p in r["probs"]]
    res = {"scores": _summary(per_seed), "per_seed": per_seed,
           "seconds": r["seconds"]}
    if meth != "map":
      res["prior_precision"] = r["prior_precision"]
      res["log_marglik"] = r["log_marglik"]
      if r["map_warnings"]:
        res["map_warnings"] = r["map_warnings"]
      res["change_vs_map"] = _paired(out["map"]["per_seed"], per_seed)
    else:
      res["stopped_epoch"] = np.asarray(history["stopped_epoch"]).tolist()
      res["best_epoch"] = np.asarray(history["best_epoch"]).tolist()
    res["diagram_seed0"] = calibration.reliability_diagram(
        labels, r["probs"][0], config.ece_bins)
    out[meth] = res
    with metric_writers.open_run(workdir, f"{name}_{meth}") as w:
      if meth == "map":
        w.write_history({k: v for k, v in history.items()
                         if np.ndim(v) == 2}, prefix="train/")
      elif meth.endswith("_valgrid"):
        w.write_history({"valid_nll_over_grid": np.stack(
            r["neg_log_marglik_curve"])}, prefix="prior_grid/")
      else:
        w.write_history({"neg_log_marglik": np.stack(
            r["neg_log_marglik_curve"])}, prefix="marglik/")
      w.write_scalars(0, {f"test/{k}": v["mean"]
                          for k, v in res["scores"].items()})
  return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains the MAPs, fits the Laplace variants, scores, writes outputs."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t_start = time.time()
  data = _data(config)
  results: dict[str, Any] = {
      "config": config.to_dict(), "published": PUBLISHED,
      "num_train": int(data["train"]["x"].shape[0]),
      "num_valid": int(data["valid"]["x"].shape[0]),
      "num_test": int(data["test"]["x"].shape[0]), "networks": {}}
  key = jax.random.key(config.seed)
  for i, name in enumerate(config.networks):
    results["networks"][name] = _run_network(
        config, name, data, jax.random.fold_in(key, i), workdir)
  results["seconds"] = time.time() - t_start
  results_lib.write_outputs(workdir, results, _report(config, results))
  _plot_reliability(results, os.path.join(workdir, "reliability.png"))
  return results


def _pm(s: dict, scale: float = 1.0) -> str:
  return f"{scale * s['mean']:.3f} ± {scale * s['se']:.3f}"


def _report(config, results) -> str:
  lines = [f"# Laplace on digits ({config.num_seeds} seeds, mean ± SE; "
           f"N_train = {results['num_train']}, N_test = "
           f"{results['num_test']})", ""]
  rows, changes = [], []
  for net, res in results["networks"].items():
    for meth, r in res.items():
      sc = r["scores"]
      row = {"network": net, "method": meth,
             "accuracy": _pm(sc["accuracy"]), "NLL": _pm(sc["nll"]),
             "ECE (%)": _pm(sc["ece"], 100.0), "Brier": _pm(sc["brier"]),
             "prior precision": "-", "log evidence": "-"}
      if meth != "map":
        row["prior precision"] = f"{np.mean(r['prior_precision']):.3g}"
        row["log evidence"] = f"{np.mean(r['log_marglik']):.1f}"
        ch = r["change_vs_map"]
        changes.append({"network": net, "method": meth,
                        "Δ accuracy": _pm(ch["accuracy"]),
                        "Δ NLL": _pm(ch["nll"]),
                        "Δ ECE (%)": _pm(ch["ece"], 100.0),
                        "Δ Brier": _pm(ch["brier"])})
      rows.append(row)
  lines.append(results_lib.markdown_table(rows))
  if changes:
    lines += ["", "Paired change vs the same seed's MAP (Laplace - MAP):", "",
              results_lib.markdown_table(changes)]
  lines += ["", f"Published reading ({PUBLISHED['source']}): ECE "
            f"{100 * PUBLISHED['ece_map']:.1f} % -> "
            f"{100 * PUBLISHED['ece_laplace']:.1f} %."]
  return "\n".join(lines) + "\n"


def _plot_reliability(results, path):
  plt = results_lib.pyplot()
  cells = [(net, meth, r["diagram_seed0"])
           for net, res in results["networks"].items()
           for meth, r in res.items()]
  fig, axes = plt.subplots(1, len(cells), figsize=(2.8 * len(cells), 2.9),
                           squeeze=False)
  for ax, (net, meth, dg) in zip(axes[0], cells):
    calibration.plot_reliability_diagram(ax, dg, meth)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(f"{net}: {meth}", fontsize=9)
  fig.tight_layout()
  results_lib.save_figure(fig, path)


if __name__ == "__main__":
  launch.main("laplace_classification", run)
