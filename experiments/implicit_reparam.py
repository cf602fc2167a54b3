r"""Implicit reparameterisation vs score-function gradients (Gamma, Beta,
Dirichlet) and an LDA-style Dirichlet-latent model trained with each.

Part 1 (variance vs concentration). For ``alpha`` on a grid and the
expectations with closed-form gradients

* Gamma(alpha, 1), f = x^2:       d/dalpha E f = 2 alpha + 1;
* Beta(alpha, 2), f = x:          d/dalpha E f = 2 / (alpha + 2)^2;
* Dirichlet(alpha 1_3), f = x_1:  d/dalpha_1 E f = 2 / (9 alpha),

it draws ``num_keys`` single-sample estimates of ``d/dalpha`` (w.r.t. the
first concentration entry) with :data:`jaxbdl.gradients.estimators.pathwise` (the
implicit reparameterisation gradient of Figurnov et al. 2018: JAX's Gamma
sampler differentiates ``z`` by ``-(dF/dalpha) / q(z)``) and
:data:`jaxbdl.gradients.estimators.score_function`, and reports mean +- SE against the
exact gradient and the variances (table and log-log plot vs alpha).

Part 2 (Dirichlet-latent model). A corpus is generated: ``K`` topics
``beta_k ~ Dir(topic_concentration 1_V)``, per document ``theta_d ~ Dir(
prior_concentration 1_K)`` and ``words_per_doc`` words from
``Cat(theta_d^T beta)``. With the topics known, the topic proportions get
the mean-field posterior ``q(theta_d) = Dir(gamma_d)``, fitted by maximising

  ELBO = sum_d E_q[sum_v n_dv log(theta_d^T beta_v)] - KL(q(theta_d) || p),

the expectation by each estimator's surrogate (``pathwise``,
``score_function``, and ``score_function`` with the stateful moving-average
baseline, using the early-training decay), the KL in closed form, Adam on
``softplus^-1(gamma)``. Every ``eval_every`` steps the ELBO per document is
evaluated with ``eval_samples`` samples at a fixed key (the same for all
estimators). There is no test split: the quantity is the training ELBO, a
bound on log p(corpus), so nothing is selected on test data.

References:
  M. Figurnov, S. Mohamed, A. Mnih. Implicit Reparameterization Gradients.
  NeurIPS 2018 (Sec. 4, LDA experiment; Fig. 2, variance vs alpha).
  D. Blei, A. Ng, M. Jordan. Latent Dirichlet Allocation. JMLR 3, 2003.
"""
from __future__ import annotations

import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import launch
from jaxbdl.gradients import control_variates as cvs
from jaxbdl.gradients import distributions as dists
from jaxbdl.gradients import estimators as ests
from jaxbdl.evaluation import results as results_lib

__all__ = ["run", "variance_study", "make_corpus", "FAMILIES", "ESTIMATORS"]

# name: (dist, params(alpha), f, exact d/dalpha_1 E f, first-param name).
FAMILIES = {
    "Gamma": (dists.Gamma,
              lambda a: {"concentration": a, "rate": jnp.ones_like(a)},
              lambda x: jnp.square(x), lambda a: 2.0 * a + 1.0,
              "concentration"),
    "Beta": (dists.Beta,
             lambda a: {"concentration1": a,
                        "concentration0": 2.0 * jnp.ones_like(a)},
             lambda x: x, lambda a: 2.0 / (a + 2.0) ** 2, "concentration1"),
    "Dirichlet": (dists.Dirichlet,
                  lambda a: {"concentration": a * jnp.ones((3,), a.dtype)},
                  lambda x: x[0], lambda a: 2.0 / (9.0 * a), "concentration"),
}


def _first(g):
  """d/dalpha_1: the first entry of the first parameter's gradient."""
  return g.reshape(-1)[0]


