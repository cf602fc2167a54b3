"""Gaussian variational families over a weight pytree, as data for the ELBO.

A :class:`Family` says how ``q(W)`` over any pytree ``W`` (e.g. a Flax
``params`` dict) is parameterised. ``q`` is always a dict whose ``"loc"`` is a
pytree shaped like ``W``; the covariance is over the raveled vector
``w = ravel(W) [D]`` (``jax.flatten_util.ravel_pytree`` order):

* :func:`mean_field`: ``q = {"loc", "raw_scale"}`` (two pytrees),
  ``Sigma = diag(softplus(rho)^2)`` (Graves 2011; Blundell et al. 2015);
* :func:`fullrank`: ``q = {"loc", "tril": [D, D]}``, ``Sigma = L L^T`` with
  ``L`` lower triangular, diagonal ``exp(diag(tril))`` (Titsias &
  Lazaro-Gredilla 2014, Alg. 1). ``O(D^2)`` parameters; exact for a Gaussian
  posterior (Bayesian linear regression);
* :func:`lowrank`: ``q = {"loc", "log_diag": [D], "factor": [D, R]}``,
  ``Sigma = diag(exp(2 log_diag)) + U U^T`` (Rezende et al. 2014, Sec. 3;
  Ong, Nott & Smith 2018, Eq. 2). ``O(D R)`` parameters; ``log|Sigma|`` by the
  matrix determinant lemma with the ``R x R`` capacitance
  ``C = I + U^T diag(d^-2) U``. ``R = D - 1`` already represents every
  covariance (``d^2 = lambda_min(Sigma)``).

``family.distribution(q)`` is q as ONE ``jaxbdl.gradients.distributions`` distribution
over ``w [D]`` (``Normal``, ``MultivariateNormalTriL``,
``LowRankMultivariateNormal``), so every ``jaxbdl.gradients.estimators`` estimator
(pathwise, score function, ...) differentiates the ELBO's data term
(``jaxbdl.bayes.elbo.data_term``) for every family; the chain rule from the
distribution's parameters back to q is ``jax.grad``'s.

Closed-form KL (``family.kl(prior)``, ``None`` when there is none): mean
field uses the prior's own ``prior.kl``; the correlated families need a
zero-mean Gaussian prior with diagonal precision ``P = prior.precision``
(Rasmussen & Williams 2006, Eq. A.23, with ``Sigma_p = P^-1``, ``m_p = 0``)::

  KL(N(mu, Sigma) || N(0, P^-1))
      = 0.5 [tr(P Sigma) + mu^T P mu - D - log|P| - log|Sigma|].

References:
  A. Graves (2011), Practical variational inference for neural networks.
  C. Blundell et al. (2015), Weight uncertainty in neural networks, ICML.
  M. Titsias, M. Lazaro-Gredilla (2014), Doubly stochastic variational Bayes
    for non-conjugate inference, ICML.
  D. Rezende, S. Mohamed, D. Wierstra (2014), Stochastic backpropagation and
    approximate inference in deep generative models, ICML.
  V. Ong, D. Nott, M. Smith (2018), Gaussian variational approximation with a
    factor covariance structure, JCGS 27(3).
  C. E. Rasmussen, C. K. I. Williams (2006), Gaussian processes for machine
    learning, Appendix A.5 (KL between Gaussians).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxbdl._gaussian import LOG_2PI
from jaxbdl.gradients import distributions
from jaxbdl._checks import softplus_inverse
from jaxbdl.bayes import priors as prior_lib

PyTree = Any
Array = jax.Array
_tmap = jax.tree_util.tree_map

__all__ = [
    "Family", "mean_field", "fullrank", "lowrank", "MEAN_FIELD", "draw",
    "gaussian_kl", "init_mean_field", "to_normal", "sample_params", "log_q",
    "entropy",
]


class Family(NamedTuple):
  """A variational family over a weight pytree ``W`` (module docstring).

  Attributes:
    name: e.g. ``"mean_field"``, ``"fullrank"``, ``"lowrank3"``.
    init: ``(key, W, init_scale) -> q`` with ``q["loc"] = W`` and marginal
      standard deviations ``~ init_scale``.
    distribution: ``q -> (Distribution, dist_params)``: q over
      ``ravel(W) [D]``, reparameterised.
    log_q: ``(q, W) -> scalar``.
    entropy: ``q -> scalar``.
    kl: ``prior -> None | (theta, q) -> scalar``: the closed-form
      ``KL(q || p(. | theta))`` when it exists for this prior.
    covariance: ``q -> [D, D]`` (dense; tests and small ``D``).
    marginal_variance: ``q -> [D]``.
  """
  name: str
  init: Callable[[Array, PyTree, float], dict]
  distribution: Callable[[dict], tuple]
  log_q: Callable[[dict, PyTree], Array]
  entropy: Callable[[dict], Array]
  kl: Callable[[prior_lib.Prior], Optional[Callable[[PyTree, dict], Array]]]
  covariance: Callable[[dict], Array]
  marginal_variance: Callable[[dict], Array]


def draw(family: Family, q: dict, key: Array, shape=()) -> PyTree:
  """Reparameterised samples ``W ~ q``: a pytree like ``q["loc"]`` with
  leading axes ``shape``; ``draw(f, q, key)`` is one sample."""
  dist, params = family.distribution(q)
  _, unravel = ravel_pytree(q["loc"])
  shape = tuple(shape)
  w = dist.sample(params, key, shape)
  for _ in shape:
    unravel = jax.vmap(unravel)
  return unravel(w)


def gaussian_kl(mu: Array, trace_p_sigma: Array, logdet_sigma: Array,
                precision: Array) -> Array:
  """``KL(N(mu, Sigma) || N(0, diag(precision)^-1))`` from ``tr(P Sigma)``
  and ``log|Sigma|`` (Rasmussen & Williams 2006, Eq. A.23); ``mu [D]``."""
  return 0.5 * (trace_p_sigma + jnp.sum(precision * mu * mu) - mu.shape[-1]
                - jnp.sum(jnp.log(precision)) - logdet_sigma)


def _gaussian_prior_kl(trace_and_logdet):
  """``family.kl`` for a correlated family: ``trace_and_logdet(q, P [D]) ->
  (tr(P Sigma), log|Sigma|)``; needs ``prior.precision``."""

  def kl(prior):
    if prior.precision is None:
      return None

    def fn(theta, q):
      prec = ravel_pytree(prior.precision(theta, q["loc"]))[0]
      mu = ravel_pytree(q["loc"])[0]
      return gaussian_kl(mu, *trace_and_logdet(q, prec), prec)

    return fn

  return kl


# ---------------------------------------------------------------------------
# Mean field.


def init_mean_field(params: PyTree, init_scale: float = 1e-3) -> dict:
  """``{"loc": params, "raw_scale": rho}`` with ``softplus(rho) = init_scale``."""
  if not init_scale > 0:
    raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
  rho = softplus_inverse(init_scale)
  return {"loc": params,
          "raw_scale": _tmap(lambda p: jnp.full(jnp.shape(p), rho,
                                                jnp.result_type(p)), params)}


def _check_q(q: Any) -> None:
  if not isinstance(q, dict) or set(q) != {"loc", "raw_scale"}:
    keys = sorted(q) if isinstance(q, dict) else type(q).__name__
    raise ValueError("variational params must be a dict with keys "
                     f"['loc', 'raw_scale'], got {keys}")


def to_normal(q: dict) -> dict:
  """``{"loc": mu, "scale": softplus(rho)}`` (pytrees shaped like ``W``)."""
  _check_q(q)
  return {"loc": q["loc"], "scale": _tmap(jax.nn.softplus, q["raw_scale"])}


def _mf_distribution(q: dict):
  n = to_normal(q)
  return distributions.Normal, {"loc": ravel_pytree(n["loc"])[0],
                                "scale": ravel_pytree(n["scale"])[0]}


def sample_params(q: dict, key: Array) -> PyTree:
  """One reparameterised mean-field sample ``W = mu + sigma * eps`` with ONE
  noise vector ``eps ~ N(0, I_P)`` over the raveled weights (so a pytree q
  and its raveled form draw the same sample for the same key)."""
  return draw(MEAN_FIELD, q, key)


def log_q(q: dict, w: PyTree) -> Array:
  """Mean-field ``log q(W)`` summed over all weights (scalar)."""
  n = to_normal(q)
  return prior_lib.tree_sum(_tmap(
      lambda m, s, x: distributions.Normal.log_prob({"loc": m, "scale": s}, x),
      n["loc"], n["scale"], w))


def entropy(q: dict) -> Array:
  """``H[q] = sum_i (0.5 log(2 pi e) + log sigma_i)`` (scalar)."""
  n = to_normal(q)
  return prior_lib.tree_sum(_tmap(
      lambda m, s: distributions.Normal.entropy({"loc": m, "scale": s}),
      n["loc"], n["scale"]))


def _mf_kl(prior):
  if prior.kl is None:
    return None

  def fn(theta, q):
    n = to_normal(q)
    return prior.kl(theta, n["loc"], n["scale"])

  return fn


def _mf_variance(q):
  return jnp.square(_mf_distribution(q)[1]["scale"])


def mean_field() -> Family:
  """The fully factorised Gaussian ``{"loc", "raw_scale"}``."""
  return Family("mean_field", lambda key, w, s: init_mean_field(w, s),
                _mf_distribution, log_q, entropy, _mf_kl,
                lambda q: jnp.diag(_mf_variance(q)), _mf_variance)


MEAN_FIELD = mean_field()


# ---------------------------------------------------------------------------
# Full rank (Cholesky).


def _check_scale(init_scale):
  if not init_scale > 0:
    raise ValueError(f"init_scale must be > 0, got {init_scale!r}")


def fullrank() -> Family:
  """``Sigma = L L^T``; ``q = {"loc": W, "tril": [D, D]}`` (raw: strictly
  lower part as is, diagonal ``log L_ii``)."""

  def chol(q):
    raw = q["tril"]
    return jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))

  def init(key, w, init_scale):
    del key
    _check_scale(init_scale)
    flat = ravel_pytree(w)[0]
    return {"loc": w, "tril": jnp.diag(jnp.full(flat.shape, math.log(
        init_scale), flat.dtype))}

  def distribution(q):
    return distributions.MultivariateNormalTriL, {
        "loc": ravel_pytree(q["loc"])[0], "scale_tril": chol(q)}

  def logdet(q):
    return 2.0 * jnp.sum(jnp.diag(q["tril"]))

  def log_q_(q, w):
    dist, params = distribution(q)
    return dist.log_prob(params, ravel_pytree(w)[0])

  def entropy_(q):
    return 0.5 * q["tril"].shape[0] * (1.0 + LOG_2PI) + 0.5 * logdet(q)

  def trace_and_logdet(q, prec):
    l = chol(q)
    return jnp.sum(prec[:, None] * l * l), logdet(q)

  def covariance(q):
    l = chol(q)
    return l @ l.T

  return Family("fullrank", init, distribution, log_q_, entropy_,
                _gaussian_prior_kl(trace_and_logdet), covariance,
                lambda q: jnp.sum(jnp.square(chol(q)), axis=1))


# ---------------------------------------------------------------------------
# Low rank plus diagonal.


def lowrank(rank: int) -> Family:
  """``Sigma = diag(d^2) + U U^T``; ``q = {"loc": W, "log_diag": [D],
  "factor": [D, rank]}``; ``rank = 0`` is mean field (log-scale
  parameterised)."""
  if isinstance(rank, bool) or int(rank) != rank or rank < 0:
    raise ValueError(f"rank must be >= 0, got {rank}")
  rank = int(rank)

  def init(key, w, init_scale):
    _check_scale(init_scale)
    flat = ravel_pytree(w)[0]
    # U small and random: U = 0 is a stationary point of the ELBO in U.
    factor = 0.1 * init_scale * jax.random.normal(key, flat.shape + (rank,),
                                                  flat.dtype)
    return {"loc": w, "log_diag": jnp.full(flat.shape, math.log(init_scale),
                                           flat.dtype), "factor": factor}

  def distribution(q):
    return distributions.LowRankMultivariateNormal, {
        "loc": ravel_pytree(q["loc"])[0], "cov_factor": q["factor"],
        "cov_diag": jnp.exp(2.0 * q["log_diag"])}

  def logdet(q):
    u_scaled = q["factor"] * jnp.exp(-2.0 * q["log_diag"])[:, None]
    cap = jnp.eye(rank, dtype=u_scaled.dtype) + q["factor"].T @ u_scaled
    return 2.0 * jnp.sum(q["log_diag"]) + jnp.linalg.slogdet(cap)[1]

  def log_q_(q, w):
    dist, params = distribution(q)
    return dist.log_prob(params, ravel_pytree(w)[0])

  def entropy_(q):
    return 0.5 * q["log_diag"].shape[0] * (1.0 + LOG_2PI) + 0.5 * logdet(q)

  def marginal_variance(q):
    return jnp.exp(2.0 * q["log_diag"]) + jnp.sum(q["factor"] ** 2, axis=1)

  def covariance(q):
    return jnp.diag(jnp.exp(2.0 * q["log_diag"])) + q["factor"] @ q["factor"].T

  return Family(f"lowrank{rank}", init, distribution, log_q_, entropy_,
                _gaussian_prior_kl(lambda q, prec: (
                    jnp.sum(prec * marginal_variance(q)), logdet(q))),
                covariance, marginal_variance)
