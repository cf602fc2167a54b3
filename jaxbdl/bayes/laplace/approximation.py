"""Post-hoc Laplace approximation around a MAP solution of any network.

laplace-torch's users write ``la = Laplace(model, "regression",
subset_of_weights="all", hessian_structure="full"); la.fit(loader);
la.optimize_prior_precision(); la(x)``. Ours is the same sequence of pure
functions on an explicit state (STYLE rule 3)::

  la = laplace.Laplace(apply_fn, params, "regression",
                       subset_of_weights="all", hessian_structure="full")
  state = la.fit(params, x, y)                       # curvature at the MAP
  state, hist = la.optimize_prior_precision(state, fit_noise=True)
  pred = la.predict(state, x_test)                   # {"mean", "variance"}

``apply_fn(params, x [N, ...]) -> [N, K]`` is any network (e.g.
``lambda p, x: module.apply({"params": p}, x)``); ``params`` the MAP pytree.
Likelihoods (laplace-torch's names): ``"regression"`` (Gaussian, noise
``sigma_noise``), ``"classification"`` (categorical softmax over ``K``
logits), ``"binary"`` (Bernoulli, one logit).

The posterior over the selected weights ``theta [P]`` is
``N(theta_MAP, (s (H + damping I) + diag(delta))^-1)``; see ``curvature`` for
``H`` and ``marglik`` for ``s``, ``delta`` and the evidence.

References:
  Daxberger et al. (2021), *Laplace Redux -- Effortless Bayesian Deep
  Learning*, NeurIPS (the laplace-torch library).
  MacKay (1992), *A practical Bayesian framework for backpropagation
  networks*, Neural Computation 4(3).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxbdl.bayes.laplace import curvature as curvature_lib
from jaxbdl.bayes.laplace import marglik as marglik_lib
from jaxbdl.bayes.laplace import predictive as predictive_lib

__all__ = ["LaplaceSpec", "LaplaceState", "Laplace", "LaplaceApproximation",
           "map_gradient_norm", "data_loss"]

PyTree = Any


class LaplaceSpec(NamedTuple):
  """Static description (Python objects; closed over, never traced)."""
  apply_fn: Callable
  likelihood: str
  curvature: str
  structure: curvature_lib.Structure
  subset: curvature_lib.Subset
  chunk_size: int


class LaplaceState(NamedTuple):
  """A fitted Laplace approximation (a pytree; jit/vmap-able).

  Attributes:
    flat_map: all MAP weights, flat ``[P_all]``.
    theta: the selected MAP weights ``[P]``.
    curv: the structure's curvature (unit scale).
    prior_precision: ``[1]``, ``[L]`` or ``[P]``.
    sigma_noise: observation noise scale (regression; 1.0 otherwise).
    damping: added to the curvature, ``s (H + damping I)``.
    temperature: the likelihood is raised to ``1 / temperature``.
    loss: ``SSR / 2`` at unit noise (regression) or ``-sum log p(y|f)``.
    num_outputs_total: ``N * K`` (regression normaliser).
  """
  flat_map: jax.Array
  theta: jax.Array
  curv: PyTree
  prior_precision: jax.Array
  sigma_noise: jax.Array
  damping: jax.Array
  temperature: jax.Array
  loss: jax.Array
  num_outputs_total: jax.Array


class LaplaceApproximation(NamedTuple):
  """The functions of one Laplace approximation (see module doc)."""
  spec: LaplaceSpec
  fit: Callable
  log_marginal_likelihood: Callable
  optimize_prior_precision: Callable
  predict: Callable
  sample: Callable
  posterior_precision: Callable


def _concrete(*xs) -> bool:
  return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(xs))


def _data_loss(spec, params, x, y):
  """``SSR / 2`` (regression, unit noise) or ``-sum log p`` (classification)."""
  def chunk(xc, yc, wc):
    f = spec.apply_fn(params, xc)
    if spec.likelihood == "regression":
      r = f - yc.reshape(f.shape[0], -1).astype(f.dtype)
      per = 0.5 * jnp.sum(r * r, axis=-1)
    elif spec.likelihood == "classification":
      per = -jnp.take_along_axis(jax.nn.log_softmax(f, axis=-1),
                                 yc.astype(jnp.int32)[:, None], axis=-1)[:, 0]
    else:
      z = f[:, 0]
      yy = yc.astype(f.dtype)
      per = -(yy * jax.nn.log_sigmoid(z) + (1 - yy) * jax.nn.log_sigmoid(-z))
    return jnp.sum(per * wc), jnp.asarray(f.shape[1], f.dtype) * jnp.sum(wc)
  dtype = jax.tree.leaves(params)[0].dtype
  w = jnp.ones((x.shape[0],), dtype)
  zero = jnp.zeros((), dtype)
  return curvature_lib._chunked(chunk, x, y, w, spec.chunk_size, (zero, zero))


def data_loss(spec, params, x, y):
  """``(loss, N K)``: ``SSR / 2`` at unit noise (regression) or ``-sum log
  p(y | f)`` over ``x [N, ...]``, ``y [N]``, chunked over the data."""
  return _data_loss(spec, params, x, y)


def map_gradient_norm(spec, state, params, x, y):
  """``|grad_theta (-log p(D|theta)/T - log p(theta))| / N`` at the MAP."""
  delta = marglik_lib.expand_prior(spec, state.prior_precision)
  s_lik = 1.0 / state.temperature
  if spec.likelihood == "regression":
    s_lik = s_lik / state.sigma_noise ** 2

  def neg_joint(t):
    p = spec.subset.expand(state.flat_map, t)
    return s_lik * _data_loss(spec, p, x, y)[0] + 0.5 * jnp.sum(delta * t * t)
  g = jax.grad(neg_joint)(state.theta)
  return jnp.linalg.norm(g) / x.shape[0]


def Laplace(apply_fn: Callable, params: PyTree, likelihood: str,  # noqa: N802
            subset_of_weights: Any = "all", hessian_structure: str = "full",
            curvature: str = "ggn", rank: int = 20,
            chunk_size: int = 128) -> LaplaceApproximation:
  """Builds a Laplace approximation (laplace-torch's ``Laplace(...)``).

  Args:
    apply_fn: ``(params, x [N, ...]) -> outputs [N, K]``.
    params: a params pytree (only its structure and shapes are read here).
    likelihood: ``"regression"``, ``"classification"`` or ``"binary"``.
    subset_of_weights: ``"all"``, ``"last_layer"`` or a boolean mask pytree.
    hessian_structure: ``"full"``, ``"diag"``, ``"kron"`` or ``"lowrank"``.
    curvature: ``"ggn"`` or ``"ef"`` (empirical Fisher).
    rank: the rank of ``"lowrank"``.
    chunk_size: examples per chunk when accumulating curvature / predicting.

  Raises:
    ValueError: an unknown likelihood / structure / curvature / subset.
  """
  if likelihood not in curvature_lib.LIKELIHOODS:
    raise ValueError(f"likelihood must be one of {curvature_lib.LIKELIHOODS}, "
                     f"got {likelihood!r}")
  if hessian_structure not in curvature_lib.STRUCTURES:
    raise ValueError("hessian_structure must be one of "
                     f"{tuple(curvature_lib.STRUCTURES)}, got "
                     f"{hessian_structure!r}")
  if curvature not in ("ggn", "ef"):
    raise ValueError(f"curvature must be 'ggn' or 'ef', got {curvature!r}")
  if int(chunk_size) < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
  subset = curvature_lib.make_subset(params, subset_of_weights)
  structure = curvature_lib.STRUCTURES[hessian_structure](subset, rank)
  spec = LaplaceSpec(apply_fn, likelihood, curvature, structure, subset,
                     int(chunk_size))
  # Jitted pieces (inlined when the caller traces fit/predict itself).
  curv_fn = jax.jit(lambda flat, theta, x, y: structure.fit(
      apply_fn, subset, flat, theta, x, y, likelihood, curvature,
      spec.chunk_size))
  loss_fn = jax.jit(lambda params, x, y: _data_loss(spec, params, x, y))
  gnorm_fn = jax.jit(lambda state, params, x, y: map_gradient_norm(
      spec, state, params, x, y))
  opt_fn = jax.jit(
      lambda state, init, **kw: marglik_lib.optimize_prior_precision(
          spec, state, init_prior_prec=init, **kw),
      static_argnames=("prior_structure", "fit_noise", "n_steps", "lr",
                       "newton_steps"))
  sample_fn = jax.jit(lambda state, key, n: predictive_lib.sample_params(
      spec, state, key, n), static_argnums=2)
  predict_fn = jax.jit(
      lambda state, x, key, **kw: predictive_lib.predict(spec, state, x,
                                                         key=key, **kw),
      static_argnames=("pred_type", "link_approx", "n_samples",
                       "chunk_size"))

  def fit(params, x, y, prior_precision=1.0, sigma_noise=1.0, damping=0.0,
          temperature=1.0, map_gradient_tol=1e-1):
    """Curvature at the MAP ``params`` on data ``x [N, ...]``, ``y [N]``.

    Outside jit it also checks the arguments and warns when the MAP is not
    converged: ``map_gradient_norm > map_gradient_tol``.

    Raises:
      ValueError: prior precision or noise <= 0, shape mismatch, or a
        curvature that is not positive semi-definite after ``damping``.
    """
    if _concrete(prior_precision, sigma_noise, damping):
      if np.any(np.asarray(prior_precision) <= 0):
        raise ValueError("prior_precision must be > 0, got "
                         f"{np.asarray(prior_precision)}")
      if np.any(np.asarray(sigma_noise) <= 0):
        raise ValueError(f"sigma_noise must be > 0, got {sigma_noise}")
    if np.shape(x)[0] != np.shape(y)[0]:
      raise ValueError(f"x has {np.shape(x)[0]} examples but y has "
                       f"{np.shape(y)[0]}")
    flat, _ = ravel_pytree(params)
    if flat.size != subset.num_params:
      raise ValueError(f"params has {flat.size} weights; the approximation "
                       f"was built for {subset.num_params}")
    theta = flat[subset.idx]
    curv = curv_fn(flat, theta, x, y)
    loss, nk = loss_fn(params, x, y)
    dtype = flat.dtype
    prior = jnp.asarray(prior_precision, dtype)
    state = LaplaceState(
        flat, theta, curv, prior.reshape((1,)) if prior.ndim == 0 else prior,
        jnp.asarray(sigma_noise, dtype), jnp.asarray(damping, dtype),
        jnp.asarray(temperature, dtype), loss, nk)
    marglik_lib.expand_prior(spec, state.prior_precision)   # shape check
    if _concrete(state):
      _check_psd(structure, state)
    if _concrete(state) and np.isfinite(map_gradient_tol):
      gnorm = float(gnorm_fn(state, params, x, y))
      if gnorm > map_gradient_tol:
        warnings.warn(
            f"Laplace.fit: the MAP is not converged: gradient norm of the "
            f"negative log joint per example {gnorm:.3g} > map_gradient_tol="
            f"{map_gradient_tol:g} (train longer, or the prior/noise differ "
            "from those of training)", RuntimeWarning, stacklevel=2)
    return state

  def log_marginal_likelihood(state, prior_precision=None, sigma_noise=None):
    if prior_precision is not None and _concrete(prior_precision) and \
        np.any(np.asarray(prior_precision) <= 0):
      raise ValueError("prior_precision must be > 0, got "
                       f"{np.asarray(prior_precision)}")
    return marglik_lib.log_marginal_likelihood(spec, state, prior_precision,
                                               sigma_noise)

  def optimize_prior_precision(state, prior_structure="scalar",
                               fit_noise=False, n_steps=100, lr=1e-1,
                               newton_steps=0, init_prior_prec=None):
    """See ``marglik.optimize_prior_precision``; jitted."""
    marglik_lib.prior_shape(spec, prior_structure)        # name check
    if fit_noise and likelihood != "regression":
      raise ValueError("fit_noise=True needs likelihood='regression', got "
                       f"{likelihood!r}")
    return opt_fn(state, init_prior_prec, prior_structure=prior_structure,
                  fit_noise=bool(fit_noise), n_steps=int(n_steps),
                  lr=float(lr), newton_steps=int(newton_steps))

  def predict(state, x, pred_type="glm", link_approx="probit",
              n_samples=100, key=None, chunk_size=None):
    """See ``predictive.predict``; jitted, chunked over ``x``."""
    predictive_lib.check_args(spec, pred_type, link_approx, key)
    return predict_fn(state, x, key, pred_type=pred_type,
                      link_approx=link_approx, n_samples=int(n_samples),
                      chunk_size=int(chunk_size or spec.chunk_size))

  def sample(state, key, n_samples=100):
    """``n_samples`` weight pytrees from the posterior (leading axis)."""
    return sample_fn(state, key, int(n_samples))

  def posterior_precision(state):
    """Dense ``[P, P]`` posterior precision (tests, small problems)."""
    delta = marglik_lib.expand_prior(spec, state.prior_precision)
    s = marglik_lib.curvature_factor(spec, state.sigma_noise,
                                     state.temperature)
    h = structure.dense(state.curv)
    return s * (h + state.damping * jnp.eye(h.shape[0], dtype=h.dtype)) + \
        jnp.diag(delta)

  return LaplaceApproximation(spec, fit, log_marginal_likelihood,
                              optimize_prior_precision, predict, sample,
                              posterior_precision)


def _check_psd(structure, state):
  """Raises ValueError when ``H + damping I`` has a negative eigenvalue."""
  low = float(structure.min_eig(state.curv))
  scale = max(1.0, float(np.abs(np.asarray(jax.tree.leaves(state.curv)[0]))
                         .max()))
  tol = 1e3 * np.finfo(np.asarray(state.theta).dtype).eps * scale
  if low + float(state.damping) < -tol:
    raise ValueError(
        "curvature is not positive semi-definite: smallest eigenvalue "
        f"{low:.3g} + damping {float(state.damping):.3g} < 0; use damping >= "
        "0 (the GGN and empirical Fisher are PSD)")
