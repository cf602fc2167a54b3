r"""Gradient estimators for discrete variables: the REBAR/RELAX toy and an SBN.

Part 1, the toy of Tucker et al. (2017, sec. 6.1) and Grathwohl et al.
(2018, sec. 6.1): minimise ``E_{b ~ Bern(sigmoid(theta))}[(b - t)^2]`` over
the logit ``theta`` (start 0) for ``t in {0.45, 0.499}``. The exact gradient
is ``(1 - 2t) p (1 - p)`` (``p = sigmoid(theta)``; ``dE/dp = (1-t)^2 - t^2``),
so along training every ``eval_every`` steps we measure, at the current
``theta``, the bias (mean of ``variance_replicas`` single-key estimates minus
the exact gradient, with its standard error) and the variance of each
estimator. The optimum is ``p -> 0`` (``t < 0.5``); at ``t = 0.499`` the
signal is 0.002 of the per-sample noise of REINFORCE.

Part 2, a one-layer sigmoid belief network on binarised sklearn digits
(8x8, pixel > 0.5): ``h ~ Bern(sigmoid(a))`` (``H`` units), ``x | h ~
Bern(sigmoid(W h + c))``, encoder ``q(h | x) = Bern(sigmoid(U x + d))``.
ELBO ``= E_q[log p(x, h)] + H[q]``, the entropy analytic, ``E_q[log p(x,
h)]``'s encoder gradient by the estimator under study (per example, ``f(h) =
log p(x, h)`` with the decoder held fixed), the decoder gradient
``mean_s grad log p(x, h_s)`` on the same samples. Adam on minibatches;
the test-set ELBO (analytic entropy + ``elbo_samples`` MC samples) is
reported against training wall time (compilation excluded). The test split
is only reported, never used to choose anything.

Estimators (capabilities as data: :data:`ESTIMATORS` maps a name to an
:class:`EstimatorSpec`, whose ``init_phi`` is ``None`` unless the estimator
has a learned control trained by minimising the variance):
REINFORCE (``score_function``), REINFORCE with the leave-one-out baseline
(needs ``num_samples >= 2``), Gumbel-softmax (biased), straight-through
(biased), REBAR (fixed ``eta = 1``, ``lambda = 0.5``), REBAR with learned
``eta``, ``lambda`` (RELAX with REBAR's control) and RELAX (REBAR's control
plus a tanh MLP ``r(z)``).

Run:
  python -m experiments.discrete_variance --workdir /tmp/dv \
      [--config experiments/configs/discrete_variance.py[:quick]]

Outputs: ``results.json``, ``results.md``, ``toy.png`` (p, bias and log
variance vs step per target), ``sbn.png`` (test ELBO vs wall time).
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, NamedTuple, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import launch
from jaxbdl.gradients import control_variates as cvs
from jaxbdl import data as data_lib
from jaxbdl.gradients import distributions as dists
from jaxbdl.gradients import estimators as ests
from jaxbdl.gradients import relaxations as rx
from jaxbdl.evaluation import results as results_lib

Bernoulli = dists.Bernoulli


class EstimatorSpec(NamedTuple):
  """An estimator of the study.

  Attributes:
    make: ``phi -> Estimator`` (``phi`` is ``None`` without a control).
    init_phi: ``(key, logits) -> phi`` for a learned control, else ``None``.
    min_samples: smallest ``num_samples`` it accepts.
  """
  make: Callable[[Any], ests.Estimator]
  init_phi: Optional[Callable[[jax.Array, jax.Array], Any]] = None
  min_samples: int = 1


_MLP_INIT, _MLP_CONTROL = rx.mlp_control(hidden=10, temperature_init=0.5)


def _init_rebar_phi(key, logits):
  del key, logits
  return {"eta": jnp.ones(()), "log_temperature": jnp.log(jnp.full((), 0.5))}


ESTIMATORS: dict[str, EstimatorSpec] = {
    "reinforce": EstimatorSpec(lambda phi: ests.score_function),
    "reinforce_loo": EstimatorSpec(
        lambda phi: cvs.with_control_variate(ests.score_function,
                                             cvs.leave_one_out_baseline()),
        min_samples=2),
    "gumbel_softmax": EstimatorSpec(lambda phi: rx.gumbel_softmax(0.5)),
    "straight_through": EstimatorSpec(lambda phi: rx.straight_through),
    "rebar": EstimatorSpec(lambda phi: rx.rebar(0.5, 1.0)),
    "rebar_tuned": EstimatorSpec(lambda phi: rx.relax(rx.rebar_control(), phi),
                                 init_phi=_init_rebar_phi),
    "relax": EstimatorSpec(lambda phi: rx.relax(_MLP_CONTROL, phi),
                           init_phi=_MLP_INIT),
}


def _validate(config) -> None:
  for part in ("toy", "sbn"):
    c = config[part]
    unknown = [e for e in c.estimators if e not in ESTIMATORS]
    if unknown or not c.estimators:
      raise ValueError(f"config.{part}.estimators: unknown {unknown}; choose "
                       f"from {list(ESTIMATORS)}")
    for name in ("num_steps", "eval_every", "num_samples"):
      if int(c[name]) < 1:
        raise ValueError(f"config.{part}.{name} must be >= 1, got {c[name]}")
    if c.num_steps % c.eval_every:
      raise ValueError(f"config.{part}.num_steps ({c.num_steps}) must be a "
                       f"multiple of eval_every ({c.eval_every})")
    for e in c.estimators:
      if c.num_samples < ESTIMATORS[e].min_samples:
        raise ValueError(f"config.{part}.num_samples = {c.num_samples} < "
                         f"{ESTIMATORS[e].min_samples} needed by {e}")
  for t in config.toy.targets:
    if not 0.0 < t < 1.0:
      raise ValueError(f"config.toy.targets must be in (0, 1), got {t}")
  if config.toy.variance_replicas < 2:
    raise ValueError("config.toy.variance_replicas must be >= 2")


# ---------------------------------------------------------------------------
# Part 1: the toy.


def toy_exact_gradient(theta, t):
  """d/dtheta E[(b - t)^2] = (1 - 2t) p (1 - p), p = sigmoid(theta)."""
  p = jax.nn.sigmoid(theta)
  return (1.0 - 2.0 * t) * p * (1.0 - p)


def toy_loss(theta, t):
  """E[(b - t)^2] = p (1 - t)^2 + (1 - p) t^2."""
  p = jax.nn.sigmoid(theta)
  return p * (1.0 - t) ** 2 + (1.0 - p) * t**2


def make_toy_run(spec: EstimatorSpec, t: float, c) -> Callable:
  """``run(key) -> trace`` for one estimator and target (pure; jit/vmap)."""
  f = lambda b: jnp.sum(jnp.square(b - t))
  opt = optax.adam(c.learning_rate)
  phi_opt = optax.adam(c.control_learning_rate)
  s = int(c.num_samples)

  def grad_theta(theta, phi, key):
    g = spec.make(phi)(f, Bernoulli)({"logits": theta}, key, s)
    return g["logits"]

  def step(carry, key):
    theta, opt_state, phi, phi_state = carry
    g = grad_theta(theta, phi, key)
    updates, opt_state = opt.update(g, opt_state)
    if spec.init_phi is not None:
      var_loss = rx.variance_loss(spec.make, f, Bernoulli)
      g_phi = jax.grad(var_loss)(phi, {"logits": theta}, key, s)
      phi_up, phi_state = phi_opt.update(g_phi, phi_state)
      phi = optax.apply_updates(phi, phi_up)
    return (optax.apply_updates(theta, updates), opt_state, phi,
            phi_state), None

  def measure(theta, phi, key):
    keys = jax.random.split(key, c.variance_replicas)
    # Single-sample estimates (num_samples = 1 where the estimator allows;
    # the leave-one-out baseline needs 2, reported per estimate of 2).
    m = max(1, spec.min_samples)
    g = jax.vmap(lambda k: spec.make(phi)(f, Bernoulli)(
        {"logits": theta}, k, m)["logits"][0])(keys)
    exact = toy_exact_gradient(theta[0], t)
    return {"theta": theta[0], "p": jax.nn.sigmoid(theta[0]),
            "loss": toy_loss(theta[0], t), "exact_grad": exact,
            "bias": jnp.mean(g) - exact,
            "bias_se": jnp.std(g) / math.sqrt(c.variance_replicas),
            "variance": jnp.var(g)}

  num_chunks = c.num_steps // c.eval_every

  def run(key):
    train_key, eval_key, phi_key = jax.random.split(key, 3)
    theta = jnp.zeros((1,))
    phi = (spec.init_phi(phi_key, theta) if spec.init_phi is not None
           else jnp.zeros(()))
    carry = (theta, opt.init(theta), phi, phi_opt.init(phi))

    def chunk(carry, i):
      m = measure(carry[0], carry[2], jax.random.fold_in(eval_key, i))
      keys = jax.vmap(lambda j: jax.random.fold_in(
          train_key, i * c.eval_every + j))(jnp.arange(c.eval_every))
      carry, _ = jax.lax.scan(step, carry, keys)
      return carry, m

    carry, trace = jax.lax.scan(chunk, carry, jnp.arange(num_chunks))
    last = measure(carry[0], carry[2], jax.random.fold_in(eval_key,
                                                          num_chunks))
    trace = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), trace,
                         last)
    trace["step"] = jnp.arange(num_chunks + 1) * c.eval_every
    return trace

  return run


def run_toy(config) -> tuple[list[dict], dict]:
  c = config.toy
  keys = jax.random.split(jax.random.key(config.seed), c.num_seeds)
  rows, traces = [], {}
  for t in c.targets:
    for name in c.estimators:
      t0 = time.time()
      fn = jax.jit(jax.vmap(make_toy_run(ESTIMATORS[name], float(t), c)))
      tr = jax.tree.map(np.asarray, jax.block_until_ready(fn(keys)))
      traces[f"{name}@{t}"] = tr
      z = np.abs(tr["bias"]) / np.maximum(tr["bias_se"], 1e-30)
      rows.append({
          "target": float(t), "estimator": name,
          "final_p": float(np.mean(tr["p"][:, -1])),
          "final_p_min": float(np.min(tr["p"][:, -1])),
          "final_p_max": float(np.max(tr["p"][:, -1])),
          "final_loss_minus_opt": float(np.mean(tr["loss"][:, -1]) - t * t),
          "mean_log10_var": float(np.mean(np.log10(tr["variance"]))),
          "mean_abs_bias": float(np.mean(np.abs(tr["bias"]))),
          "frac_bias_gt_4se": float(np.mean(z > 4.0)),
          "seconds": time.time() - t0})
      logging.info("toy %s t=%s: p=%.3f", name, t, rows[-1]["final_p"])
  return rows, traces


# ---------------------------------------------------------------------------
# Part 2: sigmoid belief network on binarised digits.


def load_binary_digits(split_seed: int, test_fraction: float):
  """Binarised 8x8 digits (pixel > 0.5): ``[N, 64]`` float32 in {0, 1}."""
  images, labels = data_lib.load_digits()
  x = (images.reshape(images.shape[0], 64) > 0.5).astype(np.float32)
  x_tr, _, x_te, _ = data_lib.train_test_split_arrays(int(split_seed), x,
                                                      labels, test_fraction)
  return np.asarray(x_tr, np.float32), np.asarray(x_te, np.float32)


def sbn_init(key, dim_x: int, dim_h: int, bias_x):
  k1, k2 = jax.random.split(key)
  return {"prior": jnp.zeros((dim_h,)),
          "dec_w": 0.1 * jax.random.normal(k1, (dim_h, dim_x)),
          "dec_b": jnp.asarray(bias_x),
          "enc_w": 0.1 * jax.random.normal(k2, (dim_x, dim_h)),
          "enc_b": jnp.zeros((dim_h,))}


def sbn_log_joint(theta, x_d, h_h):
  """``log p(x, h)`` for one example; ``h`` may be relaxed (in [0, 1])."""
  a = theta["prior"]
  lp_h = jnp.sum(h_h * jax.nn.log_sigmoid(a) + (1 - h_h) *
                 jax.nn.log_sigmoid(-a))
  logits = h_h @ theta["dec_w"] + theta["dec_b"]
  lp_x = jnp.sum(x_d * jax.nn.log_sigmoid(logits) + (1 - x_d) *
                 jax.nn.log_sigmoid(-logits))
  return lp_h + lp_x


def sbn_encoder_logits(theta, x_bxd):
  return x_bxd @ theta["enc_w"] + theta["enc_b"][None]


def sbn_elbo(theta, x_bxd, key, num_samples):
  """Per-example ELBO estimate ``[B]``: MC of log p(x, h) + analytic H[q]."""
  logits = sbn_encoder_logits(theta, x_bxd)
  keys = jax.random.split(key, x_bxd.shape[0])

  def one(x_d, l_h, k):
    h = Bernoulli.sample({"logits": l_h}, k, (num_samples,)).astype(
        jnp.float32)
    lp = jax.vmap(lambda hh: sbn_log_joint(theta, x_d, hh))(h)
    return jnp.mean(lp) + Bernoulli.entropy({"logits": l_h})

  return jax.vmap(one)(x_bxd, logits, keys)


def make_sbn_step(spec: EstimatorSpec, c):
  """``step((theta, opt, phi, phi_opt), batch, key) -> (state, loss)``."""
  opt = optax.adam(c.learning_rate)
  phi_opt = optax.adam(c.control_learning_rate)
  s = int(c.num_samples)

  def per_example_objective(theta, phi, x_d, key):
    logits = sbn_encoder_logits(theta, x_d[None])[0]
    frozen = jax.lax.stop_gradient(theta)
    f = lambda h: sbn_log_joint(frozen, x_d, h)
    est = spec.make(phi)
    enc = est.surrogate(f, Bernoulli)({"logits": logits}, key, s)
    h = rx.hard_sample(Bernoulli, {"logits": jax.lax.stop_gradient(logits)},
                       key, (s,))
    model = jnp.mean(jax.vmap(lambda hh: sbn_log_joint(theta, x_d, hh))(h))
    ent = Bernoulli.entropy({"logits": logits})
    return enc + (model - jax.lax.stop_gradient(model)) + ent

  def loss_fn(theta, phi, x_bxd, key):
    keys = jax.random.split(key, x_bxd.shape[0])
    per = jax.vmap(per_example_objective, in_axes=(None, None, 0, 0))(
        theta, phi, x_bxd, keys)
    return -jnp.mean(per)

  def control_loss(phi, theta, x_bxd, key):
    keys = jax.random.split(key, x_bxd.shape[0])

    def one(x_d, k):
      logits = sbn_encoder_logits(theta, x_d[None])[0]
      f = lambda h: sbn_log_joint(theta, x_d, h)
      return rx.variance_loss(spec.make, f, Bernoulli)(
          phi, {"logits": logits}, k, s)

    return jnp.mean(jax.vmap(one)(x_bxd, keys))

  def step(state, batch, key):
    theta, opt_state, phi, phi_state = state
    loss, g = jax.value_and_grad(loss_fn)(theta, phi, batch, key)
    updates, opt_state = opt.update(g, opt_state)
    theta_new = optax.apply_updates(theta, updates)
    if spec.init_phi is not None:
      g_phi = jax.grad(control_loss)(phi, jax.lax.stop_gradient(theta),
                                     batch, key)
      phi_up, phi_state = phi_opt.update(g_phi, phi_state)
      phi = optax.apply_updates(phi, phi_up)
    return (theta_new, opt_state, phi, phi_state), loss

  def init(key, x_train):
    mean = np.clip(x_train.mean(0), 1e-3, 1 - 1e-3)
    theta = sbn_init(key, x_train.shape[1], c.num_latents,
                     np.log(mean / (1 - mean)).astype(np.float32))
    phi = (spec.init_phi(jax.random.fold_in(key, 1),
                         jnp.zeros((c.num_latents,)))
           if spec.init_phi is not None else jnp.zeros(()))
    return (theta, opt.init(theta), phi, phi_opt.init(phi))

  return init, step


def run_sbn(config) -> tuple[list[dict], dict]:
  c = config.sbn
  x_tr, x_te = load_binary_digits(config.split_seed, config.test_fraction)
  x_tr_j, x_te_j = jnp.asarray(x_tr), jnp.asarray(x_te)
  n = x_tr.shape[0]
  batch = int(c.batch_size)
  rows, traces = {}, {}
  key = jax.random.key(config.seed)
  num_chunks = c.num_steps // c.eval_every
  for name in c.estimators:
    init, step = make_sbn_step(ESTIMATORS[name], c)

    def chunk(state, chunk_index):
      def body(state, j):
        k = jax.random.fold_in(key, chunk_index * c.eval_every + j)
        idx = jax.random.choice(jax.random.fold_in(k, 7), n, (batch,),
                                replace=False)
        return step(state, x_tr_j[idx], k)
      return jax.lax.scan(body, state, jnp.arange(c.eval_every))

    def evaluate(state, i):
      return jnp.mean(sbn_elbo(state[0], x_te_j,
                               jax.random.fold_in(key, 10**6 + i),
                               c.elbo_samples))

    state = init(key, x_tr)
    chunk_c = jax.jit(chunk).lower(state, 0).compile()
    eval_c = jax.jit(evaluate).lower(state, 0).compile()
    wall, elbos, losses = [0.0], [float(eval_c(state, 0))], []
    for i in range(num_chunks):
      t0 = time.time()
      state, loss = chunk_c(state, i)
      jax.block_until_ready(state)
      wall.append(wall[-1] + time.time() - t0)
      losses.append(np.asarray(loss))
      elbos.append(float(eval_c(state, i + 1)))
    traces[name] = {"step": np.arange(num_chunks + 1) * c.eval_every,
                    "wall_seconds": np.asarray(wall),
                    "test_elbo": np.asarray(elbos),
                    "train_loss": np.concatenate(losses)}
    rows[name] = {"estimator": name, "initial_test_elbo": elbos[0],
                  "final_test_elbo": elbos[-1],
                  "best_logged_test_elbo_not_for_selection": max(elbos),
                  "train_seconds": wall[-1],
                  "ms_per_step": 1000 * wall[-1] / c.num_steps}
    logging.info("sbn %s: test ELBO %.2f in %.1fs", name, elbos[-1], wall[-1])
  return list(rows.values()), traces


# ---------------------------------------------------------------------------


def run(config, workdir: str) -> dict[str, Any]:
  """Runs both parts; writes results.json, results.md, toy.png, sbn.png."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t0 = time.time()
  toy_rows, toy_traces = run_toy(config)
  sbn_rows, sbn_traces = run_sbn(config)
  load = open("/proc/loadavg").read().split()[:3] if os.path.exists(
      "/proc/loadavg") else []
  res = {"config": config.to_dict(), "toy": toy_rows, "sbn": sbn_rows,
         "toy_traces": toy_traces, "sbn_traces": sbn_traces,
         "loadavg_at_end": load, "seconds": time.time() - t0}
  table = ("# Discrete-variable gradient estimators\n\n"
           f"## Toy: minimise E[(b - t)^2], b ~ Bern(sigmoid(theta))\n\n"
           f"{config.toy.num_steps} Adam steps (lr {config.toy.learning_rate}),"
           f" {config.toy.num_samples} sample(s) per step, "
           f"{config.toy.num_seeds} seeds; optimum p = 0 (loss t^2). Bias and "
           f"variance of single estimates from {config.toy.variance_replicas}"
           f" keys every {config.toy.eval_every} steps; frac_bias_gt_4se: "
           "share of those checkpoints where |bias| > 4 SE.\n\n")
  table += results_lib.markdown_table(
      toy_rows, ["target", "estimator", "final_p", "final_p_min",
                 "final_p_max", "final_loss_minus_opt", "mean_log10_var",
                 "mean_abs_bias", "frac_bias_gt_4se"], precision=4)
  c = config.sbn
  table += (f"\n## Sigmoid belief network, binarised digits\n\n"
            f"H = {c.num_latents} latents, batch {c.batch_size}, "
            f"{c.num_steps} Adam steps (lr {c.learning_rate}), "
            f"{c.num_samples} samples per example; test ELBO (nats/image) "
            f"with {c.elbo_samples} samples. Wall time excludes compilation;"
            f" load average at end {' '.join(load)} (2 shared cores).\n\n")
  table += results_lib.markdown_table(
      sbn_rows, ["estimator", "initial_test_elbo", "final_test_elbo",
                 "train_seconds", "ms_per_step"], precision=3)
  results_lib.write_outputs(workdir, res, table)
  _plot(config, toy_traces, sbn_traces, workdir)
  res["table"] = table
  return res


