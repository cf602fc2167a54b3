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
  ``nn.Conv``, Grosse & Martens 2016, see ``_kron_fit``): per Flax
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

References:
  MacKay (1992), *A practical Bayesian framework for backpropagation
  networks*. Martens & Grosse (2015), *Optimizing neural networks with
  Kronecker-factored approximate curvature*, Eq. 1-2 (KFAC). Ritter, Botev &
  Barber (2018), *A scalable Laplace approximation for neural networks*.
  Daxberger et al. (2021), *Laplace Redux*, Sec. 2 and Table 1 (structures).
  Kunstner, Hennig & Balles (2019), *Limitations of the empirical Fisher*.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = [
    "Subset", "make_subset", "last_layer_mask", "Structure", "STRUCTURES",
    "full", "diag", "kron", "lowrank", "output_sqrt", "per_example_factors",
    "dense_ggn", "LIKELIHOODS",
]

PyTree = Any
# Likelihood kinds (laplace-torch's names) and their number of curvature
# factors K' per example (``None``: K' = K).
LIKELIHOODS = ("regression", "classification", "binary")


# ----------------------------------------------------------------- subsets ---

class Subset(NamedTuple):
  """The selected weights as a flat vector ``theta_s [P_s]`` (static data).

  Attributes:
    idx: ``[P_s]`` int indices into ``ravel_pytree(params)``.
    unravel: flat ``[P]`` -> params pytree.
    num_params: ``P`` (all weights).
    segments: per selected leaf ``(name, start, size, shape, full)``: its
      slice ``[start, start + size)`` of ``theta_s``; ``full`` is True when the
      whole leaf is selected (needed by ``kron``).
  """
  idx: np.ndarray
  unravel: Callable
  num_params: int
  segments: tuple

  def expand(self, flat_map: jax.Array, theta_s: jax.Array) -> PyTree:
    """Params pytree with ``theta_s`` written into the MAP vector ``flat_map``."""
    return self.unravel(flat_map.at[self.idx].set(theta_s))


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def last_layer_mask(params: PyTree) -> PyTree:
  """Boolean mask selecting the last top-level submodule's weights.

  "Last" is the last key in the insertion order of the (nested) dict, which
  for Flax is the order modules were created (the output layer of
  ``jaxbdl.nn.networks.MLP`` and ``CNN``). Nested dicts are followed while the
  last entry is itself a dict whose values are dicts.
  """
  if not isinstance(params, dict) or not params:
    raise ValueError("last_layer_mask needs a non-empty dict of params, got "
                     f"{type(params).__name__}")
  node = params
  chain = []
  while isinstance(node, dict) and node:
    key = list(node.keys())[-1]
    chain.append(key)
    node = node[key]
    if not (isinstance(node, dict) and node and
            all(isinstance(v, dict) for v in node.values())):
      break

  def mark(tree, depth):
    out = {}
    for k, v in tree.items():
      if depth < len(chain) and k == chain[depth]:
        out[k] = (jax.tree.map(lambda _: True, v) if depth == len(chain) - 1
                  else mark(v, depth + 1))
      else:
        out[k] = jax.tree.map(lambda _: False, v)
    return out
  return mark(params, 0)


