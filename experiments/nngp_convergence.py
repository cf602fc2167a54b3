r"""Finite random networks converge to the NNGP kernel as width grows.

For each activation and width n we draw S independent random nets
(:class:`jaxbdl.gaussian_processes.nngp.RandomMLP`: ``depth`` hidden layers of width n, weights
N(0, sigma_w2 / fan_in), biases N(0, sigma_b2), vmapped over inits in chunks)
and compute each net's empirical NNGP kernel on P fixed inputs,

    K_s(x, x') = sigma_b2 + sigma_w2 * phi(z_L(x)) . phi(z_L(x')) / n,

the output covariance given the last hidden layer (the linear readout is
integrated out exactly). We compare with the analytic kernel K
(:func:`jaxbdl.gaussian_processes.nngp.nngp_kernel`, Lee et al. 2018 Eq. 4) via the relative
Frobenius error E_s = ||K_s - K||_F / ||K||_F.

What we fit, and why the slope is -1/2. K_s averages n conditionally i.i.d.
unit terms, so Var(K_s(x, x')) = c(x, x') / n + O(1/n^2), and for depth >= 2
with a nonlinear phi its mean has an O(1/n) bias b (the next layer is a
nonlinear function of a fluctuating kernel). Hence

    E[E_s^2] = (sum_xx' c / n + ||b||^2 / n^2) / ||K||^2 = C / n + O(1/n^2),

so the per-init RMS error sqrt(mean_s E_s^2) ~ sqrt(C) n^{-1/2}: we fit
log(RMS error) = a + slope * log(n) by least squares and expect slope = -1/2
(it tends to -1/2 from below/above as the O(1/n) terms fade). The error of
the S-init mean kernel, ||mean_s K_s - K|| / ||K||, is
sqrt(C / (n S) + ||b||^2 / (n ||K||)^2): slope -1/2 while the Monte Carlo part
dominates (n >> S ||b||^2 / (C ||K||^2)), steepening towards -1 once the bias
dominates. As S varies with n here, we report it times sqrt(S) (on the same
line as the RMS error if the bias is negligible) and fit its slope too.

Run::

  python -m experiments.nngp_convergence --workdir workdirs/nngp_convergence \
      [--config experiments/configs/nngp_convergence.py[:quick]]

Outputs in ``--workdir``: ``results.json``, ``results.md``,
``convergence.png``.

References:
  Lee et al. (2018), Deep Neural Networks as Gaussian Processes, ICLR, Eq. 4
    and Sec. 3 (empirical comparison with finite nets).
  Matthews et al. (2018), Gaussian Process Behaviour in Wide Deep Neural
    Networks, ICLR.
  Neal (1996), Bayesian Learning for Neural Networks, Ch. 2.
"""
from __future__ import annotations

import math
import os
import time

from absl import logging
import jax
import numpy as np

from experiments import launch
from jaxbdl.gaussian_processes import nngp
from jaxbdl.evaluation import results as results_lib

TABLE_COLUMNS = ("activation", "width", "num_inits", "rms_rel_error",
                 "rms_rel_error_se", "mean_kernel_rel_error",
                 "mean_error_x_sqrt_inits", "seconds")
SLOPE_COLUMNS = ("activation", "quantity", "slope", "slope_se", "theory")


def _validate(config) -> None:
  unknown = [a for a in config.activations if a not in nngp.ACTIVATIONS]
  if unknown or not config.activations:
    raise ValueError(f"unknown activation(s) {unknown or '(none given)'}; "
                     f"valid: {list(nngp.ACTIVATIONS)}")
  widths = [int(w) for w in config.widths]
  if len(widths) < 2 or min(widths) < 1 or sorted(set(widths)) != widths:
    raise ValueError(f"config.widths must be >= 2 distinct increasing positive "
                     f"ints, got {tuple(config.widths)}")
  if int(config.depth) < 1:
    raise ValueError(f"config.depth must be >= 1 (depth 0 is deterministic), "
                     f"got {config.depth}")
  for name in ("num_points", "input_dim", "num_inits", "max_weight_draws",
               "chunk_weights"):
    if int(config[name]) < 1:
      raise ValueError(f"config.{name} must be >= 1, got {config[name]}")
  if not 2 <= int(config.min_inits) <= int(config.num_inits):
    raise ValueError(f"need 2 <= config.min_inits <= num_inits, got "
                     f"{config.min_inits}, {config.num_inits}")
  if config.sigma_w2 <= 0 or config.sigma_b2 < 0:
    raise ValueError(f"need sigma_w2 > 0 and sigma_b2 >= 0, got "
                     f"{config.sigma_w2}, {config.sigma_b2}")


def num_inits_for(config, width: int) -> int:
  """Inits at this width: capped by a weight-draw budget, floored at min_inits."""
  budget = int(config.max_weight_draws) // (width * width)
  return int(min(config.num_inits, max(config.min_inits, budget)))


def fit_slope(widths, errors) -> tuple[float, float]:
  """OLS slope of log(error) on log(width) and its standard error."""
  lx, ly = np.log(np.asarray(widths, float)), np.log(np.asarray(errors, float))
  design = np.stack([np.ones_like(lx), lx], axis=1)
  coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
  resid = ly - design @ coef
  dof = max(len(lx) - 2, 1)
  sigma2 = float(resid @ resid) / dof
  cov = sigma2 * np.linalg.inv(design.T @ design)
  return float(coef[1]), float(math.sqrt(cov[1, 1]))


