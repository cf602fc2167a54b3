"""Hamiltonian Monte Carlo (NUTS) over a Flax network's parameters.

The target is the tempered posterior over the flattened parameters ``w [D]``
(``jax.flatten_util.ravel_pytree`` of ``{"params": W, "likelihood": phi}``)::

  log p~(w) = sum_n log p(y_n | x_n, W, phi) / T + log p(W)

with the full data set (no minibatches), the prior's own parameters fixed at
``prior.init(W)`` and the temperature ``T = hp["temperature"]`` (default 1).
Likelihood parameters ``phi`` (``likelihood.init()``, e.g. a learned noise
log-scale) are SAMPLED jointly under a flat prior on their unconstrained
parameterisation; a likelihood built with a fixed ``noise_scale`` has no
parameters, so the noise is then fixed (the default of the core's regression
models, ``hp["noise_scale"]``).

The sampler is BlackJAX's NUTS (Hoffman & Gelman 2014) after Stan's window
adaptation of the step size and a diagonal inverse mass matrix; ``C`` chains
run in one program (``jax.vmap``), each with its own adaptation. Draws are
thinned (every ``thin``-th transition kept) and diagnosed with BlackJAX's
split rank-normalised R-hat and effective sample size.

The predictive is the equal-weight mixture over the kept draws
(``S = C * num_samples``), evaluated in chunks of ``predict_batch_size``
inputs.

References:
  Hoffman & Gelman (2014), "The No-U-Turn Sampler", JMLR 15, Alg. 3 (NUTS),
  Alg. 6 (dual averaging of the step size).
  Stan Reference Manual, "HMC algorithm parameters": windowed adaptation.
  Vehtari et al. (2021), "Rank-normalization, folding, and localization: an
  improved R-hat", Bayesian Analysis 16(2), Eq. 4-5 (split R-hat), Sec. 3.2
  (ESS).
  Izmailov et al. (2021), "What are Bayesian neural network posteriors really
  like?", ICML: full-batch HMC as the reference posterior, Eq. 1 (tempering).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxbdl.training import progress
from jaxbdl.bayes import posterior as post_lib

__all__ = [
    "Chains",
    "run_nuts",
    "convergence",
    "check_num_draws",
    "check_divergences",
    "check_initial_log_density",
    "log_density_fn",
    "init_positions",
    "predict_from_samples",
    "make",
    "DEFAULTS",
]

PyTree = Any

# Method fields read from the config (defaults for registry.default_config()).
DEFAULTS = dict(
    num_chains=4,
    num_warmup=500,
    num_samples=200,        # kept draws per chain (after thinning)
    thin=1,
    target_acceptance=0.8,
    max_num_doublings=8,
    max_divergence_fraction=0.01,
)


class Chains(NamedTuple):
  """Output of :func:`run_nuts` for ``C`` chains.

  Attributes:
    positions: ``[C, S, D]`` kept draws (every ``thin``-th transition).
    num_divergent: ``[C]`` divergent transitions during sampling (all
      transitions, not only kept ones).
    acceptance_rate: ``[C]`` mean acceptance statistic during sampling.
    num_integration_steps: ``[C]`` mean leapfrog steps per transition.
    step_size: ``[C]`` adapted step size.
  """
  positions: jax.Array
  num_divergent: jax.Array
  acceptance_rate: jax.Array
  num_integration_steps: jax.Array
  step_size: jax.Array


def _one_chain(key, logdensity_fn, position, num_warmup, num_samples, thin,
               target_acceptance, max_num_doublings):
  warm_key, sample_key = jax.random.split(key)
  warmup = blackjax.window_adaptation(
      blackjax.nuts, logdensity_fn, is_mass_matrix_diagonal=True,
      target_acceptance_rate=target_acceptance,
      adaptation_info_fn=blackjax.adaptation.base.get_filter_adapt_info_fn(),
      max_num_doublings=max_num_doublings)
  (state, params), _ = warmup.run(warm_key, position, num_steps=num_warmup)
  kernel = blackjax.nuts(logdensity_fn, **params)

  def transition(carry, k):
    state, stats = carry
    state, info = kernel.step(k, state)
    stats = (stats[0] + info.is_divergent.astype(jnp.int32),
             stats[1] + info.acceptance_rate,
             stats[2] + info.num_integration_steps.astype(jnp.float32))
    return (state, stats), None

  # Progress of the sampling phase (after warm-up) from inside the scan,
  # off under pytest and when stderr is not a TTY (jaxbdl.training.progress);
  # under vmap over chains the line shows the mean log density of the chains.
  report = progress.scan_callback("NUTS sampling", num_samples, unit="draw",
                                  value="log density")

  def keep(carry, inputs):
    i, k = inputs
    carry, _ = jax.lax.scan(transition, carry, jax.random.split(k, thin))
    if report is not None:
      report(i, carry[0].logdensity)
    return carry, carry[0].position

  zero = (jnp.zeros((), jnp.int32), jnp.zeros(()), jnp.zeros(()))
  (_, stats), draws = jax.lax.scan(
      keep, (state, zero),
      (jnp.arange(num_samples), jax.random.split(sample_key, num_samples)))
  n = num_samples * thin
  return Chains(draws, stats[0], stats[1] / n, stats[2] / n,
                params["step_size"])


def run_nuts(key: jax.Array, logdensity_fn: Callable[[jax.Array], jax.Array],
             positions: jax.Array, *, num_warmup: int, num_samples: int,
             thin: int = 1, target_acceptance: float = 0.8,
             max_num_doublings: int = 8) -> Chains:
  """Window-adapted NUTS, ``C`` chains vmapped in one program.

  Args:
    key: PRNG key (chain ``c`` uses ``split(key, C)[c]``).
    logdensity_fn: ``w [D] -> scalar`` unnormalised log density.
    positions: ``[C, D]`` initial positions.
    num_warmup: adaptation transitions per chain (static).
    num_samples: kept draws per chain (static).
    thin: keep every ``thin``-th transition (static).
    target_acceptance: dual-averaging target.
    max_num_doublings: NUTS tree depth limit (static).

  Returns:
    :class:`Chains` with ``positions [C, num_samples, D]``.
  """
  positions = jnp.asarray(positions)
  if positions.ndim != 2:
    raise ValueError(f"positions must be [C, D], got shape {positions.shape}")
  for name, v in (("num_warmup", num_warmup), ("num_samples", num_samples),
                  ("thin", thin)):
    if int(v) < 1:
      raise ValueError(f"{name} must be >= 1, got {v}")
  keys = jax.random.split(key, positions.shape[0])
  return jax.vmap(lambda k, p: _one_chain(
      k, logdensity_fn, p, num_warmup, num_samples, thin, target_acceptance,
      max_num_doublings))(keys, positions)


def check_num_draws(num_chains: int, num_samples: int) -> None:
  """Raises ValueError unless there are >= 2 chains of >= 4 kept draws.

  Split R-hat halves each chain and needs two halves of >= 2 draws each, and
  between-chain variance needs >= 2 chains (Vehtari et al. 2021, Sec. 4).
  """
  if num_chains < 2:
    raise ValueError(f"R-hat needs num_chains >= 2, got {num_chains}")
  if num_samples < 4:
    raise ValueError(f"R-hat needs num_samples >= 4 kept draws per chain "
                     f"(after thinning), got {num_samples}")


def convergence(positions: jax.Array) -> dict:
  """Split rank-normalised R-hat and ESS per coordinate.

  Args:
    positions: ``[C, S, ...]`` draws (chains, samples, any coordinates).

  Returns:
    ``{"rhat": [...], "ess": [...]}`` (BlackJAX ``rhat`` and
    ``effective_sample_size``; ESS summed over chains).
  """
  positions = jnp.asarray(positions)
  if positions.ndim < 2:
    raise ValueError(f"positions must be [C, S, ...], got {positions.shape}")
  check_num_draws(positions.shape[0], positions.shape[1])
  # BlackJAX broadcasts implicitly; allow it locally (tests set "raise").
  with jax.numpy_rank_promotion("allow"):
    return _diagnostics(positions)


@jax.jit
def _diagnostics(positions):
  return {"rhat": blackjax.diagnostics.rhat(positions),
          "ess": blackjax.diagnostics.effective_sample_size(positions)}


def check_divergences(num_divergent, num_transitions: int,
                      max_fraction: float) -> int:
  """Warns (naming the count) when divergences exceed ``max_fraction``.

  Call outside jit. Returns the total number of divergent transitions.
  """
  total = int(np.sum(np.asarray(num_divergent)))
  if total > max_fraction * num_transitions:
    warnings.warn(
        f"NUTS: {total} divergent transitions out of {num_transitions} "
        f"(> {max_fraction:.2%}); the posterior is not reliably explored "
        f"(raise target_acceptance or reparameterise)", RuntimeWarning,
        stacklevel=2)
  return total


def log_density_fn(model, hp: dict, data: dict, theta: PyTree
                   ) -> Callable[[PyTree], jax.Array]:
  """``tree -> log p(y | x, W, phi) / T + log p(W)`` (full batch).

  ``tree = {"params": W, "likelihood": phi}``; ``theta`` the prior's params.
  """
  lik = model.likelihood(hp)
  prior = model.prior(hp)
  temperature = hp.get("temperature", 1.0)

  def fn(tree):
    out = model.module.apply({"params": tree["params"]}, data["x"])
    ll = jnp.sum(lik.log_prob(tree["likelihood"], data["y"], out))
    return ll / temperature + prior.log_prob(theta, tree["params"])

  return fn


def init_positions(key: jax.Array, model, hp: dict, x: jax.Array,
                   num: int) -> PyTree:
  """``num`` network initialisations ``{"params", "likelihood"}`` stacked."""
  lik = model.likelihood(hp)

  def one(k):
    params = model.module.init(k, jnp.zeros((1,) + x.shape[1:], x.dtype))[
        "params"]
    return {"params": params, "likelihood": lik.init()}

  return jax.jit(jax.vmap(one))(jax.random.split(key, num))


def check_initial_log_density(logdensity_fn: Callable[[PyTree], jax.Array],
                              tree: PyTree) -> None:
  """Raises ValueError naming the parameter leaf when ``log p~`` is not finite.

  Call outside jit on ONE position tree. The leaf is the first one whose value
  or whose gradient of the log density is NaN/inf.
  """
  def finite(t):  # one compiled program, not an op-by-op evaluation
    value, grad = jax.value_and_grad(logdensity_fn)(t)
    ok = lambda a: jnp.all(jnp.isfinite(a))
    return value, jax.tree.map(ok, t), jax.tree.map(ok, grad)

  value, leaf_ok, grad_ok = jax.device_get(jax.jit(finite)(tree))
  if np.isfinite(value) and all(jax.tree.leaves(grad_ok)):
    return
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for (path, _), lok, gok in zip(leaves, jax.tree.leaves(leaf_ok),
                                 jax.tree.leaves(grad_ok)):
    name = jax.tree_util.keystr(path)
    if not lok:
      raise ValueError(f"initial log density is {float(value)}: parameter "
                       f"leaf {name} has non-finite values")
    if not gok:
      raise ValueError(f"initial log density is {float(value)}: its gradient "
                       f"is non-finite at parameter leaf {name}")
  raise ValueError(f"initial log density is {float(value)} (every parameter "
                   f"leaf is finite; check the data and the prior scale)")


def predict_from_samples(model, samples: PyTree, x: jax.Array, hp: dict,
                         chunk: int | None = 512) -> dict:
  """The likelihood's predictive at every draw, chunked over inputs.

  Args:
    model: the core's ``Model``.
    samples: ``{"params": W, "likelihood": phi}`` with a leading ``[S]`` axis.
    x: ``[M, ...]`` inputs.
    hp: hyper-parameters (the likelihood is ``model.likelihood(hp)``).
    chunk: inputs per chunk.

  Returns:
    ``{"mean", "variance": [S, M]}`` or ``{"probs": [S, M, C]}``.
  """
  lik = model.likelihood(hp)

  def on_chunk(xc):
    def one(s):
      out = model.module.apply({"params": s["params"]}, xc)
      return lik.predictive(s["likelihood"], out)
    return jax.vmap(one)(samples)

  return post_lib.chunked(on_chunk, x, chunk)


def make(model: post_lib.Model, config) -> post_lib.Posterior:
  """NUTS as a core ``Posterior`` (method ``"hmc"``).

  Config fields (defaults in :data:`DEFAULTS`): ``num_chains``,
  ``num_warmup``, ``num_samples`` (kept per chain), ``thin``,
  ``target_acceptance``, ``max_num_doublings``, ``predict_batch_size``.
  ``fit`` returns ``state = {"samples": tree [C * num_samples, ...]}`` and
  ``history = {"rhat": [D], "ess": [D], "num_divergent": [C],
  "acceptance_rate": [C], "step_size": [C]}``. Call
  :func:`check_divergences` on the history outside jit.
  """
  cfg = {k: config.get(k, v) for k, v in DEFAULTS.items()}
  check_num_draws(int(cfg["num_chains"]), int(cfg["num_samples"]))
  chunk = config.get("predict_batch_size", None)

  def fit(key, data, hp, valid=None):
    del valid
    init_key, run_key = jax.random.split(key)
    trees = init_positions(init_key, model, hp, data["x"],
                           int(cfg["num_chains"]))
    one = jax.tree.map(lambda a: a[0], trees)
    _, unravel = ravel_pytree(one)
    theta = model.prior(hp).init(one["params"])
    logp = log_density_fn(model, hp, data, theta)
    flat = jax.vmap(lambda t: ravel_pytree(t)[0])(trees)
    chains = run_nuts(
        run_key, lambda w: logp(unravel(w)), flat,
        num_warmup=int(cfg["num_warmup"]),
        num_samples=int(cfg["num_samples"]), thin=int(cfg["thin"]),
        target_acceptance=cfg["target_acceptance"],
        max_num_doublings=int(cfg["max_num_doublings"]))
    diag = convergence(chains.positions)
    draws = chains.positions.reshape((-1, chains.positions.shape[-1]))
    state = {"samples": jax.vmap(unravel)(draws)}
    history = dict(diag, num_divergent=chains.num_divergent,
                   acceptance_rate=chains.acceptance_rate,
                   num_integration_steps=chains.num_integration_steps,
                   step_size=chains.step_size)
    return state, history

  def predict(state, x, key, hp):
    del key
    return predict_from_samples(model, state["samples"], x, hp, chunk)

  return post_lib.Posterior("hmc", fit, predict, 0.0)
