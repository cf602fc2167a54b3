"""Curvature of the negative log-likelihood at a MAP solution, in structures.

The Laplace approximation replaces the posterior by ``N(theta_MAP, P^-1)``
with the posterior precision ``P = s * H + diag(delta)``: ``H`` the
curvature of the data term at ``theta_MAP`` (computed once, at unit scale),
``s`` the likelihood's curvature factor (``1 / sigma^2`` for Gaussian
regression, ``1`` for classification) and ``delta`` the prior precision.

Curvatures (per example ``n``, outputs ``f_n = f(x_n; theta) [K]``,
Jacobian ``J_n = d f_n / d theta [K, P]``):

* GGN (generalised Gauss-Newton, the Fisher of an exponential family):
  ``H = sum_n J_n^T L_n L_n^T J_n`` with ``Lambda_n = L_n L_n^T`` the Hessian of
  ``-log p(y_n | f)`` in ``f``: Gaussian ``I_K`` (unit noise), categorical
  ``diag(p) - p p^T`` with ``L = diag(sqrt p) - p sqrt(p)^T``, Bernoulli
  ``p (1 - p)``.
* Empirical Fisher: ``H = sum_n g_n g_n^T``, ``g_n = J_n^T r_n`` and ``r_n``
  the gradient of ``-log p(y_n | f)`` in ``f`` (unit noise for Gaussian).

Both are ``H = sum_n V_n V_n^T`` with a per-example square-root factor
``V_n = J_n^T C_n [P, K']`` (``C_n = L_n`` or ``r_n``); every structure is
built from those per-example pieces, ``vmap``-ed over the examples and
accumulated over chunks of the data with ``lax.scan`` (bounded memory).

Structures (a :class:`Structure` is a NamedTuple of pure functions, so adding
one is a new factory plus one line in :data:`STRUCTURES`):

* ``full``: ``H [P, P]`` (and its eigenvalues).
* ``diag``: ``diag(H) [P]``.
* ``kron`` (KFAC; Martens & Grosse 2015, Ritter et al. 2018; KFC for
  ``nn.Conv``, Grosse & Martens 2016, see ``kron._kron_fit``): per Flax
  ``nn.Dense`` kernel ``[I, O]``: ``H_kernel ~= A (x) G`` with
  ``A = (1/N) sum_n a_n a_n^T [I, I]`` (layer inputs) and
  ``G = sum_n sum_k' d_nk' d_nk'^T [O, O]`` (``d = (dF/ds)^T C_n``, the
  back-propagated square-root factor at the layer's output ``s``); the
  bias block is ``G`` (exact). Blocks are per leaf (kernel, bias), as in
  laplace-torch's ``"kron"``; cross-layer and kernel-bias terms are dropped.
  Exact for one Dense layer without bias and a Gaussian likelihood.
* ``lowrank``: the top-``rank`` eigenpairs of the dense ``H`` (small nets).

Weights: all, the last layer, or a subnetwork given as a boolean mask pytree
(:func:`make_subset`); the Laplace approximation is then over the selected
weights only, the others fixed at their MAP values.

Modules: this one holds the ``full``, ``diag`` and ``lowrank`` structures,
:data:`STRUCTURES` and :func:`dense_ggn`, and re-exports the public names of
``subsets`` (:class:`Subset`, :func:`make_subset`, :func:`last_layer_mask`),
``factors`` (:data:`LIKELIHOODS`, :func:`output_sqrt`,
:func:`per_example_factors`), ``structure`` (:class:`Structure`) and
``kron`` (:func:`kron`), so ``curvature.NAME`` reaches all of them.

References:
  MacKay (1992), *A practical Bayesian framework for backpropagation
  networks*. Martens & Grosse (2015), *Optimizing neural networks with
  Kronecker-factored approximate curvature*, Eq. 1-2 (KFAC). Ritter, Botev &
  Barber (2018), *A scalable Laplace approximation for neural networks*.
  Daxberger et al. (2021), *Laplace Redux*, Sec. 2 and Table 1 (structures).
  Kunstner, Hennig & Balles (2019), *Limitations of the empirical Fisher*.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxbdl.bayes.laplace.factors import (LIKELIHOODS, _chunked, output_sqrt,
                                          per_example_factors)
from jaxbdl.bayes.laplace.kron import kron
from jaxbdl.bayes.laplace.structure import Structure
from jaxbdl.bayes.laplace.subsets import Subset, last_layer_mask, make_subset

__all__ = [
    "Subset", "make_subset", "last_layer_mask", "Structure", "STRUCTURES",
    "full", "diag", "kron", "lowrank", "output_sqrt", "per_example_factors",
    "dense_ggn", "LIKELIHOODS",
]


def _gram_fit(reduce):
  """A fit function accumulating ``reduce(V [B, K', P])`` over the data."""
  def fit(apply_fn, subset, flat_map, theta_s, x, y, likelihood, curvature,
          chunk_size, **unused):
    del unused

    def chunk(xc, yc, wc):
      _, v = per_example_factors(apply_fn, subset, flat_map, theta_s, xc, yc,
                                 likelihood, curvature)
      return reduce(v * jnp.sqrt(wc)[:, None, None].astype(v.dtype))
    w = jnp.ones((x.shape[0],), theta_s.dtype)
    return _chunked(chunk, x, y, w, chunk_size)
  return fit


def full() -> Structure:
  """Dense ``H [P, P]`` and its eigenvalues ``[P]``; Cholesky for solves and
  samples, the eigenvalues for the log det under a scalar prior (no
  factorisation per evidence step: XLA's CPU triangular solves, which the
  gradient of a Cholesky log det needs, cost ~50x the factorisation).

  The eigenvalues are Rayleigh quotients ``|V q_i|^2`` (a second pass over
  the data) for the eigenvectors ``q_i`` of ``H``: ``eigh(H)``'s own small
  eigenvalues carry an absolute error ``eps |H|`` (``~1e-3`` in float32 on
  the sinusoid example, where the prior precision is ``0.1``), whereas
  ``|V q|^2`` is accurate to ``(eps |V|)^2``.
  """
  gram = _gram_fit(lambda v: jnp.einsum("nkp,nkq->pq", v, v))

  def fit(apply_fn, subset, flat_map, theta_s, x, y, likelihood, curvature,
          chunk_size, **unused):
    del unused
    h = gram(apply_fn, subset, flat_map, theta_s, x, y, likelihood,
             curvature, chunk_size)
    _, q = jnp.linalg.eigh(h)

    def chunk(xc, yc, wc):
      _, v = per_example_factors(apply_fn, subset, flat_map, theta_s, xc, yc,
                                 likelihood, curvature)
      vq = jnp.einsum("nkp,pq->nkq", v, q.astype(v.dtype))
      return jnp.einsum("nkq,n->q", vq * vq, wc.astype(v.dtype))
    lam = _chunked(chunk, x, y, jnp.ones((x.shape[0],), h.dtype), chunk_size)
    return h, jnp.sort(lam)

  def chol(curv, s, delta):
    return jnp.linalg.cholesky(s * curv[0] + jnp.diag(delta))

  def logdet(curv, s, delta):
    return 2.0 * jnp.sum(jnp.log(jnp.diag(chol(curv, s, delta))))

  def logdet_iso(curv, s, delta):
    return jnp.sum(jnp.log(s * curv[1] + delta))

  def quad(curv, s, delta, v):
    w = jax.scipy.linalg.solve_triangular(chol(curv, s, delta), v.T,
                                          lower=True)
    return w.T @ w

  def sample(curv, s, delta, z):
    return jax.scipy.linalg.solve_triangular(chol(curv, s, delta).T, z,
                                             lower=False)
  return Structure("full", fit, logdet, quad, sample, lambda c: c[0],
                   lambda c: c[1][0], True, logdet_iso)


def diag() -> Structure:
  """``diag(H) [P]``: independent Gaussians per weight."""
  def prec(h, s, delta):
    return s * h + delta
  return Structure(
      "diag", _gram_fit(lambda v: jnp.sum(v * v, axis=(0, 1))),
      lambda h, s, d: jnp.sum(jnp.log(prec(h, s, d))),
      lambda h, s, d, v: (v / prec(h, s, d)[None]) @ v.T,
      lambda h, s, d, z: z / jnp.sqrt(prec(h, s, d)),
      jnp.diag, jnp.min, True)


def lowrank(rank: int) -> Structure:
  """``H ~= U diag(l) U^T`` from the top-``rank`` eigenpairs of the dense GGN.

  Woodbury identities give log det and solves with any diagonal prior
  precision ``D``: ``prec^-1 = D^-1 - D^-1 U (diag(1/(s l)) + U^T D^-1 U)^-1
  U^T D^-1``. The dense ``H`` is formed once (small nets only).
  """
  if int(rank) < 1:
    raise ValueError(f"lowrank rank must be >= 1, got {rank}")
  dense_fit = full().fit

  def fit(*args, **kwargs):
    h, _ = dense_fit(*args, **kwargs)
    lam, q = jnp.linalg.eigh(h)
    k = min(int(rank), lam.shape[0])
    return jnp.clip(lam[-k:], 0.0), q[:, -k:]

  def inner(curv, s, d):
    lam, u = curv
    lam = jnp.maximum(s * lam, jnp.finfo(u.dtype).tiny)
    return jnp.diag(1.0 / lam) + (u.T / d[None]) @ u, lam

  def logdet(curv, s, d):
    lam, u = curv
    m, lam_s = inner(curv, s, d)
    return (jnp.sum(jnp.log(d)) + jnp.sum(jnp.log(lam_s))
            + jnp.linalg.slogdet(m)[1])

  def quad(curv, s, d, v):
    lam, u = curv
    m, _ = inner(curv, s, d)
    vd = v / d[None]
    w = vd @ u
    return vd @ v.T - w @ jnp.linalg.solve(m, w.T)

  def dense(curv):
    lam, u = curv
    return (u * lam[None, :]) @ u.T
  def min_eig(curv):
    lam, u = curv
    return jnp.where(lam.size < u.shape[0], 0.0, jnp.min(lam))
  return Structure("lowrank", fit, logdet, quad, None, dense, min_eig, True)


STRUCTURES = {
    "full": lambda subset, rank: full(),
    "diag": lambda subset, rank: diag(),
    "kron": lambda subset, rank: kron(subset),
    "lowrank": lambda subset, rank: lowrank(rank),
}


def dense_ggn(apply_fn, params, x, y, likelihood, curvature="ggn"):
  """Reference ``H [P, P]`` over all weights from one ``jax.jacobian`` call.

  ``J [N, K, P]`` of the whole batch (no vmap, no chunks), for tests.
  """
  flat, unravel = ravel_pytree(params)
  f = apply_fn(params, x)
  jac = jax.jacobian(lambda t: apply_fn(unravel(t), x))(flat)
  c = output_sqrt(likelihood, curvature, f, y)
  v = jnp.einsum("nkp,nkj->njp", jac, c)
  return jnp.einsum("njp,njq->pq", v, v)