def measure(config, activation: str, width: int, x: np.ndarray,
            analytic: np.ndarray, key: jax.Array) -> dict:
  """Empirical kernels of S random nets at one width, and their errors."""
  s = num_inits_for(config, width)
  chunk = max(1, min(s, int(config.chunk_weights) // (width * width)))
  t0 = time.time()
  kernels = nngp.sample_empirical_kernels(
      key, x, num_inits=s, depth=int(config.depth), width=width,
      sigma_w2=float(config.sigma_w2), sigma_b2=float(config.sigma_b2),
      activation=activation, batch_size=chunk)
  kernels = np.asarray(kernels, np.float64)                     # [S, P, P]
  seconds = time.time() - t0
  norm = np.linalg.norm(analytic)
  sq_err = np.sum((kernels - analytic) ** 2, axis=(1, 2)) / norm ** 2   # E_s^2
  ms = float(np.mean(sq_err))
  rms = math.sqrt(ms)
  # Delta method: SE(sqrt(m)) = SE(m) / (2 sqrt(m)), SE(m) = std(E_s^2)/sqrt(S).
  rms_se = float(np.std(sq_err, ddof=1) / math.sqrt(s) / (2 * rms))
  mean_err = float(np.linalg.norm(kernels.mean(0) - analytic) / norm)
  return {"activation": activation, "width": width, "num_inits": s,
          "rms_rel_error": rms, "rms_rel_error_se": rms_se,
          "mean_kernel_rel_error": mean_err,
          "mean_error_x_sqrt_inits": mean_err * math.sqrt(s),
          "seconds": seconds}


def _plot(rows, slopes, path: str) -> None:
  plt = results_lib.pyplot()
  activations = list(dict.fromkeys(r["activation"] for r in rows))
  fig, axes = plt.subplots(1, len(activations),
                           figsize=(5.2 * len(activations), 4), squeeze=False)
  for ax, act in zip(axes[0], activations):
    rs = [r for r in rows if r["activation"] == act]
    w = np.array([r["width"] for r in rs], float)
    rms = np.array([r["rms_rel_error"] for r in rs])
    se = np.array([r["rms_rel_error_se"] for r in rs])
    scaled = np.array([r["mean_error_x_sqrt_inits"] for r in rs])
    ax.errorbar(w, rms, yerr=2 * se, fmt="o-", color="C0", capsize=3,
                label=f"per-init RMS error (slope "
                      f"{slopes[(act, 'rms_rel_error')][0]:.3f})")
    ax.plot(w, scaled, "s--", color="C1",
            label=f"mean-kernel error x sqrt(S) (slope "
                  f"{slopes[(act, 'mean_error_x_sqrt_inits')][0]:.3f})")
    ref = rms[0] * (w / w[0]) ** -0.5
    ax.plot(w, ref, ":", color="k", label="slope -1/2")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width n")
    ax.set_ylabel("||K_emp - K_NNGP||_F / ||K_NNGP||_F")
    ax.set_title(f"{act}")
    ax.legend(fontsize=7)
  results_lib.save_figure(fig, path)


def run(config, workdir: str) -> dict:
  """Measures kernel error against width for each activation; writes outputs.

  Returns:
    the results dict written to ``results.json``: ``rows`` (one per
    activation and width), ``slopes`` (fitted log-log slopes with standard
    errors), ``analytic_kernel`` per activation, ``config``.
  """
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  key = jax.random.key(config.seed, impl=config.prng_impl)
  k_x, k_nets = jax.random.split(key)
  x = np.asarray(jax.random.normal(k_x, (config.num_points, config.input_dim)),
                 np.float32)
  rows, slopes, analytic_kernels = [], {}, {}
  for a_i, act in enumerate(config.activations):
    analytic = np.asarray(nngp.nngp_kernel(
        x, x, int(config.depth), float(config.sigma_w2),
        float(config.sigma_b2), act), np.float64)
    analytic_kernels[act] = analytic
    for w_i, width in enumerate(config.widths):
      row = measure(config, act, int(width), x, analytic,
                    jax.random.fold_in(jax.random.fold_in(k_nets, a_i), w_i))
      logging.info("%s width %d: %d inits, RMS rel. error %.4f, %.1fs", act,
                   width, row["num_inits"], row["rms_rel_error"],
                   row["seconds"])
      rows.append(row)
    rs = [r for r in rows if r["activation"] == act]
    for quantity in ("rms_rel_error", "mean_error_x_sqrt_inits"):
      slopes[(act, quantity)] = fit_slope([r["width"] for r in rs],
                                          [r[quantity] for r in rs])
  slope_rows = [{"activation": a, "quantity": q, "slope": s, "slope_se": se,
                 "theory": -0.5} for (a, q), (s, se) in slopes.items()]
  results = {"rows": rows, "slopes": slope_rows,
             "analytic_kernel": analytic_kernels,
             "inputs": x, "config": config.to_dict(),
             "jax_backend": jax.default_backend()}
  table = (results_lib.markdown_table(rows, TABLE_COLUMNS, precision=4) + "\n"
           + results_lib.markdown_table(slope_rows, SLOPE_COLUMNS,
                                        precision=3))
  results_lib.write_outputs(workdir, results, table)
  _plot(rows, slopes, os.path.join(workdir, "convergence.png"))
  return results


if __name__ == "__main__":
  launch.main("nngp_convergence", run, report=lambda res, workdir: (
      results_lib.markdown_table(res["rows"], TABLE_COLUMNS, precision=4)
      + "\n" + results_lib.markdown_table(res["slopes"], SLOPE_COLUMNS,
                                          precision=3)))
