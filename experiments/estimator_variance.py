r"""Variance of Monte Carlo gradient estimators vs exact quadrature references.

Mohamed, Rosca, Figurnov & Mnih (2020), Sec. 3 (Figure 2): for costs
``(x - k)^2``, ``exp(-k x^2)`` and ``cos(k x)`` under ``N(mu, sigma^2)``, the
variance of the estimates of ``d/dmu`` and ``d/dsigma`` of ``E[f(x)]`` as a
function of ``k``, for the pathwise, score-function (plain, leave-one-out
baseline, delta-method control variate) and measure-valued estimators.

Each estimator is ONE jitted program vmapped over the ``(mu, sigma)``
settings, the costs (selected by index), the ``k`` grid and ``R`` keys; each
key gives one estimate averaged over ``N`` samples. Every Monte Carlo
variance is compared with the exact variance computed by
:mod:`jaxbdl.gradients.quadrature` (no sampling): single-sample variance ``/ N`` for
the i.i.d. estimators, the exact ``N``-sample variance for leave-one-out.
The statistical bound: with ``R`` estimates, the sample variance ``v`` has
standard error ``SE = sqrt((m4 - v^2) / R)`` (``m4`` the sample fourth
central moment); a row is within bound when
``|v - v_ref| <= K * SE`` (``K = config.bound_k``, default 4), or, when the
reference is 0 (a control variate that is exact), when ``v`` is below the
float32 round-off floor ``(1e-5 (1 + |grad|))^2``. The mean of the estimates
is also checked against the exact gradient (``|mean - grad| <= K sqrt(v/R)``),
which would reveal a biased control variate.

Run:
  python -m experiments.estimator_variance --workdir /tmp/ev \
      [--config experiments/configs/estimator_variance.py[:quick]]

Outputs in ``--workdir``: ``results.json``, ``results.md`` (summary + full
table) and ``variance_mu{mu}_sigma{sigma}.png`` (one panel per cost x
parameter, log y, Monte Carlo solid with markers, reference dashed).
"""
from __future__ import annotations

import functools
import math
import os
import time
from typing import Any, Callable, NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from experiments import launch
from experiments import validate
from jaxbdl.gradients import control_variates
from jaxbdl.gradients import distributions
from jaxbdl.gradients import estimators
from jaxbdl.evaluation import metric_writers
from jaxbdl.gradients import quadrature
from jaxbdl.evaluation import results as results_lib


Normal = distributions.Normal
PARAM_NAMES = ("loc", "scale")


# --------------------------------------------------------------------------
# Costs f(x; k): scalar x, scalar k (traced, so one program covers the grid).

COSTS: dict[str, tuple[Callable[[jax.Array, jax.Array], jax.Array], str]] = {
    "quadratic": (lambda x, k: (x - k) ** 2, "(x - k)^2"),
    "exp": (lambda x, k: jnp.exp(-k * x**2), "exp(-k x^2)"),
    "cos": (lambda x, k: jnp.cos(k * x), "cos(k x)"),
}


# --------------------------------------------------------------------------
# Estimators: how to build grad_fn(params, key, N) and the exact reference.


class EstimatorSpec(NamedTuple):
  """One estimator of the study.

  Attributes:
    label: legend / table name.
    make: ``f -> grad_fn(params, key, num_samples)``, the averaged estimate.
    reference: ``(f, mu, sigma, num_samples) -> {"loc", "scale"}``, the exact
      variance of the ``num_samples``-sample estimate (quadrature).
    min_samples: smallest ``num_samples`` it accepts.
  """
  label: str
  make: Callable[[Callable], Callable]
  reference: Callable[[Callable, float, float, int], dict]
  min_samples: int = 1


def _iid(var_fn):
  """Reference for an average of N i.i.d. single-sample estimates."""
  def reference(f, mu, sigma, n):
    return {k: v / n for k, v in var_fn(f, mu, sigma).items()}
  return reference


def _delta_reference(f, mu, sigma, n):
  control = quadrature.taylor_control(f, mu)
  return {k: v / n for k, v in quadrature.score_function_variance(
      f, mu, sigma, control=control).items()}