def make_subset(params: PyTree, subset_of_weights: Any = "all") -> Subset:
  """Builds the :class:`Subset` for ``"all"``, ``"last_layer"`` or a mask.

  Args:
    params: the parameter pytree (only shapes and structure are read).
    subset_of_weights: ``"all"``, ``"last_layer"``, or a pytree of booleans
      (one per leaf, or an array per leaf of the leaf's shape) with the
      structure of ``params``.

  Raises:
    ValueError: unknown string, mask structure/shape mismatch, or an empty
      selection.
  """
  # Only shapes and dtypes are read (params may be traced or abstract).
  flat, unravel = ravel_pytree(jax.tree.map(
      lambda a: np.zeros(np.shape(a), a.dtype), params))
  if isinstance(subset_of_weights, str):
    if subset_of_weights == "all":
      mask = jax.tree.map(lambda _: True, params)
    elif subset_of_weights == "last_layer":
      mask = last_layer_mask(params)
    else:
      raise ValueError("subset_of_weights must be 'all', 'last_layer' or a "
                       f"boolean mask pytree, got {subset_of_weights!r}")
  else:
    mask = subset_of_weights
  leaves_p, treedef = jax.tree_util.tree_flatten_with_path(params)
  try:
    leaves_m = treedef.flatten_up_to(mask)
  except (ValueError, TypeError) as e:
    raise ValueError("subset_of_weights mask must have the structure of "
                     f"params: {e}") from None
  sel, segments, start, offset = [], [], 0, 0
  for (path, leaf), m in zip(leaves_p, leaves_m):
    shape = tuple(np.shape(leaf))
    size = int(np.prod(shape, dtype=int))
    m = np.broadcast_to(np.asarray(m, dtype=bool), shape) if np.ndim(m) == 0 \
        else np.asarray(m, dtype=bool)
    if m.shape != shape:
      raise ValueError(f"subset_of_weights mask for {_path_name(path)} has "
                       f"shape {m.shape}, the leaf has {shape}")
    local = np.nonzero(m.reshape(-1))[0]
    if local.size:
      sel.append(offset + local)
      segments.append((_path_name(path), start, int(local.size), shape,
                       bool(local.size == size)))
      start += int(local.size)
    offset += size
  if not sel:
    raise ValueError("subset_of_weights selects no weights")
  return Subset(np.concatenate(sel), unravel, int(flat.size), tuple(segments))


# ------------------------------------------------- per-example square roots ---

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


# --------------------------------------------------------------- structures ---

class Structure(NamedTuple):
  """A curvature structure: pure functions of the fitted curvature ``curv``.

  ``prec`` below is the posterior precision ``s * H + diag(delta)`` with the
  curvature factor ``s`` (scalar) and the prior precision ``delta [P_s]``.

  Attributes:
    name: e.g. ``"full"``.
    fit: ``(apply_fn, subset, flat_map, theta_s, x, y, likelihood, curvature,
      chunk_size) -> curv`` (a pytree).
    logdet: ``(curv, s, delta [P_s]) -> log det prec``.
    quad: ``(curv, s, delta, V [K, P_s]) -> V prec^-1 V^T [K, K]``.
    sample: ``(curv, s, delta, z [P_s]) -> prec^-1/2 z [P_s]`` (a draw of
      ``N(0, prec^-1)`` for ``z ~ N(0, I)``), or None if unsupported.
    dense: ``(curv) -> H [P_s, P_s]`` (tests and small problems).
    min_eig: ``(curv) -> scalar``, a lower bound of the smallest eigenvalue
      of ``H`` (exact for full, diag, kron; 0 for a rank-deficient lowrank).
    diagonal_prior: whether a per-weight prior precision is supported.
    logdet_iso: ``(curv, s, delta_scalar) -> log det prec`` for a prior
      precision shared by all weights (cheaper), or None to use ``logdet``.
  """
  name: str
  fit: Callable
  logdet: Callable
  quad: Callable
  sample: Callable | None
  dense: Callable
  min_eig: Callable
  diagonal_prior: bool
  logdet_iso: Callable | None = None


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


# KFAC --------------------------------------------------------------------------

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
  blocks = []
  for (mod, leaf) in plan:
    a_sum, g_sum, gb_sum = sums[mod]
    if leaf == "kernel":
      la, qa = jnp.linalg.eigh(a_sum / n)
      lg, qg = jnp.linalg.eigh(g_sum / locs[mod])
      blocks.append((jnp.clip(la, 0.0), qa, jnp.clip(lg, 0.0), qg))
    else:
      lg, qg = jnp.linalg.eigh(gb_sum)
      blocks.append((jnp.ones((1,), lg.dtype), jnp.ones((1, 1), lg.dtype),
                     jnp.clip(lg, 0.0), qg))
  return tuple(blocks)


def _kron_blocks(curv, subset, delta):
  """Per block ``(la, qa, lg, qg, start, size, delta_block)``."""
  for (la, qa, lg, qg), (_, start, size, _, _) in zip(curv, subset.segments):
    yield la, qa, lg, qg, start, size, delta[start]


def kron(subset: Subset) -> Structure:
  """KFAC (block-diagonal per leaf, Kronecker-factored kernels).

  Stored as eigendecompositions ``(lambda_A, Q_A, lambda_G, Q_G)`` per leaf
  (``lambda_A = [1]`` for a bias), so log det, solves and samples with a
  scalar or per-leaf prior precision are exact functions of the factors.
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
