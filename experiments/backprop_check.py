r"""Backprop is the chain rule: hand-written backward pass and autodiff checks.

Part 1: for every activation and network shape, the hand-written delta-rule
gradients of a two-layer net (``jaxbdl.backprop.two_layer_backward``) are
compared with ``jax.grad`` over ``num_seeds`` random networks/datasets
(vmapped). Reported: max absolute and relative error, and the relative error
in units of float32 machine epsilon.

Part 2: at each point, ``jax.grad`` of the lecture function
``f(x1, x2) = x1 sqrt(log(x1 / sin(x2^2)))`` is compared with central finite
differences in float64; points outside the domain ``x1 / sin(x2^2) > 1`` are
flagged (their gradients are NaN). A contour plot shows ``f`` with the domain
and the points.

Run::

  python -m experiments.backprop_check --workdir /tmp/backprop_check \
      [--config experiments/configs/backprop_check.py:quick]
"""
from __future__ import annotations

import os

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from experiments import launch
from jaxbdl import backprop
from jaxbdl import results as results_lib

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


def _validate(config) -> None:
  unknown = [a for a in config.activations if a not in backprop.ACTIVATIONS]
  if unknown:
    raise ValueError(f"unknown activation(s) {unknown}; valid: {list(backprop.ACTIVATIONS)}")
  for shape in config.shapes:
    if len(shape) != 4 or any(int(s) <= 0 for s in shape):
      raise ValueError(f"shapes must be positive (N, D, H, K) tuples, got {shape}")
  if config.num_seeds < 1:
    raise ValueError(f"num_seeds must be >= 1, got {config.num_seeds}")
  for p in config.points:
    if len(p) != 2 or not all(np.isfinite(p)):
      raise ValueError(f"points must be finite (x1, x2) pairs, got {p}")
  if not config.fd_eps_factor > 0:
    raise ValueError(f"fd_eps_factor must be > 0, got {config.fd_eps_factor}")
  if config.plot_grid < 2:
    raise ValueError(f"plot_grid must be >= 2, got {config.plot_grid}")


def _random_problems(key, shape, num_seeds):
  """``num_seeds`` random (params, x, y) from ONE normal draw (one PRNG compile).

  Weights are LeCun-scaled (``W1 ~ N(0, 1/D)``, ``W2 ~ N(0, 1/H)``), biases
  ``N(0, 0.1^2)``, inputs and targets standard normal. Leaves have a leading
  ``[num_seeds]`` axis.
  """
  n, d, h, k = shape
  sizes = {"W1": (h, d), "b1": (h,), "W2": (k, h), "b2": (k,), "x": (n, d), "y": (n, k)}
  scales = {"W1": d ** -0.5, "b1": 0.1, "W2": h ** -0.5, "b2": 0.1, "x": 1.0, "y": 1.0}
  total = sum(int(np.prod(s)) for s in sizes.values())
  z = jax.random.normal(key, (num_seeds, total))
  out, start = {}, 0
  for name, s in sizes.items():
    size = int(np.prod(s))
    out[name] = scales[name] * z[:, start:start + size].reshape((num_seeds,) + s)
    start += size
  params = {p: out[p] for p in ("W1", "b1", "W2", "b2")}
  return params, out["x"], out["y"]


def _errors_one(params, x, y, activation):
  """Max abs error and max relative error (per leaf) of hand vs autodiff grads."""
  hand = backprop.two_layer_backward(params, x, y, activation)
  auto = jax.grad(backprop.two_layer_loss)(params, x, y, activation)
  abs_err = jnp.stack([jnp.max(jnp.abs(hand[p] - auto[p])) for p in sorted(params)])
  rel_err = jnp.stack([jnp.max(jnp.abs(hand[p] - auto[p]))
                       / (jnp.max(jnp.abs(auto[p])) + 1e-30) for p in sorted(params)])
  return jnp.max(abs_err), jnp.max(rel_err)


def run_backward_check(config):
  """Rows per (activation, shape): errors over ``num_seeds`` vmapped seeds."""
  rows = []
  base = jax.random.key(config.seed)
  problems = [_random_problems(jax.random.fold_in(base, i),
                               tuple(int(s) for s in shape), config.num_seeds)
              for i, shape in enumerate(config.shapes)]
  for activation in config.activations:
    errors = jax.jit(jax.vmap(lambda p, x, y: _errors_one(p, x, y, activation)))
    for shape, (params, x, y) in zip(config.shapes, problems):
      abs_err, rel_err = (np.asarray(e) for e in errors(params, x, y))
      shape = tuple(int(s) for s in shape)
      rows.append({
          "activation": activation, "shape (N,D,H,K)": "x".join(map(str, shape)),
          "seeds": config.num_seeds,
          "max_abs_error": float(abs_err.max()),
          "max_rel_error": float(rel_err.max()),
          "rel_error / eps32": float(rel_err.max() / EPS32),
      })
      logging.info("backward check %s %s: max rel err %.3g", activation, shape,
                   rel_err.max())
  return rows


