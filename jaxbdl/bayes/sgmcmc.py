"""Stochastic-gradient MCMC: SGLD, SGHMC and cyclical SGLD (BlackJAX kernels).

All three simulate a diffusion whose stationary law is the tempered posterior

  log p~(W, phi) = sum_n log p(y_n | x_n, W, phi) / T + log p(W)

with the gradient of ``log p~`` estimated on a minibatch of ``B`` of ``N``
examples, ``(N / B) sum_b grad log p(y_b | ...) / T + grad log p(W)``
(examples drawn without replacement within a step, independently across
steps; step ``t`` uses ``fold_in(key, t)``). As in :mod:`jaxbdl.bayes.hmc`,
the likelihood's own parameters ``phi`` are sampled under a flat prior on their
unconstrained parameterisation, and the prior's parameters are fixed.

Step sizes are given per datum: ``hp["learning_rate"] = eta`` and the
sum-scale step is ``eps = eta / N`` (the SGLD step that matches SGD with
learning rate ``eta`` on the per-datum loss; Welling & Teh 2011, Eq. 4):

* ``sgld``: ``eps_t = (eta / N) (1 + t / decay_steps)^(-0.55)`` (their
  polynomial decay, ``gamma = 0.55``), BlackJAX ``sgld``.
* ``sghmc``: BlackJAX ``sghmc`` (Chen et al. 2014, Eq. 15, friction
  ``alpha``) with step ``sqrt(eta / N)`` (the position moves ``eps * p``, so
  ``eps^2`` plays the learning rate) and ``num_integration_steps`` leapfrog
  steps per minibatch; constant step.
* ``csgld`` (cyclical SGLD, Zhang et al. 2020, Eq. 1): ``num_cycles`` cosine
  cycles ``eps_k = eps_0 / 2 [cos(pi r_k) + 1]``, ``r_k`` the position in the
  cycle; the first ``exploration`` fraction of each cycle is SGD (no noise),
  the rest SGLD, and samples are kept only there. NOT BlackJAX's ``csgld``
  (that is contour SGLD, Deng et al. 2020): cyclical SGLD is BlackJAX's
  ``sgld`` kernel under this schedule, as in the BlackJAX sampling book.

Burn-in: the first ``burnin_fraction`` of the ``num_epochs * ceil(N / B)``
steps (``sgld``, ``sghmc``); then ``num_samples`` draws per chain, evenly
thinned over the rest. ``num_chains`` independent chains (network
initialisations and keys) run vmapped in one program; the predictive is the
equal-weight mixture over the ``num_chains * num_samples`` draws.

References:
  Welling & Teh (2011), "Bayesian learning via stochastic gradient Langevin
  dynamics", ICML, Eq. 4 and Sec. 5 (step-size decay).
  Chen, Fox & Guestrin (2014), "Stochastic gradient Hamiltonian Monte Carlo",
  ICML, Eq. 15.
  Zhang, Li, Zhang, Chen & Wilson (2020), "Cyclical stochastic gradient MCMC
  for Bayesian deep learning", ICLR, Eq. 1 and Alg. 1.
  Wenzel et al. (2020), "How good is the Bayes posterior in deep neural
  networks really?", ICML (cold posteriors, ``T < 1``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxbdl._checks import check_positive_int
from jaxbdl.bayes import hmc
from jaxbdl.bayes import posterior as post_lib

__all__ = ["Schedule", "polynomial_schedule", "constant_schedule",
           "cyclical_schedule", "minibatch_grad_fn", "run_chain",
           "make_sgld", "make_sghmc", "make_csgld", "DEFAULTS"]

PyTree = Any

DEFAULTS = dict(
    num_chains=4,
    num_samples=50,          # kept draws per chain
    burnin_fraction=0.5,     # sgld / sghmc
    decay_steps=1000,        # sgld polynomial decay
    friction=0.1,            # sghmc alpha
    num_integration_steps=1,  # sghmc leapfrog steps per minibatch
    num_cycles=4,            # csgld
    exploration=0.5,         # csgld: SGD fraction of each cycle
)


class Schedule(NamedTuple):
  """How each step moves and where draws are kept (static plan).

  Attributes:
    num_steps: total steps ``T``.
    step_size: ``t -> eps_t`` (traceable in ``t``, float).
    noise: ``t -> 1.0`` (Langevin step) or ``0.0`` (SGD step).
    burnin: steps before the first kept draw (of the run; of each cycle when
      ``cycle > 0``).
    thin: steps between kept draws.
    cycle: cycle length in steps (0: no cycles).
  """
  num_steps: int
  step_size: Callable[[jax.Array], jax.Array]
  noise: Callable[[jax.Array], jax.Array]
  burnin: int
  thin: int
  cycle: int


def _thinning(num_steps: int, burnin: int, num_samples: int) -> int:
  thin = (num_steps - burnin) // num_samples
  if thin < 1:
    raise ValueError(f"{num_steps - burnin} post-burn-in steps cannot give "
                     f"num_samples={num_samples} draws; raise num_epochs or "
                     f"lower num_samples")
  return thin


def polynomial_schedule(num_steps: int, eps0, decay_steps: int,
                        burnin_fraction: float, num_samples: int,
                        gamma: float = 0.55) -> Schedule:
  """SGLD: ``eps_t = eps0 (1 + t / decay_steps)^-gamma``, noise on."""
  burnin = int(burnin_fraction * num_steps)
  return Schedule(
      num_steps,
      lambda t: eps0 * (1.0 + t / decay_steps) ** (-gamma),
      lambda t: jnp.ones_like(t, jnp.float32),
      burnin, _thinning(num_steps, burnin, num_samples), 0)


def constant_schedule(num_steps: int, eps0, burnin_fraction: float,
                      num_samples: int) -> Schedule:
  """Constant step, noise on (SGHMC)."""
  burnin = int(burnin_fraction * num_steps)
  return Schedule(num_steps, lambda t: eps0 * jnp.ones_like(t, jnp.float32),
                  lambda t: jnp.ones_like(t, jnp.float32), burnin,
                  _thinning(num_steps, burnin, num_samples), 0)


def cyclical_schedule(num_steps: int, eps0, num_cycles: int,
                      exploration: float, num_samples: int) -> Schedule:
  """Zhang et al. (2020) Eq. 1: cosine cycles; SGD for the first
  ``exploration`` of each cycle, SGLD after; ``num_samples`` (a multiple of
  ``num_cycles``) draws spread over the sampling stages."""
  check_positive_int("num_cycles", num_cycles)
  if num_samples % num_cycles:
    raise ValueError(f"num_samples={num_samples} must be a multiple of "
                     f"num_cycles={num_cycles}")
  if not 0.0 <= exploration < 1.0:
    raise ValueError(f"exploration must be in [0, 1), got {exploration}")
  cycle = num_steps // num_cycles
  per_cycle = num_samples // num_cycles
  sampling = cycle - int(math.ceil(exploration * cycle))
  thin = sampling // per_cycle
  if thin < 1:
    raise ValueError(f"cycles of {cycle} steps ({sampling} sampling) cannot "
                     f"give {per_cycle} draws each; raise num_epochs")

  def r(t):
    return jnp.mod(t, cycle).astype(jnp.float32) / cycle

  return Schedule(
      cycle * num_cycles,
      lambda t: 0.5 * eps0 * (jnp.cos(jnp.pi * r(t)) + 1.0),
      lambda t: (r(t) >= exploration).astype(jnp.float32),
      cycle - per_cycle * thin, thin, cycle)


def minibatch_grad_fn(model, hp: dict, data: dict, theta: PyTree,
                      batch_size: int) -> Callable:
  """``grad(position, idx [B]) -> tree``: gradient of the minibatch estimate
  of ``log p~`` at ``position = {"params", "likelihood"}``."""
  lik, prior = model.likelihood(hp), model.prior(hp)
  n = data["y"].shape[0]
  temperature = hp.get("temperature", 1.0)

  def log_density(position, idx):
    x, y = data["x"][idx], data["y"][idx]
    out = model.module.apply({"params": position["params"]}, x)
    ll = jnp.sum(lik.log_prob(position["likelihood"], y, out))
    return ((n / batch_size) * ll / temperature
            + prior.log_prob(theta, position["params"]))

  return jax.grad(log_density)


def run_chain(key: jax.Array, kernel_step: Callable, position: PyTree,
              schedule: Schedule, num_data: int, batch_size: int,
              num_samples: int) -> PyTree:
  """One chain: burn-in (or cycles), kept draws ``[num_samples, ...]``.

  ``kernel_step(key, position, idx, step_size, noise) -> position``.
  """

  def steps(pos, start, length):
    def body(p, t):
      k = jax.random.fold_in(key, t)
      kb, ks = jax.random.split(k)
      idx = jax.random.choice(kb, num_data, (batch_size,), replace=False)
      tf = t.astype(jnp.float32)
      return kernel_step(ks, p, idx, schedule.step_size(tf),
                         schedule.noise(tf)), None
    pos, _ = jax.lax.scan(body, pos, start + jnp.arange(length))
    return pos

  def keep_draws(pos, start, count):
    def body(p, i):
      p = steps(p, start + i * schedule.thin, schedule.thin)
      return p, p
    return jax.lax.scan(body, pos, jnp.arange(count))

  if not schedule.cycle:
    pos = steps(position, 0, schedule.burnin)
    _, draws = keep_draws(pos, schedule.burnin, num_samples)
    return draws
  num_cycles = schedule.num_steps // schedule.cycle
  per_cycle = num_samples // num_cycles

  def cycle(p, c):
    start = c * schedule.cycle
    p = steps(p, start, schedule.burnin)
    return keep_draws(p, start + schedule.burnin, per_cycle)

  _, draws = jax.lax.scan(cycle, position, jnp.arange(num_cycles))
  return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), draws)


def _make(name: str, model: post_lib.Model, config,
          build: Callable) -> post_lib.Posterior:
  """``build(grad_fn, num_steps, n, hp, cfg) -> (kernel_step, schedule)``."""
  cfg = {k: config.get(k, v) for k, v in DEFAULTS.items()}
  num_chains = check_positive_int("num_chains", int(cfg["num_chains"]))
  num_samples = check_positive_int("num_samples", int(cfg["num_samples"]))
  chunk = config.get("predict_batch_size", None)

  def fit(key, data, hp, valid=None):
    del valid
    n, _ = post_lib.check_data(data)
    b = min(int(config.batch_size), n)
    num_steps = int(config.num_epochs) * (-(-n // b))
    init_key, run_key = jax.random.split(key)
    positions = hmc.init_positions(init_key, model, hp, data["x"], num_chains)
    theta = model.prior(hp).init(jax.tree.map(lambda a: a[0],
                                              positions["params"]))
    grad_fn = minibatch_grad_fn(model, hp, data, theta, b)
    kernel_step, schedule = build(grad_fn, num_steps, n, hp, cfg)
    draws = jax.vmap(lambda k, p: run_chain(
        k, kernel_step, p, schedule, n, b, num_samples))(
            jax.random.split(run_key, num_chains), positions)
    history = {"step_size_first": schedule.step_size(jnp.float32(0.0)),
               "num_steps": jnp.int32(schedule.num_steps)}
    if num_chains >= 2 and num_samples >= 4:
      flat = jax.vmap(jax.vmap(lambda t: ravel_pytree(t)[0]))(
          draws)
      history.update(hmc.convergence(flat))
    samples = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), draws)
    return {"samples": samples}, history

  def predict(state, x, key, hp):
    del key
    return hmc.predict_from_samples(model, state["samples"], x, hp, chunk)

  return post_lib.Posterior(name, fit, predict, 0.0)


def _sgld_step(grad_fn):
  kernel = blackjax.sgld(grad_fn)
  return lambda k, p, idx, eps, noise: kernel.step(k, p, idx, eps, noise)


def make_sgld(model: post_lib.Model, config) -> post_lib.Posterior:
  """SGLD with polynomial step decay (method ``"sgld"``).

  Config: ``num_epochs``, ``batch_size``, ``num_chains``, ``num_samples``,
  ``burnin_fraction``, ``decay_steps``, ``predict_batch_size``.
  """
  def build(grad_fn, num_steps, n, hp, cfg):
    return _sgld_step(grad_fn), polynomial_schedule(
        num_steps, hp["learning_rate"] / n, int(cfg["decay_steps"]),
        float(cfg["burnin_fraction"]), int(cfg["num_samples"]))
  return _make("sgld", model, config, build)


def make_sghmc(model: post_lib.Model, config) -> post_lib.Posterior:
  """SGHMC with constant step (method ``"sghmc"``); config as
  :func:`make_sgld` plus ``friction``, ``num_integration_steps``."""
  def build(grad_fn, num_steps, n, hp, cfg):
    kernel = blackjax.sghmc(grad_fn, int(cfg["num_integration_steps"]),
                            alpha=float(cfg["friction"]))
    step = lambda k, p, idx, eps, noise: kernel.step(k, p, idx, eps, noise)
    return step, constant_schedule(
        num_steps, jnp.sqrt(hp["learning_rate"] / n),
        float(cfg["burnin_fraction"]), int(cfg["num_samples"]))
  return _make("sghmc", model, config, build)


def make_csgld(model: post_lib.Model, config) -> post_lib.Posterior:
  """Cyclical SGLD (method ``"csgld"``); config as :func:`make_sgld` with
  ``num_cycles`` and ``exploration`` instead of burn-in and decay."""
  def build(grad_fn, num_steps, n, hp, cfg):
    return _sgld_step(grad_fn), cyclical_schedule(
        num_steps, hp["learning_rate"] / n, int(cfg["num_cycles"]),
        float(cfg["exploration"]), int(cfg["num_samples"]))
  return _make("csgld", model, config, build)