ESTIMATORS: dict[str, EstimatorSpec] = {
    "pathwise": EstimatorSpec(
        "pathwise", lambda f: estimators.pathwise(f, Normal),
        _iid(quadrature.pathwise_variance)),
    "score_function": EstimatorSpec(
        "score function", lambda f: estimators.score_function(f, Normal),
        _iid(quadrature.score_function_variance)),
    "score_function_loo": EstimatorSpec(
        "score function + LOO baseline",
        lambda f: control_variates.with_control_variate(
            estimators.score_function,
            control_variates.leave_one_out_baseline())(f, Normal),
        lambda f, mu, sigma, n: quadrature.loo_score_function_variance(
            f, mu, sigma, n),
        min_samples=2),
    "score_function_delta": EstimatorSpec(
        "score function + delta-method CV",
        lambda f: control_variates.with_control_variate(
            estimators.score_function, control_variates.delta_method())(
                f, Normal),
        _delta_reference),
    "measure_valued": EstimatorSpec(
        "measure-valued (coupled)",
        lambda f: estimators.measure_valued(f, Normal),
        _iid(quadrature.measure_valued_variance)),
}


# --------------------------------------------------------------------------
# The Monte Carlo program.


def make_mc_program(spec: EstimatorSpec, cost_names: tuple[str, ...],
                    num_samples: int, num_replicas: int,
                    compiler_options: dict[str, Any] | None = None):
  """Returns a jitted ``program(locs[S], scales[S], ks[C, K], key)``.

  Output: ``{"loc": [S, C, K, R], "scale": [S, C, K, R]}``: ``R`` independent
  ``num_samples``-sample estimates per (setting, cost, k), vmapped over all
  four. The cost is picked by a select on a (vmapped) index, so the ``C``
  costs share one compiled estimator (every cost is evaluated, which is
  cheap next to the estimator; fewer programs compile much faster). Costs
  not selected get ``k = 1`` so that they, and their derivatives, stay finite
  (a discarded ``exp(-k x^2)`` with ``k < 0`` would overflow and turn the
  gradient of the select into NaN). ``compiler_options`` go to ``jax.jit``.
  """
  branches = [COSTS[c][0] for c in cost_names]

  def cost(x, k, c):
    if len(branches) == 1:
      return branches[0](x, k)
    values = [fn(x, jnp.where(c == i, k, 1.0))
              for i, fn in enumerate(branches)]
    return jnp.select([c == i for i in range(len(branches))], values)

  def one(loc, scale, c, k, key):
    grad_fn = spec.make(lambda x: cost(x, k, c))
    keys = jax.random.split(key, num_replicas)
    params = {"loc": loc, "scale": scale}
    return jax.vmap(grad_fn, in_axes=(None, 0, None))(params, keys,
                                                       num_samples)

  def program(locs, scales, ks, key):
    num_settings, (num_costs, num_k) = locs.shape[0], ks.shape
    keys = jax.random.split(key, num_settings * num_costs * num_k).reshape(
        num_settings, num_costs, num_k)
    cost_ids = jnp.arange(num_costs)
    over_k = jax.vmap(one, in_axes=(None, None, None, 0, 0))
    over_c = jax.vmap(over_k, in_axes=(None, None, 0, 0, 0))
    return jax.vmap(over_c, in_axes=(0, 0, None, None, 0))(
        locs, scales, cost_ids, ks, keys)

  return jax.jit(program, compiler_options=compiler_options)


def _moments(g: np.ndarray) -> tuple[float, float, float]:
  """Mean, unbiased variance and SE of the variance for samples ``g [R]``."""
  g = np.asarray(g, np.float64)
  r = g.shape[0]
  mean = float(g.mean())
  c = g - mean
  var = float(np.sum(c**2) / (r - 1))
  m4 = float(np.mean(c**4))
  se = math.sqrt(max(m4 - var**2, 0.0) / r)
  return mean, var, se


# --------------------------------------------------------------------------
# Validation, the study, outputs.