def variance_study(config) -> list[dict[str, Any]]:
  """Part 1 rows: (family, alpha, estimator) -> mean, SE, variance, exact."""
  alphas = jnp.asarray(config.concentrations, jnp.float32)
  keys = jax.random.split(jax.random.key(config.seed), config.num_keys)
  rows = []
  xla = launch.compiler_options(config)
  for fam, (dist, make_params, f, exact, pname) in FAMILIES.items():

    @functools.partial(jax.jit, compiler_options=xla)
    def draws(alphas, keys, dist=dist, make_params=make_params, f=f,
              pname=pname):
      out = {}
      for est in (ests.pathwise, ests.score_function):
        one = lambda a, k, est=est: _first(
            est(f, dist)(make_params(a), k, 1)[pname])
        out[est.name] = jax.vmap(jax.vmap(one, in_axes=(None, 0)),
                                 in_axes=(0, None))(alphas, keys)
      return out

    out = jax.tree.map(lambda a: np.asarray(a, np.float64),
                       draws(alphas, keys))
    for i, a in enumerate(np.asarray(config.concentrations, np.float64)):
      g_exact = float(exact(a))
      for name, g in out.items():
        g = g[i]
        mean, var = float(g.mean()), float(g.var())
        se = (var / g.size) ** 0.5
        rows.append({
            "family": fam, "alpha": float(a), "estimator": name,
            "mean": mean, "se": se, "exact_grad": g_exact,
            "z": (mean - g_exact) / se if se > 0 else 0.0,
            "mean_ok": abs(mean - g_exact) <= config.bound_k * se,
            "variance": var})
  return rows


def make_corpus(config) -> dict[str, np.ndarray]:
  """Generated LDA corpus: counts [D, V], topics beta [K, V], theta [D, K]."""
  rng = np.random.default_rng(config.seed)
  k, v, d = config.num_topics, config.vocab_size, config.num_docs
  beta = rng.dirichlet(np.full(v, config.topic_concentration), size=k)
  theta = rng.dirichlet(np.full(k, config.prior_concentration), size=d)
  counts = np.stack([rng.multinomial(config.words_per_doc, t @ beta)
                     for t in theta]).astype(np.float32)
  return {"counts": counts, "beta": beta.astype(np.float32),
          "theta": theta.astype(np.float32)}


ESTIMATORS = {
    "pathwise": lambda c: ests.pathwise,
    "score_function": lambda c: ests.score_function,
    "score_function_ma": lambda c: cvs.with_control_variate(
        ests.score_function, cvs.moving_average_baseline(
            c.ma_decay, use_decay_early_training_heuristic=True)),
}


def _train(config, corpus, name):
  """Adam on u = softplus^-1(gamma); returns (steps, ELBO/doc, seconds)."""
  counts = jnp.asarray(corpus["counts"])
  log_beta = jnp.log(jnp.asarray(corpus["beta"]))  # [K, V]
  d, k = counts.shape[0], config.num_topics
  prior = {"concentration": jnp.full((d, k), config.prior_concentration)}

  def loglik(theta_dxk):
    # sum_dv n_dv log sum_k theta_dk beta_kv (log-sum-exp for stability).
    log_mix = jax.nn.logsumexp(jnp.log(theta_dxk)[:, :, None] +
                               log_beta[None], axis=1)  # [D, V]
    return jnp.sum(counts * log_mix)

  est = ESTIMATORS[name](config)
  stateful = isinstance(est, cvs.StatefulEstimator)
  surrogate = est.surrogate(loglik, dists.Dirichlet)
  to_params = lambda u: {"concentration": jax.nn.softplus(u) + 1e-3}

  def neg_elbo(u, key, state):
    p = to_params(u)
    kl = dists.Dirichlet.kl(p, prior)
    if stateful:
      value, state = surrogate(p, key, config.num_samples, state)
    else:
      value = surrogate(p, key, config.num_samples)
    return -(value - kl), state

  def eval_elbo(u):
    p = to_params(u)
    xs = dists.Dirichlet.sample(p, jax.random.key(config.seed + 1),
                                (config.eval_samples,))
    return (jnp.mean(jax.vmap(loglik)(xs)) - dists.Dirichlet.kl(p, prior)) / d

  opt = optax.adam(config.learning_rate)
  u0 = jnp.zeros((d, k))  # gamma = softplus(0) ~ 0.69 everywhere
  state0 = est.init(u0) if stateful else None
  loop_key = jax.random.key(config.seed + 2)

  def step(carry, i):
    u, opt_state, cv_state = carry
    grads, cv_state = jax.grad(neg_elbo, has_aux=True)(
        u, jax.random.fold_in(loop_key, i), cv_state)
    updates, opt_state = opt.update(grads, opt_state, u)
    return (optax.apply_updates(u, updates), opt_state, cv_state), None

  xla = launch.compiler_options(config)

  @functools.partial(jax.jit, compiler_options=xla)
  def chunk(carry, start):
    carry, _ = jax.lax.scan(step, carry, start + jnp.arange(config.eval_every))
    return carry, eval_elbo(carry[0])

  carry = (u0, opt.init(u0), state0)
  first = jax.jit(eval_elbo, compiler_options=xla)(u0)
  steps, elbos = [0], [float(first)]
  t0 = time.time()
  for start in range(0, config.num_steps, config.eval_every):
    carry, elbo = chunk(carry, start)
    steps.append(start + config.eval_every)
    elbos.append(float(elbo))
  return steps, elbos, time.time() - t0