def _plot(config, toy_traces, sbn_traces, workdir) -> None:
  plt = results_lib.pyplot()
  targets = list(config.toy.targets)
  fig, axes = plt.subplots(len(targets), 3, figsize=(15, 4 * len(targets)),
                           squeeze=False)
  for r, t in enumerate(targets):
    for name in config.toy.estimators:
      tr = toy_traces[f"{name}@{t}"]
      step = tr["step"][0]
      line, = axes[r, 0].plot(step, tr["p"].mean(0), label=name)
      axes[r, 1].plot(step, np.log10(tr["variance"]).mean(0),
                      color=line.get_color())
      axes[r, 2].plot(step, tr["bias"].mean(0), color=line.get_color())
    axes[r, 0].set_ylabel(f"t = {t}: p = sigmoid(theta)")
    axes[r, 1].set_ylabel("log10 variance of one estimate")
    axes[r, 2].set_ylabel("bias of one estimate (mean - exact)")
    axes[r, 2].axhline(0.0, color="k", lw=0.5)
    for ax in axes[r]:
      ax.set_xlabel("step")
      ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.15),
                    ncol=2)
  fig.suptitle("REBAR/RELAX toy: E[(b - t)^2], mean over seeds")
  fig.tight_layout()
  results_lib.save_figure(fig, os.path.join(workdir, "toy.png"))

  fig, axes = plt.subplots(1, 2, figsize=(12, 4))
  for name, tr in sbn_traces.items():
    axes[0].plot(tr["wall_seconds"], tr["test_elbo"], label=name)
    axes[1].plot(tr["step"], tr["test_elbo"], label=name)
  axes[0].set_xlabel("training wall time (s, compilation excluded)")
  axes[1].set_xlabel("step")
  for ax in axes:
    ax.set_ylabel("test ELBO (nats / image)")
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
  fig.suptitle("Sigmoid belief network on binarised 8x8 digits")
  fig.tight_layout()
  results_lib.save_figure(fig, os.path.join(workdir, "sbn.png"))


if __name__ == "__main__":
  launch.main("discrete_variance", run,
              report=lambda res, workdir: res["table"])
