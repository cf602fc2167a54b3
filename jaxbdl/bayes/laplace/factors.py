"""Per-example square-root factors of the curvature, accumulated in chunks.

Per example ``n`` (outputs ``f_n = f(x_n; theta) [K]``, Jacobian
``J_n = d f_n / d theta [K, P]``) the GGN and the empirical Fisher are both
``H = sum_n V_n V_n^T`` with ``V_n = J_n^T C_n [P, K']``:

* GGN: ``C_n = L_n`` with ``Lambda_n = L_n L_n^T`` the Hessian of
  ``-log p(y_n | f)`` in ``f``: Gaussian ``I_K`` (unit noise), categorical
  ``diag(p) - p p^T`` with ``L = diag(sqrt p) - p sqrt(p)^T``, Bernoulli
  ``p (1 - p)``.
* Empirical Fisher: ``C_n = r_n`` (``K' = 1``), the gradient of
  ``-log p(y_n | f)`` in ``f`` (unit noise for Gaussian).

Every curvature structure is built from these pieces, ``vmap``-ed over the
examples and accumulated over chunks of the data with ``lax.scan``
(``_chunked``; bounded memory).

References:
  Martens & Grosse (2015), *Optimizing neural networks with
  Kronecker-factored approximate curvature*, Eq. 1-2. Kunstner, Hennig &
  Balles (2019), *Limitations of the empirical Fisher*.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbdl.bayes.laplace.subsets import Subset

__all__ = ["LIKELIHOODS", "output_sqrt", "per_example_factors"]

# Likelihood kinds (laplace-torch's names) and their number of curvature
# factors K' per example (``None``: K' = K).
LIKELIHOODS = ("regression", "classification", "binary")


def output_sqrt(likelihood: str, curvature: str, f: jax.Array,
                y: jax.Array) -> jax.Array:
  """Square-root factor ``C_n [N, K, K']`` of the output curvature (unit noise).

  GGN: ``C C^T = Lambda`` (Hessian of ``-log p`` in ``f``); EF: ``C = r``
  (``[N, K, 1]``, the gradient of ``-log p`` in ``f``).

  Args:
    likelihood: one of :data:`LIKELIHOODS`.
    curvature: ``"ggn"`` or ``"ef"``.
    f: outputs ``[N, K]``.
    y: targets ``[N]`` (regression ``[N]`` or ``[N, K]``; class indices).
  """
  n, k = f.shape
  if likelihood == "regression":
    if curvature == "ggn":
      return jnp.broadcast_to(jnp.eye(k, dtype=f.dtype), (n, k, k))
    return (f - y.reshape(n, -1).astype(f.dtype))[:, :, None]
  if likelihood == "classification":
    p = jax.nn.softmax(f, axis=-1)
    if curvature == "ggn":
      sp = jnp.sqrt(p)
      return (jax.vmap(jnp.diag)(sp) - p[:, :, None] * sp[:, None, :])
    onehot = jax.nn.one_hot(y, k, dtype=f.dtype)
    return (p - onehot)[:, :, None]
  if likelihood == "binary":
    p = jax.nn.sigmoid(f)
    if curvature == "ggn":
      return jnp.sqrt(p * (1 - p))[:, :, None]
    return (p - y.reshape(n, 1).astype(f.dtype))[:, :, None]
  raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


def per_example_factors(apply_fn, subset: Subset, flat_map: jax.Array,
                        theta_s: jax.Array, x: jax.Array, y: jax.Array,
                        likelihood: str, curvature: str):
  """Outputs ``f [B, K]`` and ``V_n = J_n^T C_n`` as ``[B, K', P_s]``.

  ``J_n`` comes from ``jax.jacrev`` of the one-example network, ``vmap``-ed
  over the batch.
  """
  def one(xn):
    g = lambda t: apply_fn(subset.expand(flat_map, t), xn[None])[0]
    return g(theta_s), jax.jacrev(g)(theta_s)
  f, jac = jax.vmap(one)(x)                      # [B, K], [B, K, P_s]
  c = output_sqrt(likelihood, curvature, f, y)   # [B, K, K']
  return f, jnp.einsum("nkp,nkj->njp", jac, c)


def _chunked(fn, x, y, w, chunk_size, init=None):
  """``sum_chunks fn(x_c, y_c, w_c)`` with ``lax.scan``; pads the last chunk
  (weight 0). ``init`` defaults to zeros of ``fn``'s output shapes."""
  n = x.shape[0]
  b = int(min(chunk_size, n))
  num = -(-n // b)
  pad = num * b - n

  def padded(a):
    return jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], 0) if pad \
        else a
  xs = padded(x).reshape((num, b) + x.shape[1:])
  ys = padded(y).reshape((num, b) + y.shape[1:])
  ws = jnp.concatenate([w, jnp.zeros((pad,), w.dtype)]).reshape(num, b) \
      if pad else w.reshape(num, b)

  if init is None:
    init = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                        jax.eval_shape(fn, xs[0], ys[0], ws[0]))

  def body(acc, batch):
    out = fn(*batch)
    return jax.tree.map(jnp.add, acc, out), None
  acc, _ = jax.lax.scan(body, init, (xs, ys, ws))
  return acc