def _validate(config) -> None:
  for name in config.estimators:
    if name not in ESTIMATORS:
      raise ValueError(f"config.estimators: unknown {name!r}; choose from "
                       f"{sorted(ESTIMATORS)}")
  if config.num_steps % config.eval_every:
    raise ValueError(f"config.num_steps ({config.num_steps}) must be a "
                     f"multiple of eval_every ({config.eval_every})")
  if min(config.concentrations) <= 0:
    raise ValueError(f"config.concentrations must be > 0, got "
                     f"{config.concentrations}")


def run(config, workdir: str) -> dict[str, Any]:
  """Runs both parts; writes results.json, results.md and two PNGs."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t0 = time.time()
  rows = variance_study(config)
  corpus = make_corpus(config)
  curves = {}
  for name in config.estimators:
    steps, elbos, secs = _train(config, corpus, name)
    curves[name] = {"steps": steps, "elbo_per_doc": elbos, "seconds": secs}
  res = {"config": config.to_dict(), "variance_rows": rows, "curves": curves,
         "num_mean_ok": sum(r["mean_ok"] for r in rows),
         "num_rows": len(rows), "seconds": time.time() - t0}
  ratio_rows = []
  for fam in FAMILIES:
    for a in config.concentrations:
      v = {r["estimator"]: r["variance"] for r in rows
           if r["family"] == fam and r["alpha"] == float(a)}
      ratio_rows.append({"family": fam, "alpha": float(a),
                         "var_pathwise": v["pathwise"],
                         "var_score": v["score_function"],
                         "score/pathwise": v["score_function"] /
                         v["pathwise"]})
  elbo_rows = [{"estimator": n, "elbo_per_doc_start": c["elbo_per_doc"][0],
                "elbo_per_doc_final": c["elbo_per_doc"][-1],
                "train_seconds": c["seconds"]} for n, c in curves.items()]
  table = (
      "# Implicit reparameterisation vs score function\n\n"
      f"Single-sample d/dalpha_1 estimates, {config.num_keys} keys each. "
      f"mean_ok: |mean - exact| <= {config.bound_k:g} SE "
      f"({res['num_mean_ok']}/{len(rows)} rows).\n\n"
      "## Variance vs concentration\n\n" +
      results_lib.markdown_table(ratio_rows, precision=4) +
      "\n## Means against the exact gradients\n\n" +
      results_lib.markdown_table(rows, ["family", "alpha", "estimator",
                                        "mean", "se", "exact_grad", "z",
                                        "mean_ok"], precision=4) +
      f"\n## LDA topic proportions ({config.num_docs} docs, "
      f"{config.num_topics} topics, {config.num_steps} Adam steps, "
      f"{config.num_samples} samples per estimate)\n\n"
      "Training ELBO per document (nats), evaluated with "
      f"{config.eval_samples} samples at a fixed key.\n\n" +
      results_lib.markdown_table(elbo_rows, precision=3))
  results_lib.write_outputs(workdir, res, table)
  _plot(rows, curves, config, workdir)
  return res


def _plot(rows, curves, config, workdir) -> None:
  plt = results_lib.pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
  for ax, fam in zip(axes, FAMILIES):
    for name, style in (("pathwise", "o-"), ("score_function", "s--")):
      sel = [r for r in rows if r["family"] == fam and r["estimator"] == name]
      ax.loglog([r["alpha"] for r in sel], [r["variance"] for r in sel],
                style, label="implicit reparam." if name == "pathwise"
                else "score function")
    ax.set_title(f"{fam}: d/d alpha_1 E f")
    ax.set_xlabel("concentration alpha (dimensionless)")
    ax.set_ylabel("single-sample gradient variance")
  axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
  results_lib.save_figure(fig, os.path.join(workdir, "variance_vs_alpha.png"))
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, c in curves.items():
    ax.plot(c["steps"], c["elbo_per_doc"], label=name)
  ax.set_xlabel("Adam step")
  ax.set_ylabel("training ELBO per document (nats)")
  ax.set_title("LDA topic proportions, q = Dirichlet")
  ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
  results_lib.save_figure(fig, os.path.join(workdir, "lda_elbo.png"))


if __name__ == "__main__":
  launch.main("implicit_reparam", run)
