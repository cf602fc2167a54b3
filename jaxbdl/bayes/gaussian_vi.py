"""Correlated Gaussian variational families over the flattened parameters.

``q(w) = N(w; mu, Sigma)`` over ``w [D]`` (``ravel_pytree`` of the network's
parameter tree), with two covariance structures:

* full rank: ``Sigma = L L^T``, ``L [D, D]`` lower triangular with a positive
  diagonal (``exp`` of the raw diagonal). ``O(D^2)`` parameters; exact for a
  Gaussian posterior (e.g. Bayesian linear regression).
* low rank plus diagonal: ``Sigma = diag(d^2) + U U^T``, ``d [D]``,
  ``U [D, R]``. ``O(D R)`` parameters; ``log|Sigma|`` and ``Sigma^{-1}`` via
  the matrix determinant lemma and Woodbury with the ``R x R`` capacitance
  ``C = I + U^T diag(d^-2) U``. ``R = 0`` is the mean-field family.

A family is a NamedTuple of pure functions (``init``, ``sample``, ``log_q``,
``entropy``, ``kl_to_gaussian``, ``mean``, ``covariance``,
``marginal_variance``) made by :func:`fullrank` or :func:`lowrank`.

``make_fullrank`` / ``make_lowrank`` turn a family into a core ``Posterior``
trained by the negative ELBO with the reparameterisation gradient::

  -ELBO = -(N/B) sum_b E_q[log p(y_b | x_b, w)] / T + KL(q || p)

(``KL`` in closed form for a Gaussian prior, ``prior.precision``; otherwise
the Monte Carlo ``E_q[log q(w) - log p(w)]``). Likelihood parameters (e.g. a
learned noise scale) are point estimates trained jointly, as in MAP.

References:
  Titsias & Lazaro-Gredilla (2014), "Doubly stochastic variational Bayes for
  non-conjugate inference", ICML: the reparameterised full-rank Gaussian
  (Cholesky factor), Alg. 1.
  Rezende, Mohamed & Wierstra (2014), "Stochastic backpropagation", ICML,
  Sec. 3 (Gaussian with a low-rank-plus-diagonal covariance).
  Ong, Nott & Smith (2018), "Gaussian variational approximation with a factor
  covariance structure", JCGS 27(3), Eq. 2 (``Sigma = B B^T + D^2``).
  Bishop (2006), PRML, Eq. 10.12-10.13: the mean-field optimum for a Gaussian
  target has precision ``diag(Lambda)`` (underestimates the variance).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxbdl.bayes import hmc
from jaxbdl.bayes import posterior as post_lib

__all__ = [
    "GaussianFamily",
    "fullrank",
    "lowrank",
    "negative_elbo",
    "make_fullrank",
    "make_lowrank",
    "DEFAULTS",
]

PyTree = Any
_LOG_2PI = math.log(2.0 * math.pi)

DEFAULTS = dict(
    num_train_samples=8,   # Monte Carlo samples of w per ELBO step
    init_scale=1e-2,       # initial posterior standard deviation
    rank=5,                # lowrank_vi: columns of U
)


class GaussianFamily(NamedTuple):
  """A Gaussian family over ``w [D]``; ``params`` is its pytree.

  Attributes:
    name: ``"fullrank"`` or ``"lowrank<R>"``.
    init: ``(key, loc [D], init_scale) -> params`` (``Sigma ~ init_scale^2 I``).
    sample: ``(params, key, num) -> [num, D]`` (reparameterised).
    log_q: ``(params, w [..., D]) -> [...]``.
    entropy: ``params -> scalar``.
    kl_to_gaussian: ``(params, prior_loc [D], prior_precision [D]) -> scalar``
      ``KL(q || N(prior_loc, diag(1 / prior_precision)))``.
    mean: ``params -> [D]``.
    covariance: ``params -> [D, D]`` (dense; for tests and small D).
    marginal_variance: ``params -> [D]``.
  """
  name: str
  init: Callable
  sample: Callable
  log_q: Callable
  entropy: Callable
  kl_to_gaussian: Callable
  mean: Callable
  covariance: Callable
  marginal_variance: Callable


def _kl(mu, trace_p_sigma, logdet_sigma, prior_loc, prior_precision):
  """``KL(N(mu, Sigma) || N(m0, P^-1))`` from ``tr(P Sigma)``, ``log|Sigma|``."""
  diff = mu - prior_loc
  return 0.5 * (trace_p_sigma + jnp.sum(prior_precision * diff * diff)
                - mu.shape[-1] - jnp.sum(jnp.log(prior_precision))
                - logdet_sigma)


def fullrank() -> GaussianFamily:
  """Full-covariance Gaussian, ``params = {"loc": [D], "tril": [D, D]}``."""

  def chol(p):
    raw = p["tril"]
    return jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))

  def init(key, loc, init_scale):
    del key
    d = loc.shape[0]
    return {"loc": loc,
            "tril": jnp.diag(jnp.full((d,), math.log(init_scale)))}

  def sample(p, key, num):
    eps = jax.random.normal(key, (num,) + p["loc"].shape, p["loc"].dtype)
    return p["loc"][None] + eps @ chol(p).T

  def logdet(p):
    return 2.0 * jnp.sum(jnp.diag(p["tril"]))

  def log_q(p, w):
    z = jax.scipy.linalg.solve_triangular(
        chol(p), (w - jnp.broadcast_to(p["loc"], w.shape)).reshape(
            (-1, w.shape[-1])).T, lower=True)
    maha = jnp.sum(z * z, axis=0).reshape(w.shape[:-1])
    return -0.5 * (maha + w.shape[-1] * _LOG_2PI + logdet(p))

  def entropy(p):
    return 0.5 * p["loc"].shape[0] * (1.0 + _LOG_2PI) + 0.5 * logdet(p)

  def kl(p, prior_loc, prior_precision):
    l = chol(p)
    trace = jnp.sum(prior_precision[:, None] * l * l)
    return _kl(p["loc"], trace, logdet(p), prior_loc, prior_precision)

  def covariance(p):
    l = chol(p)
    return l @ l.T

  def marginal_variance(p):
    l = chol(p)
    return jnp.sum(l * l, axis=1)

  return GaussianFamily("fullrank", init, sample, log_q, entropy, kl,
                        lambda p: p["loc"], covariance, marginal_variance)


def lowrank(rank: int) -> GaussianFamily:
  """``Sigma = diag(d^2) + U U^T``, ``params = {"loc", "log_diag": [D],
  "factor": [D, rank]}``; ``rank = 0`` is mean field."""
  if int(rank) < 0:
    raise ValueError(f"rank must be >= 0, got {rank}")
  rank = int(rank)

  def init(key, loc, init_scale):
    d = loc.shape[0]
    # U ~ small random (U = 0 is a stationary point of the ELBO in U).
    factor = 0.1 * init_scale * jax.random.normal(key, (d, rank), loc.dtype)
    return {"loc": loc, "log_diag": jnp.full((d,), math.log(init_scale)),
            "factor": factor}

  def sample(p, key, num):
    k1, k2 = jax.random.split(key)
    d = p["loc"].shape[0]
    e1 = jax.random.normal(k1, (num, d), p["loc"].dtype)
    e2 = jax.random.normal(k2, (num, rank), p["loc"].dtype)
    return (p["loc"][None] + e1 * jnp.exp(p["log_diag"])[None]
            + e2 @ p["factor"].T)

  def capacitance(p):
    u_scaled = p["factor"] * jnp.exp(-2.0 * p["log_diag"])[:, None]  # D^-2 U
    return jnp.eye(rank) + p["factor"].T @ u_scaled, u_scaled

  def logdet(p):
    c, _ = capacitance(p)
    return 2.0 * jnp.sum(p["log_diag"]) + jnp.linalg.slogdet(c)[1]

  def log_q(p, w):
    r = w - jnp.broadcast_to(p["loc"], w.shape)            # [..., D]
    c, u_scaled = capacitance(p)
    t = r @ u_scaled                                       # [..., R]
    inv_d2 = jnp.broadcast_to(jnp.exp(-2.0 * p["log_diag"]), w.shape)
    maha = jnp.sum(r * r * inv_d2, axis=-1)
    if rank:
      ct = jnp.linalg.solve(c, t.reshape((-1, rank)).T).T.reshape(t.shape)
      maha = maha - jnp.sum(t * ct, axis=-1)
    return -0.5 * (maha + w.shape[-1] * _LOG_2PI + logdet(p))

  def entropy(p):
    return 0.5 * p["loc"].shape[0] * (1.0 + _LOG_2PI) + 0.5 * logdet(p)

  def marginal_variance(p):
    return jnp.exp(2.0 * p["log_diag"]) + jnp.sum(p["factor"] ** 2, axis=1)

  def kl(p, prior_loc, prior_precision):
    trace = jnp.sum(prior_precision * marginal_variance(p))
    return _kl(p["loc"], trace, logdet(p), prior_loc, prior_precision)

  def covariance(p):
    return jnp.diag(jnp.exp(2.0 * p["log_diag"])) + p["factor"] @ p["factor"].T

  return GaussianFamily(f"lowrank{rank}", init, sample, log_q, entropy, kl,
                        lambda p: p["loc"], covariance, marginal_variance)


def negative_elbo(family: GaussianFamily, q_params: PyTree, key: jax.Array,
                  num_samples: int,
                  log_lik_fn: Callable[[jax.Array], jax.Array],
                  kl_fn: Callable[[PyTree, jax.Array], jax.Array]
                  ) -> jax.Array:
  """``-(E_q[log_lik_fn(w)] - KL)``, reparameterised Monte Carlo.

  Args:
    family: the variational family.
    q_params: its parameters.
    key: PRNG key.
    num_samples: Monte Carlo samples ``S`` of ``w``.
    log_lik_fn: ``w [D] -> scalar`` (already scaled by ``N / B`` and ``1/T``).
    kl_fn: ``(q_params, w [S, D]) -> scalar`` KL estimate (closed form or MC).
  """
  w = family.sample(q_params, key, num_samples)
  return -jnp.mean(jax.vmap(log_lik_fn)(w)) + kl_fn(q_params, w)


def _make(name: str, family: GaussianFamily, model: post_lib.Model, config
          ) -> post_lib.Posterior:
  cfg = {k: config.get(k, v) for k, v in DEFAULTS.items()}
  num_s = int(cfg["num_train_samples"])
  n_pred = int(config.get("num_predict_samples", 100))
  chunk = config.get("predict_batch_size", None)

  def unravel_for(xshape):
    params = model.module.init(jax.random.key(0),
                               jnp.zeros((1,) + xshape, jnp.float32))["params"]
    return ravel_pytree(params)

  def fit(key, data, hp, valid=None):
    del valid
    n, xshape = post_lib.check_data(data)
    q_key, fit_key = jax.random.split(key)
    params = model.module.init(jax.random.fold_in(key, 1), jnp.zeros(
        (1,) + xshape, jnp.float32))["params"]
    flat, unravel = ravel_pytree(params)
    lik, prior = model.likelihood(hp), model.prior(hp)
    theta = prior.init(params)
    temperature = hp.get("temperature", 1.0)
    if prior.precision is not None:
      precision = ravel_pytree(prior.precision(theta, params))[0]
      kl_fn = lambda qp, w: family.kl_to_gaussian(
          qp, jnp.zeros_like(precision), precision)
    else:
      kl_fn = lambda qp, w: jnp.mean(
          family.log_q(qp, w)
          - jax.vmap(lambda v: prior.log_prob(theta, unravel(v)))(w))
    trainable = {"q": family.init(q_key, flat, cfg["init_scale"]),
                 "likelihood": lik.init()}

    def loss_fn(tp, model_state, batch, k):
      b = batch["y"].shape[0]

      def log_lik(w):
        out = model.module.apply({"params": unravel(w)}, batch["x"])
        ll = jnp.sum(lik.log_prob(tp["likelihood"], batch["y"], out))
        return (n / b) * ll / temperature

      loss = negative_elbo(family, tp["q"], k, num_s, log_lik, kl_fn)
      return loss / n, (model_state, {"neg_elbo": loss})

    return post_lib.gradient_fit(loss_fn, trainable, config, hp, data,
                                 fit_key)

  def predict(state, x, key, hp):
    _, unravel = unravel_for(tuple(x.shape[1:]))
    w = family.sample(state["q"], key, n_pred)
    samples = {"params": jax.vmap(unravel)(w),
               "likelihood": jax.tree.map(
                   lambda a: jnp.broadcast_to(a, (n_pred,) + jnp.shape(a)),
                   state["likelihood"])}
    return hmc.predict_from_samples(model, samples, x, hp, chunk)

  return post_lib.Posterior(name, fit, predict, 0.0)


def make_fullrank(model, config):
  """Full-rank Gaussian VI as a core ``Posterior`` (method ``"fullrank_vi"``).

  Config: ``num_epochs``, ``batch_size``, ``num_train_samples``,
  ``init_scale``, ``num_predict_samples``, ``predict_batch_size``.
  """
  return _make("fullrank_vi", fullrank(), model, config)


def make_lowrank(model, config):
  """Low-rank-plus-diagonal Gaussian VI (method ``"lowrank_vi"``); config as
  :func:`make_fullrank` plus ``rank``."""
  return _make("lowrank_vi", lowrank(int(config.get("rank", DEFAULTS["rank"]))),
               model, config)
