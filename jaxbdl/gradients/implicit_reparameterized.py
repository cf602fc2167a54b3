"""Gamma, Beta, Dirichlet: implicit reparameterisation through JAX's sampler.

These families have no explicit path ``x = g(eps, theta)``. ``noise`` is one
PRNG key per sample and ``transform`` draws ``z = jax.random.gamma(key,
alpha)`` (Beta and Dirichlet normalise log-space Gamma draws), whose custom
JVP is the implicit reparameterisation gradient

  dz/dalpha = -(dF(z; alpha)/dalpha) / q(z; alpha)      (F the CDF),

(Figurnov et al. 2018, eq. 5), so ``jax.grad`` through a sample is the
implicit gradient and :data:`jaxbdl.gradients.estimators.pathwise` covers
these families (``reparameterized`` and ``implicit_reparameterized`` are
True).

* :data:`Gamma`, params ``{"concentration": alpha, "rate": beta}`` ``[*E]``:
  density ``beta^alpha x^(alpha - 1) exp(-beta x) / Gamma(alpha)``, x > 0;
  weak derivative for ``rate`` only (Mohamed et al. 2020, Table 1).
* :data:`Beta`, params ``{"concentration1": alpha (exponent of x),
  "concentration0": beta (exponent of 1 - x)}`` ``[*E]``.
* :data:`Dirichlet`, params ``{"concentration": [*B, K]}``: the event is the
  whole array (each row of the last axis is one point of the K-simplex).

For concentrations << 1 float32 draws underflow to 0 (or round to 1), so
samples are clipped into the float's support (see ``_clip_support``).

References:
  M. Figurnov, S. Mohamed, A. Mnih. Implicit Reparameterization Gradients.
  NeurIPS 2018. Eq. (5); Sec. 3 (Gamma, Beta, Dirichlet).
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Table 1 (weak derivatives).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbdl.gradients.distribution_protocol import (
    Array, Params, WeakDerivative, _check_event, _diag_cov, _expand_to,
    _key_sampled, _map_keys, _shape, _sum_event, check_params)

__all__ = ["Gamma", "Beta", "Dirichlet"]

_gammaln = jax.scipy.special.gammaln
_digamma = jax.scipy.special.digamma

# ---------------------------------------------------------------------------
# Gamma, params {"concentration" (alpha), "rate" (beta)}:
# density beta^alpha x^(alpha - 1) exp(-beta x) / Gamma(alpha), x > 0.

_GAMMA = ("concentration", "rate")


def _gamma_params(params: Params) -> tuple[Array, Array]:
  p = check_params("Gamma", params, _GAMMA)
  return p["concentration"], p["rate"]


def _gamma_transform(params: Params, keys: Array) -> Array:
  """``z = jax.random.gamma(key, alpha) / beta`` per key.

  Differentiable in ``alpha`` by JAX's implicit-reparameterisation JVP
  (``random_gamma_grad``: ``-(dF/dalpha) / p``, Figurnov et al. 2018).
  Draws that underflow to 0 (alpha << 1 in float32) are raised to the
  smallest normal float, so ``log_prob`` (and the score function) stays
  finite.
  """
  a, b = _gamma_params(params)
  z = _map_keys("Gamma", lambda k: jax.random.gamma(k, a, dtype=a.dtype),
                keys) / _expand_to(b, jnp.ndim(keys) + b.ndim)
  return _clip_support(z, upper=False)


def _clip_support(x: Array, upper: bool) -> Array:
  """Clips samples into ``[tiny, 1 - epsneg]`` (or ``[tiny, inf)``).

  For concentrations << 1, float32 draws underflow to exactly 0 (or round to
  1), where ``log_prob`` is infinite and score-function estimates become
  NaN; torch.distributions clamps its Dirichlet samples the same way. The
  moved probability mass is below the float's resolution of the density's
  support; clipped draws get a zero path gradient.
  """
  info = jnp.finfo(x.dtype)
  hi = 1.0 - info.epsneg if upper else jnp.inf
  return jnp.clip(x, info.tiny, hi)


def _gamma_log_prob(params: Params, x: Array) -> Array:
  """sum [alpha log beta + (alpha - 1) log x - beta x - lgamma(alpha)]."""
  a, b = _gamma_params(params)
  x = _check_event("Gamma", x, a.shape)
  ae, be = _expand_to(a, x.ndim), _expand_to(b, x.ndim)
  lp = (ae * jnp.log(be) + (ae - 1.0) * jnp.log(x) - be * x - _gammaln(ae))
  return _sum_event(lp, a.ndim)


def _gamma_entropy(params: Params) -> Array:
  """sum [alpha - log beta + lgamma(alpha) + (1 - alpha) digamma(alpha)]."""
  a, b = _gamma_params(params)
  return jnp.sum(a - jnp.log(b) + _gammaln(a) + (1.0 - a) * _digamma(a))


def _gamma_kl(params: Params, other: Params) -> Array:
  """KL(G(a1, b1) || G(a2, b2)) = (a1 - a2) psi(a1) - lgamma(a1)
  + lgamma(a2) + a2 (log b1 - log b2) + a1 (b2 - b1) / b1, summed."""
  a1, b1 = _gamma_params(params)
  a2, b2 = _gamma_params(other)
  if a1.shape != a2.shape:
    raise ValueError(f"Gamma.kl: shapes differ, {a1.shape} vs {a2.shape}")
  return jnp.sum((a1 - a2) * _digamma(a1) - _gammaln(a1) + _gammaln(a2) +
                 a2 * (jnp.log(b1) - jnp.log(b2)) + a1 * (b2 - b1) / b1)


def _gamma_weak_derivative(params: Params, key: Array, shape=(),
                           coupled: bool = True) -> dict:
  """rate: ``d/dbeta G(a, b) = (a / b) [G(a, b) - G(a + 1, b)]``.

  (Because ``G(a + 1, b)(x) = (b x / a) G(a, b)(x)``; Mohamed et al. 2020,
  Table 1.) Coupled: ``q- = q+ + Exponential(b)`` (a ``G(a + 1, b)`` draw
  sharing the ``G(a, b)`` one). There is no closed-form weak derivative for
  the concentration, so only ``rate`` is covered.
  """
  a, b = _gamma_params(params)
  out_shape = _shape(shape) + a.shape
  k1, k2 = jax.random.split(key)
  be = _expand_to(b, len(out_shape))
  pos = jax.random.gamma(k1, a, out_shape, dtype=a.dtype) / be
  if coupled:
    neg = pos + jax.random.exponential(k2, out_shape, dtype=a.dtype) / be
  else:
    neg = jax.random.gamma(k2, a + 1.0, out_shape, dtype=a.dtype) / be
  return {"rate": WeakDerivative(a / b, pos, neg)}


Gamma = _key_sampled(
    "Gamma", _GAMMA, _gamma_params, implicit=True,
    transform=_gamma_transform, log_prob=_gamma_log_prob,
    entropy=_gamma_entropy, kl=_gamma_kl,
    mean=lambda params: (lambda a, b: a / b)(*_gamma_params(params)),
    covariance=lambda params: _diag_cov(
        (lambda a, b: a / jnp.square(b))(*_gamma_params(params))),
    weak_derivative=_gamma_weak_derivative, weak_derivative_params=("rate",))


# ---------------------------------------------------------------------------
# Beta, params {"concentration1" (alpha, exponent of x), "concentration0"
# (beta, exponent of 1 - x)}; x = G_a / (G_a + G_b) with Gamma draws.

_BETA = ("concentration1", "concentration0")


def _beta_params(params: Params) -> tuple[Array, Array]:
  p = check_params("Beta", params, _BETA)
  return p["concentration1"], p["concentration0"]


def _beta_transform(params: Params, keys: Array) -> Array:
  """``x = sigmoid(log G_a - log G_b)``, log-space Gamma draws (stable for
  small concentrations), each with its implicit gradient; clipped into
  ``[tiny, 1 - epsneg]`` (see ``_clip_support``)."""
  a, b = _beta_params(params)

  def one(k):
    # One sampler call for both Gammas (each sampler instance costs compile
    # time): log G [2, *E].
    log_g = jax.random.loggamma(k, jnp.stack([a, b]), dtype=a.dtype)
    return _clip_support(jax.nn.sigmoid(log_g[0] - log_g[1]), upper=True)

  return _map_keys("Beta", one, keys)


def _betaln(a: Array, b: Array) -> Array:
  return _gammaln(a) + _gammaln(b) - _gammaln(a + b)


def _beta_log_prob(params: Params, x: Array) -> Array:
  """sum [(a - 1) log x + (b - 1) log(1 - x) - log B(a, b)]."""
  a, b = _beta_params(params)
  x = _check_event("Beta", x, a.shape)
  ae, be = _expand_to(a, x.ndim), _expand_to(b, x.ndim)
  lp = ((ae - 1.0) * jnp.log(x) + (be - 1.0) * jnp.log1p(-x) -
        _betaln(ae, be))
  return _sum_event(lp, a.ndim)


def _beta_entropy(params: Params) -> Array:
  """sum [log B(a, b) - (a - 1) psi(a) - (b - 1) psi(b)
  + (a + b - 2) psi(a + b)]."""
  a, b = _beta_params(params)
  return jnp.sum(_betaln(a, b) - (a - 1.0) * _digamma(a) -
                 (b - 1.0) * _digamma(b) + (a + b - 2.0) * _digamma(a + b))


def _beta_kl(params: Params, other: Params) -> Array:
  """KL(B(a1, b1) || B(a2, b2)) = log B(a2, b2) - log B(a1, b1)
  + (a1 - a2) psi(a1) + (b1 - b2) psi(b1) + (a2 - a1 + b2 - b1)
  psi(a1 + b1), summed."""
  a1, b1 = _beta_params(params)
  a2, b2 = _beta_params(other)
  if a1.shape != a2.shape:
    raise ValueError(f"Beta.kl: shapes differ, {a1.shape} vs {a2.shape}")
  return jnp.sum(_betaln(a2, b2) - _betaln(a1, b1) +
                 (a1 - a2) * _digamma(a1) + (b1 - b2) * _digamma(b1) +
                 (a2 - a1 + b2 - b1) * _digamma(a1 + b1))


def _beta_var(params: Params) -> Array:
  a, b = _beta_params(params)
  n = a + b
  return a * b / (jnp.square(n) * (n + 1.0))


Beta = _key_sampled(
    "Beta", _BETA, _beta_params, implicit=True,
    transform=_beta_transform, log_prob=_beta_log_prob,
    entropy=_beta_entropy, kl=_beta_kl,
    mean=lambda params: (lambda a, b: a / (a + b))(*_beta_params(params)),
    covariance=lambda params: _diag_cov(_beta_var(params)))


# ---------------------------------------------------------------------------
# Dirichlet, params {"concentration": [*B, K]}; the event is the whole array
# (each row of the last axis is one point of the K-simplex).

_DIRICHLET = ("concentration",)


def _dirichlet_alpha(params: Params) -> Array:
  a = check_params("Dirichlet", params, _DIRICHLET)["concentration"]
  if a.ndim < 1 or a.shape[-1] < 2:
    raise ValueError(f"Dirichlet concentration needs a last (simplex) axis "
                     f"of size >= 2, got shape {a.shape}")
  return a


def _dirichlet_transform(params: Params, keys: Array) -> Array:
  """``x = softmax(log G)``, ``G_k ~ Gamma(alpha_k)`` drawn in log space,
  each with its implicit gradient; entries clipped into ``[tiny, 1 -
  epsneg]`` (see ``_clip_support``)."""
  a = _dirichlet_alpha(params)
  return _map_keys(
      "Dirichlet", lambda k: _clip_support(jax.nn.softmax(
          jax.random.loggamma(k, a, dtype=a.dtype), axis=-1), upper=True),
      keys)


def _dirichlet_log_prob(params: Params, x: Array) -> Array:
  """sum [sum_k (a_k - 1) log x_k + lgamma(a_0) - sum_k lgamma(a_k)]."""
  a = _dirichlet_alpha(params)
  x = _check_event("Dirichlet", x, a.shape)
  ae = _expand_to(a, x.ndim)
  lp = (jnp.sum((ae - 1.0) * jnp.log(x) - _gammaln(ae), axis=-1) +
        _gammaln(jnp.sum(ae, axis=-1)))
  return _sum_event(lp, a.ndim - 1)


def _dirichlet_entropy(params: Params) -> Array:
  """sum [log B(a) + (a_0 - K) psi(a_0) - sum_k (a_k - 1) psi(a_k)]."""
  a = _dirichlet_alpha(params)
  a0 = jnp.sum(a, axis=-1)
  k = a.shape[-1]
  log_b = jnp.sum(_gammaln(a), axis=-1) - _gammaln(a0)
  return jnp.sum(log_b + (a0 - k) * _digamma(a0) -
                 jnp.sum((a - 1.0) * _digamma(a), axis=-1))


def _dirichlet_kl(params: Params, other: Params) -> Array:
  """KL(Dir(a) || Dir(b)) = lgamma(a_0) - sum lgamma(a_k) - lgamma(b_0)
  + sum lgamma(b_k) + sum (a_k - b_k) (psi(a_k) - psi(a_0)), summed."""
  a, b = _dirichlet_alpha(params), _dirichlet_alpha(other)
  if a.shape != b.shape:
    raise ValueError(f"Dirichlet.kl: shapes differ, {a.shape} vs {b.shape}")
  a0, b0 = jnp.sum(a, axis=-1), jnp.sum(b, axis=-1)
  return jnp.sum(_gammaln(a0) - _gammaln(b0) +
                 jnp.sum(_gammaln(b) - _gammaln(a) + (a - b) *
                         (_digamma(a) - _digamma(a0)[..., None]), axis=-1))


def _dirichlet_covariance(params: Params) -> Array:
  """Block-diagonal ``[D, D]``: per row ``(diag(m) - m m^T) / (a_0 + 1)``."""
  a = _dirichlet_alpha(params)
  k = a.shape[-1]
  a_bxk = a.reshape(-1, k)
  a0_b = jnp.sum(a_bxk, axis=-1)
  m_bxk = a_bxk / a0_b[:, None]
  blocks = ((jax.vmap(jnp.diag)(m_bxk) - m_bxk[:, :, None] * m_bxk[:, None, :])
            / (a0_b + 1.0)[:, None, None])
  return jax.scipy.linalg.block_diag(*list(blocks))


Dirichlet = _key_sampled(
    "Dirichlet", _DIRICHLET, _dirichlet_alpha, implicit=True,
    transform=_dirichlet_transform, log_prob=_dirichlet_log_prob,
    entropy=_dirichlet_entropy, kl=_dirichlet_kl,
    mean=lambda params: (lambda a: a / jnp.sum(a, axis=-1, keepdims=True))(
        _dirichlet_alpha(params)),
    covariance=_dirichlet_covariance)

