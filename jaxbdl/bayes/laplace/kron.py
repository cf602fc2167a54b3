"""KFAC: the Kronecker-factored curvature structure, for Dense and Conv.

Per Flax ``nn.Dense`` kernel ``[I, O]``: ``H_kernel ~= A (x) G`` with
``A = (1/N) sum_n a_n a_n^T [I, I]`` (layer inputs) and
``G = sum_n sum_k' d_nk' d_nk'^T [O, O]`` (``d = (dF/ds)^T C_n``, the
back-propagated square-root factor at the layer's output ``s``, see
``factors.output_sqrt``); the bias block is ``G`` (exact). Per ``nn.Conv``
kernel the KFC factors over output locations (see ``_kron_fit``). Blocks are
per leaf (kernel, bias), as in laplace-torch's ``"kron"``; cross-layer and
kernel-bias terms are dropped. Exact for one Dense layer without bias and a
Gaussian likelihood. Layer inputs and signals are read with
``nn.intercept_methods``, so models need no changes.

References:
  Martens & Grosse (2015), *Optimizing neural networks with
  Kronecker-factored approximate curvature*, Eq. 1-2 (KFAC). Grosse &
  Martens (2016), *A Kronecker-factored approximate Fisher matrix for
  convolution layers*, Eq. 14-17 (KFC). Ritter, Botev & Barber (2018), *A
  scalable Laplace approximation for neural networks*.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.bayes.laplace.factors import _chunked, output_sqrt
from jaxbdl.bayes.laplace.structure import Structure
from jaxbdl.bayes.laplace.subsets import Subset

__all__ = ["kron"]


def _layer_records(apply_fn, params, x, perts):
  """Runs ``apply_fn`` with every ``nn.Dense`` / ``nn.Conv`` output shifted.

  Returns ``(f, records)``; ``records[path] = (module, input, output)``;
  ``perts`` maps ``path -> zeros`` of the layer's output shape (their
  gradient is the back-propagated signal at the layer output). With
  ``perts=None`` the layers are only recorded.
  """
  records = {}

  def interceptor(next_fun, args, kwargs, context):
    if not (isinstance(context.module, (nn.Dense, nn.Conv))
            and context.method_name == "__call__"):
      return next_fun(*args, **kwargs)
    path = "/".join(context.module.scope.path)
    out = next_fun(*args, **kwargs)
    if perts is not None and path in perts:
      out = out + perts[path]
    records[path] = (context.module, args[0], out)
    return out
  with nn.intercept_methods(interceptor):
    f = apply_fn(params, x)
  return f, records


def _conv_patches(module, inputs):
  """Input patches of a Flax ``nn.Conv``: ``[B, T, I]`` with ``T`` output
  locations and ``I = prod(kernel_size) * C_in`` ordered as the kernel's
  leading axes ``[*kernel_size, C_in]`` (so ``kron(A, G)`` matches the
  row-major flattening of the kernel ``[*kernel_size, C_in, C_out]``)."""
  ks = tuple(module.kernel_size)
  nd = len(ks)
  spatial = "DHW"[-nd:] if nd <= 3 else None
  if spatial is None:
    raise ValueError(f"kron: conv {module.name!r} has {nd} spatial dims (<= 3)")
  as_tuple = lambda v: (1,) * nd if v is None else (
      (int(v),) * nd if isinstance(v, int) else tuple(int(u) for u in v))
  padding = module.padding
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"kron: conv {module.name!r} padding {padding!r} is "
                       "not supported (use SAME, VALID or explicit pairs)")
    padding = padding.upper()
  elif isinstance(padding, int):
    padding = [(padding, padding)] * nd
  else:
    padding = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
  p = jax.lax.conv_general_dilated_patches(
      inputs, ks, as_tuple(module.strides), padding,
      rhs_dilation=as_tuple(module.kernel_dilation),
      dimension_numbers=("N" + spatial + "C", "OI" + spatial,
                         "N" + spatial + "C"))      # [B, *out, C_in * prod(ks)]
  b, c = inputs.shape[0], inputs.shape[-1]
  p = p.reshape((b, -1, c) + ks)                    # [B, T, C_in, *ks]
  p = jnp.moveaxis(p, 2, -1)                        # [B, T, *ks, C_in]
  return p.reshape((b, p.shape[1], -1))


def _check_conv(name, module, inputs):
  if module.feature_group_count != 1 or _as_one(module.input_dilation) != 1:
    raise ValueError(f"kron: conv {name!r} with feature groups or input "
                     "dilation is not supported (use 'diag' or 'full')")
  if inputs.ndim != len(module.kernel_size) + 2:
    raise ValueError(f"kron: conv {name!r} input must be batched [B, ..., C],"
                     f" got {inputs.shape}")


def _as_one(v):
  """1 when ``v`` is None, 1 or all ones (a dilation), else ``v``."""
  if v is None:
    return 1
  vals = (v,) if isinstance(v, int) else tuple(v)
  return 1 if all(int(u) == 1 for u in vals) else v


def _kron_fit(apply_fn, subset, flat_map, theta_s, x, y, likelihood,
              curvature, chunk_size, **unused):
  """KFAC factors per Dense / Conv kernel and exact bias blocks.

  Dense (Martens & Grosse 2015): ``A = (1/N) sum_n a_n a_n^T``, ``G = sum_n
  sum_k' d d^T``. Conv (KFC, Grosse & Martens 2016, Eq. 14-17 in the
  "expand" form): with the patches ``a_nt`` and signals ``d_nt`` at output
  locations ``t = 1..T``, ``A = (1/N) sum_n sum_t a_nt a_nt^T`` and
  ``G = (1/T) sum_n sum_t sum_k' d_nt d_nt^T`` (spatially uncorrelated
  derivatives, independent of the activations); for ``T = 1`` this is the
  Dense case. Bias blocks are exact: ``sum_n sum_k' (sum_t d_nt)(sum_t
  d_nt)^T``.
  """
  del unused
  params = subset.expand(flat_map, theta_s)
  # Which Dense / Conv modules own which selected leaves.
  # One traced pass on one example: the modules, their input / output shapes.
  _, shapes = _layer_records(apply_fn, params, x[:1], None)
  plan = []
  for name, _, size, shape, whole in subset.segments:
    mod, _, leaf = name.rpartition("/")
    if mod not in shapes or leaf not in ("kernel", "bias") or not whole:
      raise ValueError(
          f"hessian_structure='kron' needs whole nn.Dense / nn.Conv kernels "
          f"or biases; selected leaf {name!r} is not one (use 'diag' or "
          "'full')")
    module = shapes[mod][0]
    if isinstance(module, nn.Conv):
      _check_conv(mod, module, shapes[mod][1])
    else:
      if leaf == "kernel" and len(shape) != 2:
        raise ValueError(f"kron: Dense kernel {name!r} must be 2-D, got "
                         f"{shape}")
      if len(shapes[mod][1].shape) != 2:
        raise ValueError(f"kron: Dense {mod!r} input must be [B, I], got "
                         f"{shapes[mod][1].shape}")
    plan.append((mod, leaf))
  mods = sorted({m for m, _ in plan})
  is_conv = {m: isinstance(shapes[m][0], nn.Conv) for m in mods}
  locs = {m: int(np.prod(shapes[m][2].shape[1:-1], dtype=int)) for m in mods}

  def chunk(xc, yc, wc):
    def fwd(perts):
      f, rec = _layer_records(apply_fn, params, xc, perts)
      return f, {m: rec[m][1] for m in mods}
    zeros = {m: jnp.zeros((xc.shape[0],) + shapes[m][2].shape[1:],
                          theta_s.dtype) for m in mods}
    f, vjp, inputs = jax.vjp(fwd, zeros, has_aux=True)
    c = output_sqrt(likelihood, curvature, f, yc) * \
        jnp.sqrt(wc)[:, None, None]                           # [B, K, K']
    d = jax.vmap(lambda ck: vjp(ck)[0], in_axes=2)(c)          # m -> [K', B, ..., O]
    out = {}
    for m in mods:
      if is_conv[m]:
        a = _conv_patches(shapes[m][0], inputs[m])          # [B, T, I]
      else:
        a = inputs[m][:, None, :]
      a = a * jnp.sqrt(wc)[:, None, None]
      dm = d[m].reshape(d[m].shape[:2] + (-1, d[m].shape[-1]))   # [K', B, T, O]
      db = jnp.sum(dm, axis=2)                                # [K', B, O]
      out[m] = (jnp.einsum("bti,btj->ij", a, a),
                jnp.einsum("kbto,kbtp->op", dm, dm),
                jnp.einsum("kbo,kbp->op", db, db))
    return out

  w = jnp.ones((x.shape[0],), theta_s.dtype)
  sums = _chunked(chunk, x, y, w, chunk_size)
  n = x.shape[0]
  factors = []                  # kernel: A, G; bias: G (in plan order)
  for (mod, leaf) in plan:
    a_sum, g_sum, gb_sum = sums[mod]
    factors += ([a_sum / n, g_sum / locs[mod]] if leaf == "kernel"
                else [gb_sum])
  eigs = iter(_eigh_stacked(factors))
  blocks = []
  for (_, leaf) in plan:
    if leaf == "kernel":
      (la, qa), (lg, qg) = next(eigs), next(eigs)
    else:
      lg, qg = next(eigs)
      la, qa = jnp.ones((1,), lg.dtype), jnp.ones((1, 1), lg.dtype)
    blocks.append((jnp.clip(la, 0.0), qa, jnp.clip(lg, 0.0), qg))
  return tuple(blocks)


def _eigh_stacked(mats):
  """``[(lambda [k], Q [k, k])]`` (ascending) of symmetric matrices ``[k, k]``
  of any sizes from ONE batched ``jnp.linalg.eigh``.

  Why one call: under ``vmap`` (the UCI protocol vmaps every method over its
  splits) each ``eigh`` is a batched LAPACK call, and jaxlib 0.10's CPU
  kernels split a batch over XLA's intra-op thread pool and block until the
  pieces are done. Independent calls (one per KFAC factor) start together,
  and once as many of them hold pool threads as the pool has threads (2 on a
  2-core machine), each waits for pieces queued behind the others: the
  program deadlocks at 0 % CPU (``laplace_kfac`` on UCI energy, 20 splits).
  A single call holds at most one pool thread; the others run its pieces.

  A matrix ``M`` smaller than the largest size ``d`` is padded to
  ``diag(M, -c I)`` with ``c = 2 |M|_inf + tiny > |lambda(M)|`` (``|.|_inf``,
  the largest absolute row sum, bounds every eigenvalue), so its ``d - k``
  padding eigenvalues come first and its own eigenpairs are the last ``k``
  (eigenvectors: the first ``k`` rows; the padding block is separated by a
  gap ``>= |M|_inf``, so they stay in ``M``'s coordinates to rounding).
  """
  d = max(int(m.shape[-1]) for m in mats)
  dtype = jnp.result_type(*mats)
  padded = []
  for m in mats:
    m = m.astype(dtype)
    k = int(m.shape[-1])
    if k < d:
      c = 2.0 * jnp.max(jnp.sum(jnp.abs(m), axis=-1)) + jnp.finfo(dtype).tiny
      m = jnp.zeros((d, d), dtype).at[:k, :k].set(m).at[k:, k:].set(
          -c * jnp.eye(d - k, dtype=dtype))
    padded.append(m)
  lam, q = jnp.linalg.eigh(jnp.stack(padded))       # [L, d], [L, d, d]
  return [(lam[i, d - int(m.shape[-1]):],
           q[i, :int(m.shape[-1]), d - int(m.shape[-1]):])
          for i, m in enumerate(mats)]


def _kron_blocks(curv, subset, delta):
  """Per block ``(la, qa, lg, qg, start, size, delta_block)``."""
  for (la, qa, lg, qg), (_, start, size, _, _) in zip(curv, subset.segments):
    yield la, qa, lg, qg, start, size, delta[start]


def kron(subset: Subset) -> Structure:
  """KFAC (block-diagonal per leaf, Kronecker-factored kernels).

  Stored as eigendecompositions ``(lambda_A, Q_A, lambda_G, Q_G)`` per leaf
  (``lambda_A = [1]`` for a bias; all factors from one ``eigh`` call, see
  ``_eigh_stacked``), so log det, solves and samples with a scalar or
  per-leaf prior precision are exact functions of the factors.
  """
  def eig(la, lg, s, d):
    return s * la[:, None] * lg[None, :] + d            # [I, O]

  def rot(v, qa, qg, start, size):
    vb = v[..., start:start + size].reshape(v.shape[:-1] +
                                            (qa.shape[0], qg.shape[0]))
    return jnp.einsum("ia,...ij,jb->...ab", qa, vb, qg)

  def logdet(curv, s, delta):
    return sum(jnp.sum(jnp.log(eig(la, lg, s, d)))
               for la, qa, lg, qg, st, sz, d in _kron_blocks(curv, subset,
                                                             delta))

  def quad(curv, s, delta, v):
    tot = 0.0
    for la, qa, lg, qg, st, sz, d in _kron_blocks(curv, subset, delta):
      r = rot(v, qa, qg, st, sz)                         # [K, I, O]
      tot = tot + jnp.einsum("kab,lab->kl", r / eig(la, lg, s, d)[None], r)
    return tot

  def sample(curv, s, delta, z):
    parts = []
    for la, qa, lg, qg, st, sz, d in _kron_blocks(curv, subset, delta):
      zb = z[st:st + sz].reshape(qa.shape[0], qg.shape[0])
      parts.append((qa @ (zb / jnp.sqrt(eig(la, lg, s, d))) @ qg.T).reshape(-1))
    return jnp.concatenate(parts)

  def dense(curv):
    p = sum(sz for _, _, sz, _, _ in subset.segments)
    h = jnp.zeros((p, p), curv[0][1].dtype)
    for (la, qa, lg, qg), (_, st, sz, _, _) in zip(curv, subset.segments):
      a = (qa * la[None, :]) @ qa.T
      g = (qg * lg[None, :]) @ qg.T
      h = h.at[st:st + sz, st:st + sz].set(jnp.kron(a, g))
    return h
  def min_eig(curv):
    return min(jnp.min(la) * jnp.min(lg) for la, _, lg, _ in curv)
  return Structure("kron", _kron_fit, logdet, quad, sample, dense, min_eig,
                   False)
