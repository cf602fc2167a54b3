r"""Backprop is the chain rule: hand-written backward pass and autodiff checks.

Part 1: for every activation and network shape, the hand-written delta-rule
gradients of a two-layer net (``jaxbdl.nn.backprop.two_layer_backward``) are
compared with a float64 ``jax.grad`` (the oracle) over ``num_seeds`` random
networks/datasets (vmapped), as is float32 ``jax.grad``. The error of a
float32 gradient is bounded relative to the CONDITION of the batch sum,
``sum_n |g_n|``, not relative to ``max |g|``: when the per-example terms
cancel, ``|g|`` is small and the plain relative error is large (e.g. ~200
eps32 for tanh 128x10x64x3 on a GPU) without anything being wrong. So the
table reports the error relative to ``max |g|`` (for reference) and relative
to ``sum_n |g_n|`` in eps32 units next to the worst-case bound
``(N + D + H + K + 16) eps32`` (:func:`condition_bound`), and whether it
holds for both float32 gradients.

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
from experiments import validate
from jaxbdl.nn import backprop
from jaxbdl.evaluation import results as results_lib

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


def _grads32(params, x, y, activation):
  """Hand-written and autodiff gradients in float32."""
  return (backprop.two_layer_backward(params, x, y, activation),
          jax.grad(backprop.two_layer_loss)(params, x, y, activation))


def _reference64(params, x, y, activation):
  """float64 ``jax.grad`` (the oracle) and the condition scale.

  The gradient of a leaf entry is a sum over examples, ``g = sum_n g_n``; a
  float32 evaluation of it carries an error proportional to
  ``sum_n |g_n|`` (the condition of the sum), not to ``|g|``, which can be
  orders of magnitude smaller when the terms cancel. Returns
  ``(grad, cond)`` with ``cond = sum_n |g_n|`` per entry, both float64.
  """
  def per_example(p, xn, yn):
    return jax.grad(backprop.two_layer_loss)(p, xn[None], yn[None], activation)
  grad = jax.grad(backprop.two_layer_loss)(params, x, y, activation)
  g_n = jax.vmap(per_example, in_axes=(None, 0, 0))(params, x, y)
  cond = jax.tree.map(lambda g: jnp.sum(jnp.abs(g), axis=0), g_n)
  return grad, cond


def _errors(hand, auto, ref, cond):
  """Max errors over leaves and seeds (numpy float64 trees with [S] axis)."""
  out = {}
  for tag, g in (("hand", hand), ("auto", auto)):
    abs_err = max(float(np.max(np.abs(g[p] - ref[p]))) for p in ref)
    rel_max = max(float(np.max(np.max(np.abs(g[p] - ref[p]), axis=tuple(
        range(1, ref[p].ndim))) / np.maximum(np.max(np.abs(ref[p]), axis=tuple(
            range(1, ref[p].ndim))), 1e-300))) for p in ref)
    rel_cond = max(float(np.max(np.abs(g[p] - ref[p])
                                / np.maximum(cond[p], 1e-300))) for p in ref)
    out[tag] = (abs_err, rel_max, rel_cond)
  hand_vs_auto = max(float(np.max(np.abs(hand[p] - auto[p]))
                           / max(float(np.max(np.abs(auto[p]))), 1e-30))
                     for p in ref)
  return out, hand_vs_auto


def condition_bound(shape) -> float:
  """A worst-case float32 bound, in eps32 units, on
  ``|g32 - g64| / sum_n |g_n|`` for the two-layer net of ``shape``.

  Each term ``g_n`` is a product of a few float32 factors, each a dot
  product of length ``D``, ``H`` or ``K`` (standard bound ``gamma_m = m eps``
  relative to the sum of magnitudes, Higham 2002, Sec. 3.1), and the batch
  sum adds ``N``; with a small constant for the activation and the
  subtraction ``y_hat - y``: ``N + D + H + K + 16``. The cancellation in
  ``y_hat - y`` makes even this a bound relative to ``|y_hat| + |y|``; the
  table reports the measured value next to it.
  """
  n, d, h, k = shape
  return float(n + d + h + k + 16)


def run_backward_check(config):
  """Rows per (activation, shape): errors over ``num_seeds`` vmapped seeds.

  Both float32 gradients (hand-written, ``jax.grad``) are compared with a
  float64 ``jax.grad`` of the same (float32-valued) inputs. Reported per
  row: the error relative to ``max |g|`` (what the old table showed: large
  when the batch sum cancels) and relative to the condition scale
  ``sum_n |g_n|`` in eps32 units, with :func:`condition_bound`.
  """
  rows = []
  base = jax.random.key(config.seed)
  problems = [_random_problems(jax.random.fold_in(base, i),
                               tuple(int(s) for s in shape), config.num_seeds)
              for i, shape in enumerate(config.shapes)]
  for activation in config.activations:
    grads32 = jax.jit(jax.vmap(lambda p, x, y: _grads32(p, x, y, activation)))
    for shape, (params, x, y) in zip(config.shapes, problems):
      # True float32 products: on GPUs the default float32 matmul may use
      # TF32 (10-bit mantissa), which no float32 bound covers.
      with jax.default_matmul_precision("highest"):
        hand, auto = jax.device_get(grads32(params, x, y))
      with jax.enable_x64(True):
        to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)
        ref64 = jax.jit(jax.vmap(
            lambda p, x, y: _reference64(p, x, y, activation)))
        ref, cond = jax.device_get(ref64(to64(params), to64(x), to64(y)))
      hand = jax.tree.map(lambda a: np.asarray(a, np.float64), hand)
      auto = jax.tree.map(lambda a: np.asarray(a, np.float64), auto)
      errs, hand_vs_auto = _errors(hand, auto, ref, cond)
      shape = tuple(int(s) for s in shape)
      bound = condition_bound(shape)
      rows.append({
          "activation": activation, "shape (N,D,H,K)": "x".join(map(str, shape)),
          "seeds": config.num_seeds,
          "max_abs_error": errs["hand"][0],
          "max_rel_error": errs["hand"][1],
          "rel_error / eps32": errs["hand"][1] / EPS32,
          "cond_rel_error / eps32": errs["hand"][2] / EPS32,
          "autodiff cond_rel_error / eps32": errs["auto"][2] / EPS32,
          "bound / eps32": bound,
          "within bound": bool(max(errs["hand"][2], errs["auto"][2])
                               <= bound * EPS32),
          "hand_vs_autodiff_rel_error": hand_vs_auto,
      })
      logging.info("backward check %s %s: cond-relative error %.3g eps32 "
                   "(bound %g)", activation, shape, errs["hand"][2] / EPS32,
                   bound)
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
  validate.check_config("backprop_check", config)
  _validate(config)
  backward_rows = run_backward_check(config)
  point_rows = run_lecture_check(config)
  in_dom = [r for r in point_rows if r["in_domain"]]
  results = {
      "backward": backward_rows,
      "lecture_function": point_rows,
      "summary": {
          "max_rel_error_backward": max(r["max_rel_error"] for r in backward_rows),
          "max_cond_rel_error_backward_eps32": max(
              r["cond_rel_error / eps32"] for r in backward_rows),
          "backward_within_condition_bound": all(
              r["within bound"] for r in backward_rows),
          "max_abs_error_fd_in_domain": max((r["abs_error"] for r in in_dom),
                                            default=float("nan")),
          "num_out_of_domain": len(point_rows) - len(in_dom),
      },
      "config": config.to_dict(),
  }
  table = ("## Hand-written backward pass (float32) vs float64 jax.grad\n\n"
           "Errors relative to max |g| (large when the batch sum cancels) "
           "and to the condition scale sum_n |g_n| in eps32 units; bound = "
           "(N + D + H + K + 16) eps32 (worst case, relative to the "
           "condition). Matmul precision 'highest' (no TF32 on GPUs).\n\n"
           + results_lib.markdown_table(
               backward_rows, ["activation", "shape (N,D,H,K)", "seeds",
                               "max_abs_error", "rel_error / eps32",
                               "cond_rel_error / eps32",
                               "autodiff cond_rel_error / eps32",
                               "bound / eps32", "within bound"], precision=3)
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