def _validate(config) -> None:
  unknown = [c for c in config.costs if c not in COSTS]
  if unknown or not config.costs:
    raise ValueError(f"unknown cost(s) {unknown}; choose from {list(COSTS)}")
  unknown = [e for e in config.estimators if e not in ESTIMATORS]
  if unknown or not config.estimators:
    raise ValueError(f"unknown estimator(s) {unknown}; choose from "
                     f"{list(ESTIMATORS)}")
  for c in config.costs:
    if c not in config.k_values or not len(config.k_values[c]):
      raise ValueError(f"config.k_values has no k grid for cost {c!r}")
    if not all(math.isfinite(float(k)) for k in config.k_values[c]):
      raise ValueError(f"config.k_values[{c!r}] has a non-finite value")
  if not config.settings:
    raise ValueError("config.settings needs at least one (mu, sigma)")
  for mu, sigma in config.settings:
    if not (math.isfinite(mu) and math.isfinite(sigma) and sigma > 0):
      raise ValueError(f"setting (mu={mu}, sigma={sigma}) needs finite mu and "
                       "sigma > 0")
  for e in config.estimators:
    if config.num_samples < ESTIMATORS[e].min_samples:
      raise ValueError(f"estimator {e!r} needs num_samples >= "
                       f"{ESTIMATORS[e].min_samples}, got {config.num_samples}")
  if config.num_replicas < 100:
    raise ValueError(f"num_replicas must be >= 100 for a variance SE, got "
                     f"{config.num_replicas}")
  if not config.bound_k > 0:
    raise ValueError(f"bound_k must be > 0, got {config.bound_k}")