def run_lecture_check(config):
  """Rows per point: autodiff vs finite differences in float64."""
  rows = []
  for x1, x2 in config.points:
    x1, x2 = float(x1), float(x2)
    eps = config.fd_eps_factor * EPS64 ** (1 / 3) * max(1.0, abs(x1), abs(x2))
    res = backprop.check_lecture_function(x1, x2, eps=eps)
    rows.append({
        "x1": x1, "x2": x2, "in_domain": res.in_domain,
        "u = x1/sin(x2^2)": float(x1 / np.sin(x2 ** 2)),
        "f": res.value,
        "autodiff df/dx1": float(res.autodiff[0]),
        "autodiff df/dx2": float(res.autodiff[1]),
        "fd df/dx1": float(res.finite_difference[0]),
        "fd df/dx2": float(res.finite_difference[1]),
        "abs_error": res.abs_error, "rel_error": res.rel_error, "eps": res.eps,
        "flag": "" if res.in_domain else "OUT OF DOMAIN (NaN gradient)",
    })
  return rows


def _plot(config, point_rows, path) -> None:
  plt = results_lib.pyplot()
  (a1, b1), (a2, b2) = config.plot_range
  g = int(config.plot_grid)
  x1, x2 = np.meshgrid(np.linspace(a1, b1, g), np.linspace(a2, b2, g))
  with np.errstate(all="ignore"):
    f = x1 * np.sqrt(np.log(x1 / np.sin(x2 ** 2)))
    domain = (x1 / np.sin(x2 ** 2)) > 1.0
  fig, ax = plt.subplots(figsize=(6.5, 5))
  ax.contourf(x1, x2, domain.astype(float), levels=[0.5, 1.5], colors=["#e8f3e8"])
  cs = ax.contour(x1, x2, np.where(domain, f, np.nan), levels=15, cmap="viridis")
  fig.colorbar(cs, ax=ax, label="f(x1, x2)")
  for r in point_rows:
    ax.plot(r["x1"], r["x2"], "o" if r["in_domain"] else "x",
            color="tab:green" if r["in_domain"] else "tab:red", ms=8, mew=2)
  ax.set_xlabel("x1")
  ax.set_ylabel("x2")
  ax.set_title("f = x1 sqrt(log(x1 / sin(x2^2))); shaded: x1/sin(x2^2) > 1\n"
               "green o: checked points in the domain; red x: outside (NaN)")
  results_lib.save_figure(fig, path)


def run(config, workdir: str) -> dict:
  """Runs both checks; writes results.json, results.md and lecture_function.png."""
  _validate(config)
  backward_rows = run_backward_check(config)
  point_rows = run_lecture_check(config)
  in_dom = [r for r in point_rows if r["in_domain"]]
  results = {
      "backward": backward_rows,
      "lecture_function": point_rows,
      "summary": {
          "max_rel_error_backward": max(r["max_rel_error"] for r in backward_rows),
          "max_abs_error_fd_in_domain": max((r["abs_error"] for r in in_dom),
                                            default=float("nan")),
          "num_out_of_domain": len(point_rows) - len(in_dom),
      },
      "config": config.to_dict(),
  }
  table = ("## Hand-written backward pass vs jax.grad (float32)\n\n"
           + results_lib.markdown_table(
               backward_rows, ["activation", "shape (N,D,H,K)", "seeds",
                               "max_abs_error", "max_rel_error",
                               "rel_error / eps32"], precision=3)
           + "\n## jax.grad vs central differences on the lecture function "
             "(float64)\n\n"
           + results_lib.markdown_table(
               point_rows, ["x1", "x2", "u = x1/sin(x2^2)", "autodiff df/dx1",
                            "fd df/dx1", "autodiff df/dx2", "fd df/dx2",
                            "abs_error", "flag"], precision=4))
  results_lib.write_outputs(workdir, results, table)
  _plot(config, point_rows, os.path.join(workdir, "lecture_function.png"))
  results["table"] = table
  return results


if __name__ == "__main__":
  launch.main("backprop_check", run, report=lambda res, workdir: res["table"])
