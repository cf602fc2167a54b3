"""Laplace predictives: linearised (GLM) and network sampling.

GLM predictive (Immer, Korzepa & Bauer 2021): linearise the network at the
MAP, ``f_lin(x; theta) = f(x; theta*) + J(x) (theta - theta*)``, so that
under ``theta ~ N(theta*, prec^-1)`` the outputs are Gaussian:

  f(x) ~ N(f(x; theta*), J(x) prec^-1 J(x)^T)         # [M, K], [M, K, K]

* Regression: ``mean = f``, ``variance = J prec^-1 J^T + sigma^2``.
* Classification, ``link_approx="probit"``: ``softmax(f / sqrt(1 + pi/8
  diag(Sigma_f)))`` (MacKay 1992b; categorical extension as in
  laplace-torch), Bernoulli ``sigmoid(f / sqrt(1 + pi/8 s^2))``; ``"mc"``:
  the average of ``softmax(f_s)`` over ``n_samples`` draws of ``f``.

NN-sampling predictive: draw ``theta_s ~ N(theta*, prec^-1)`` and run the
network (``n_samples`` draws, an equal-weight mixture).

The predictive is jitted by the caller and chunked over inputs
(``lax.map`` over blocks of ``chunk_size`` inputs, so memory is bounded by
``chunk_size * K * P``).

References:
  Immer, Korzepa & Bauer (2021), *Improving predictions of Bayesian neural
  nets via local linearization*, AISTATS, Eq. 6-8.
  MacKay (1992b), *The evidence framework applied to classification
  networks*, Eq. 22-25 (probit approximation).
  Daxberger et al. (2021), *Laplace Redux*, Sec. 2 (predictives).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxbdl.gradients.distributions import standard_normal
from jaxbdl.bayes.laplace import marglik

__all__ = ["glm_moments", "probit", "mc_link", "predict", "sample_params",
           "check_args"]


def _map_chunks(fn, x, chunk_size):
  """``fn`` over blocks of ``chunk_size`` rows of ``x``; outputs concatenated."""
  m = x.shape[0]
  b = int(min(chunk_size, m))
  num = -(-m // b)
  pad = num * b - m
  xp = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], 0) if pad else x
  out = jax.lax.map(fn, xp.reshape((num, b) + x.shape[1:]))
  return jax.tree.map(lambda a: a.reshape((num * b,) + a.shape[2:])[:m], out)


def _posterior_terms(spec, state):
  delta = marglik.expand_prior(spec, state.prior_precision)
  s = marglik.curvature_factor(spec, state.sigma_noise, state.temperature)
  return s, delta + s * state.damping


def glm_moments(spec, state, x, chunk_size: int = 256):
  """Linearised predictive moments ``f_mu [M, K]``, ``f_var [M, K, K]``."""
  s, delta = _posterior_terms(spec, state)

  def chunk(xc):
    def one(xn):
      g = lambda t: spec.apply_fn(spec.subset.expand(state.flat_map, t),
                                  xn[None])[0]
      f = g(state.theta)
      jac = jax.jacrev(g)(state.theta)                      # [K, P]
      return f, spec.structure.quad(state.curv, s, delta, jac)
    return jax.vmap(one)(xc)
  return _map_chunks(chunk, x, chunk_size)


def probit(f_mu, f_var, likelihood: str):
  """Probit-approximated class probabilities ``[M, C]`` (Bernoulli: C = 2)."""
  var = jnp.diagonal(f_var, axis1=-2, axis2=-1)              # [M, K]
  kappa = 1.0 / jnp.sqrt(1.0 + math.pi / 8.0 * var)
  if likelihood == "binary":
    p1 = jax.nn.sigmoid(kappa[:, 0] * f_mu[:, 0])
    return jnp.stack([1.0 - p1, p1], axis=-1)
  return jax.nn.softmax(kappa * f_mu, axis=-1)


def mc_link(f_mu, f_var, likelihood: str, key, n_samples: int):
  """Monte Carlo class probabilities ``[M, C]`` from ``n_samples`` draws of f."""
  k = f_mu.shape[-1]
  jitter = jnp.finfo(f_var.dtype).eps * jnp.eye(k, dtype=f_var.dtype)
  chol = jnp.linalg.cholesky(f_var + jitter[None])
  eps = standard_normal(key, (n_samples,) + f_mu.shape, f_mu.dtype)
  f = f_mu[None] + jnp.einsum("mkl,sml->smk", chol, eps)     # [S, M, K]
  if likelihood == "binary":
    p1 = jnp.mean(jax.nn.sigmoid(f[..., 0]), axis=0)
    return jnp.stack([1.0 - p1, p1], axis=-1)
  return jnp.mean(jax.nn.softmax(f, axis=-1), axis=0)


def sample_params(spec, state, key, n_samples: int):
  """``n_samples`` parameter pytrees from the Laplace posterior (stacked)."""
  if spec.structure.sample is None:
    raise ValueError(f"hessian_structure={spec.structure.name!r} cannot "
                     "sample weights; use pred_type='glm'")
  s, delta = _posterior_terms(spec, state)
  z = standard_normal(key, (n_samples,) + state.theta.shape,
                      state.theta.dtype)
  thetas = state.theta[None] + jax.vmap(
      lambda zz: spec.structure.sample(state.curv, s, delta, zz))(z)
  return jax.vmap(lambda t: spec.subset.expand(state.flat_map, t))(thetas)


def check_args(spec, pred_type, link_approx, key):
  """Raises ValueError for an unknown type/link or a missing key."""
  if pred_type not in ("glm", "nn"):
    raise ValueError(f"pred_type must be 'glm' or 'nn', got {pred_type!r}")
  if link_approx not in ("probit", "mc"):
    raise ValueError(f"link_approx must be 'probit' or 'mc', got "
                     f"{link_approx!r}")
  needs_key = pred_type == "nn" or (link_approx == "mc" and
                                    spec.likelihood != "regression")
  if needs_key and key is None:
    raise ValueError(f"pred_type={pred_type!r}, link_approx={link_approx!r} "
                     "needs a PRNG key")


def predict(spec, state, x, pred_type: str = "glm",
            link_approx: str = "probit", n_samples: int = 100, key=None,
            chunk_size: int = 256) -> dict:
  """The Laplace predictive at ``x [M, ...]``.

  Returns:
    regression ``{"mean": [M], "variance": [M], "f_variance": [M]}``
    (``[M, K]`` for ``K > 1`` outputs; variance includes ``sigma^2``); classification ``{"probs": [M, C]}``.
    ``pred_type="nn"`` returns the mixture components with a leading sample
    axis: ``{"mean": [S, M], "variance": [S, M]}`` or ``{"probs": [S, M, C]}``.
  """
  check_args(spec, pred_type, link_approx, key)
  if pred_type == "nn":
    params = sample_params(spec, state, key, n_samples)
    f = jax.vmap(lambda p: _map_chunks(lambda xc: spec.apply_fn(p, xc), x,
                                       chunk_size))(params)   # [S, M, K]
    if spec.likelihood == "regression":
      return {"mean": f[..., 0],
              "variance": jnp.broadcast_to(state.sigma_noise ** 2,
                                           f[..., 0].shape)}
    if spec.likelihood == "binary":
      p1 = jax.nn.sigmoid(f[..., 0])
      return {"probs": jnp.stack([1.0 - p1, p1], axis=-1)}
    return {"probs": jax.nn.softmax(f, axis=-1)}
  f_mu, f_var = glm_moments(spec, state, x, chunk_size)
  if spec.likelihood == "regression":
    fv = jnp.diagonal(f_var, axis1=-2, axis2=-1)               # [M, K]
    if fv.shape[-1] == 1:
      f_mu, fv = f_mu[:, 0], fv[:, 0]
    return {"mean": f_mu, "variance": fv + state.sigma_noise ** 2,
            "f_variance": fv}
  if link_approx == "probit":
    return {"probs": probit(f_mu, f_var, spec.likelihood)}
  return {"probs": mc_link(f_mu, f_var, spec.likelihood, key, n_samples)}