def run(config, workdir: str) -> dict[str, Any]:
  """Runs the study; writes results.json, results.md and the plots."""
  validate.check_config("estimator_variance", config)
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t_start = time.time()
  n, r, bound_k = int(config.num_samples), int(config.num_replicas), float(
      config.bound_k)
  settings = [(float(m), float(s)) for m, s in config.settings]
  locs = jnp.asarray([m for m, _ in settings], jnp.float32)
  scales = jnp.asarray([s for _, s in settings], jnp.float32)
  root = jax.random.key(config.seed)
  rows = []
  mc_seconds = 0.0
  cost_names = tuple(config.costs)
  k_lists = [[float(k) for k in config.k_values[c]] for c in cost_names]
  width = max(len(ks) for ks in k_lists)
  # [C, K] grid, shorter grids padded with their last k (padding not used).
  ks_ck = jnp.asarray([ks + [ks[-1]] * (width - len(ks)) for ks in k_lists],
                      jnp.float32)
  exact = {}
  for ei, est_name in enumerate(config.estimators):
    spec = ESTIMATORS[est_name]
    t0 = time.time()
    program = make_mc_program(spec, cost_names, n, r,
                              launch.compiler_options(config))
    out = program(locs, scales, ks_ck, jax.random.fold_in(root, ei))
    out = jax.tree.map(np.asarray, jax.block_until_ready(out))
    mc_seconds += time.time() - t0
    logging.info("Monte Carlo for %s: %.2fs", est_name, time.time() - t0)
    for ci, cost_name in enumerate(cost_names):
      cost = COSTS[cost_name][0]
      for si, (mu, sigma) in enumerate(settings):
        for ki, k in enumerate(k_lists[ci]):
          f = functools.partial(cost, k=k)
          ref = spec.reference(f, mu, sigma, n)
          if (cost_name, mu, sigma, k) not in exact:
            exact[cost_name, mu, sigma, k] = quadrature.exact_gradient(
                f, mu, sigma)
          grad = exact[cost_name, mu, sigma, k]
          for p in PARAM_NAMES:
            g = out[p][si, ci, ki]
            if not np.all(np.isfinite(g)):
              raise FloatingPointError(
                  f"non-finite estimates for {est_name}, {cost_name}, k={k}, "
                  f"mu={mu}, sigma={sigma}, param {p}")
            mean, var, se = _moments(g)
            v_ref = ref[p]
            floor = (1e-5 * (1.0 + abs(grad[p]))) ** 2
            if v_ref > floor:
              within = abs(var - v_ref) <= bound_k * se
              rel = (var - v_ref) / v_ref
              z = (var - v_ref) / se if se > 0 else float("inf")
            else:  # an exact control variate: only round-off is left
              within = var <= floor
              rel = z = float("nan")
            mean_ok = abs(mean - grad[p]) <= bound_k * math.sqrt(
                max(var, floor) / r)
            rows.append({
                "cost": cost_name, "mu": mu, "sigma": sigma, "k": k,
                "estimator": est_name, "param": p,
                "mc_var": var, "ref_var": v_ref, "rel_dev": rel,
                "se_var": se, "z": z,
                "within_bound": bool(within),
                "mc_mean": mean, "exact_grad": grad[p],
                "mean_ok": bool(mean_ok)})
  rows.sort(key=lambda r_: (cost_names.index(r_["cost"]), r_["mu"],
                            r_["sigma"], r_["k"],
                            config.estimators.index(r_["estimator"])))
  elapsed = time.time() - t_start
  summary = _summary(rows, config)
  res = {
      "config": config.to_dict(),
      "num_samples": n, "num_replicas": r, "bound_k": bound_k,
      "rows": rows, "summary": summary,
      "num_within_bound": sum(r_["within_bound"] for r_ in rows),
      "num_mean_ok": sum(r_["mean_ok"] for r_ in rows),
      "num_rows": len(rows),
      "mc_seconds": mc_seconds, "total_seconds": elapsed,
  }
  # rel_dev and z are undefined where the exact variance is 0 (an exact
  # control variate); the table says so instead of printing nan.
  shown = [dict(r_, rel_dev="ref 0", z="ref 0") if math.isnan(r_["rel_dev"])
           else r_ for r_ in rows]
  shown_summary = [dict(s, max_abs_rel_dev="ref 0", max_abs_z="ref 0")
                   if math.isnan(s["max_abs_rel_dev"]) else s
                   for s in summary]
  full_table = results_lib.markdown_table(
      shown, ["cost", "mu", "sigma", "k", "estimator", "param", "mc_var",
             "ref_var", "rel_dev", "z", "within_bound", "mc_mean",
             "exact_grad", "mean_ok"], precision=4)
  summary_table = results_lib.markdown_table(
      shown_summary, ["cost", "estimator", "param", "rows", "within_bound",
                "mean_ok", "max_abs_rel_dev", "max_abs_z"], precision=3)
  header = (
      f"# Estimator variance vs exact quadrature (Mohamed et al. 2020, "
      f"Sec. 3)\n\nEach MC variance is over R = {r} estimates, each the "
      f"mean of N = {n} samples (reference = exact variance of that "
      f"N-sample estimate). Within bound: |MC - ref| <= {bound_k:g} SE, "
      f"SE = sqrt((m4 - v^2)/R). mean_ok: |MC mean - exact gradient| <= "
      f"{bound_k:g} sqrt(v/R). \"ref 0\": the exact variance is 0 (below "
      f"the float32 round-off floor (1e-5 (1 + |grad|))^2, e.g. a "
      f"delta-method control variate that is exact for a quadratic cost), "
      f"so the relative deviation and z are undefined; such a row is within "
      f"bound when the MC variance is below that floor.\n\n"
      f"{res['num_within_bound']}/{len(rows)} "
      f"variances within bound, {res['num_mean_ok']}/{len(rows)} means "
      f"within bound.\n\n")
  table = header + "## Summary\n\n" + summary_table + "\n## All rows\n\n" + (
      full_table)
  results_lib.write_outputs(workdir, res, table)
  _write_tensorboard(rows, config, workdir)
  _plot(rows, config, settings, workdir)
  res["summary_table"] = summary_table
  res["header"] = header
  return res


def _summary(rows, config) -> list[dict[str, Any]]:
  out = []
  for cost_name in config.costs:
    for est in config.estimators:
      for p in PARAM_NAMES:
        sel = [r for r in rows if r["cost"] == cost_name and
               r["estimator"] == est and r["param"] == p]
        rels = [abs(r["rel_dev"]) for r in sel if math.isfinite(r["rel_dev"])]
        zs = [abs(r["z"]) for r in sel if not math.isnan(r["z"])]
        out.append({
            "cost": cost_name, "estimator": est, "param": p,
            "rows": len(sel),
            "within_bound": sum(r["within_bound"] for r in sel),
            "mean_ok": sum(r["mean_ok"] for r in sel),
            "max_abs_rel_dev": max(rels) if rels else float("nan"),
            "max_abs_z": max(zs) if zs else float("nan")})
  return out


def _write_tensorboard(rows, config, workdir) -> None:
  """Variances against the k grid (TensorBoard step = index of k; the tag
  ``k/<cost>`` holds k itself), one run folder per (mu, sigma)."""
  for mu, sigma in sorted({(r["mu"], r["sigma"]) for r in rows}):
    with metric_writers.open_run(workdir, f"mu{mu:g}_sigma{sigma:g}") as w:
      for cost_name in config.costs:
        ks = sorted({r["k"] for r in rows if r["cost"] == cost_name})
        for r in rows:
          if r["cost"] != cost_name or r["mu"] != mu or r["sigma"] != sigma:
            continue
          i = ks.index(r["k"])
          tag = f"{cost_name}/{r['param']}"
          w.write_scalars(i, {f"k/{cost_name}": r["k"],
                              f"mc_var/{tag}/{r['estimator']}": r["mc_var"],
                              f"ref_var/{tag}/{r['estimator']}": r["ref_var"]})


def _plot(rows, config, settings, workdir) -> None:
  plt = results_lib.pyplot()
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for mu, sigma in settings:
    fig, axes = plt.subplots(len(config.costs), 2, squeeze=False,
                             figsize=(10, 3.2 * len(config.costs)))
    for ci, cost_name in enumerate(config.costs):
      for pi, p in enumerate(PARAM_NAMES):
        ax = axes[ci, pi]
        missing = []   # points with exact variance 0: no place on a log axis
        for ei, est in enumerate(config.estimators):
          sel = [r for r in rows if r["cost"] == cost_name and r["mu"] == mu
                 and r["sigma"] == sigma and r["estimator"] == est and
                 r["param"] == p]
          ks = np.array([r["k"] for r in sel])
          mc = np.array([r["mc_var"] for r in sel])
          ref = np.array([r["ref_var"] for r in sel])
          floor = np.array([(1e-5 * (1.0 + abs(r["exact_grad"]))) ** 2
                            for r in sel])
          c = colors[ei % len(colors)]
          # A zero reference (exact control variate) has no place on a log
          # axis: such points (and their round-off MC values) are left out
          # and listed in the panel title.
          zero = ref <= floor
          if zero.all():
            missing.append(f"{ESTIMATORS[est].label} (all k)")
          elif zero.any():
            missing.append(f"{ESTIMATORS[est].label} (k = "
                           + ", ".join(f"{k:g}" for k in ks[zero]) + ")")
          ax.plot(ks, np.where(zero | (mc <= 0), np.nan, mc), "o-", color=c,
                  ms=3, label=ESTIMATORS[est].label if ci == 0 and
                  pi == 0 else None)
          ax.plot(ks, np.where(zero, np.nan, ref), "--", color=c, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("k (cost parameter, dimensionless)")
        sym = "mu" if p == "loc" else "sigma"
        ax.set_ylabel(f"Var of d/d{sym} estimate\n(log scale)")
        ax.set_title(f"{COSTS[cost_name][1]}: Var d/d{sym}" + (
            "\nexact variance 0, not drawn: " + "; ".join(missing)
            if missing else ""), fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95),
               fontsize=8, title="estimator (solid: Monte Carlo,\n"
               "dashed: exact)")
    fig.suptitle(f"mu = {mu:g}, sigma = {sigma:g}, N = {config.num_samples} "
                 f"samples per estimate (solid: Monte Carlo, dashed: exact)")
    fig.tight_layout()
    results_lib.save_figure(
        fig, os.path.join(workdir, f"variance_mu{mu:g}_sigma{sigma:g}.png"))


if __name__ == "__main__":
  launch.main("estimator_variance", run, report=lambda res, workdir: (
      res["header"] + res["summary_table"]
      + f"\nFull table: {os.path.join(workdir, 'results.md')}; Monte Carlo "
      f"{res['mc_seconds']:.1f}s, total {res['total_seconds']:.1f}s."))
