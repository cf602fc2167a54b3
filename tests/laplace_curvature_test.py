"""Curvature structures against dense references built in the test.

Oracles: ``J`` from ``jax.jacobian`` of the whole batch and the output
Hessian ``Lambda_n`` from ``jax.hessian`` of the negative log-likelihood
(independent of the closed forms in ``curvature.output_sqrt``); per-example
gradients from ``jax.grad`` for the empirical Fisher; KFAC factors from
their definition with hand-written back-propagation through a tanh MLP.
Float64 throughout (``jax.enable_x64``); tolerance ``1e3 * eps(float64)``
relative to the largest entry.
"""
import re

import flax.linen as nn
import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxbdl.nn import networks
from jaxbdl.bayes.laplace import curvature
from jaxbdl.bayes.laplace import kron as kron_lib

RTOL = 1e3 * np.finfo(np.float64).eps


def _nll(likelihood, f, y):
  """Per-example negative log-likelihood (unit-noise Gaussian)."""
  if likelihood == "regression":
    return 0.5 * jnp.sum((f - y) ** 2)
  if likelihood == "classification":
    return -jax.nn.log_softmax(f)[y]
  return -(y * jax.nn.log_sigmoid(f[0]) + (1 - y) * jax.nn.log_sigmoid(-f[0]))


def _problem(likelihood, n=9, k=3):
  net = networks.MLP((4, k), activation="tanh")
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(n, 2)))
  if likelihood == "regression":
    y = jnp.asarray(rng.normal(size=(n, k)))
  elif likelihood == "classification":
    y = jnp.asarray(rng.integers(0, k, size=n))
  else:
    y = jnp.asarray((rng.random(n) < 0.5).astype(np.float64))
  params = jax.tree.map(lambda a: a.astype(jnp.float64),
                        jax.jit(net.init)(jax.random.key(2), x)["params"])
  return (lambda p, xx: net.apply({"params": p}, xx)), params, x, y


def _reference(apply_fn, params, x, y, likelihood, curv):
  flat, unravel = ravel_pytree(params)
  f = apply_fn(params, x)
  jac = jax.jacobian(lambda t: apply_fn(unravel(t), x))(flat)     # [N, K, P]
  if curv == "ggn":
    lam = jax.vmap(jax.hessian(lambda fn, yn: _nll(likelihood, fn, yn)))(f, y)
    return jnp.einsum("nkp,nkl,nlq->pq", jac, lam, jac)
  grads = jax.vmap(lambda xn, yn: jax.grad(
      lambda t: _nll(likelihood, apply_fn(unravel(t), xn[None])[0], yn))(
          flat))(x, y)
  return grads.T @ grads


def _fit_vs_reference(structure, apply_fn, params, x, y, likelihood,
                      subset="all", chunk=4):
  """``(structure.dense(fit), dense GGN reference)`` in one compiled program."""
  sub = curvature.make_subset(params, subset)
  st = curvature.STRUCTURES[structure](sub, sub.idx.size)

  @jax.jit
  def run(params, x, y):
    fl, _ = ravel_pytree(params)
    c = st.fit(apply_fn, sub, fl, fl[sub.idx], x, y, likelihood, "ggn", chunk)
    return st.dense(c), _reference(apply_fn, params, x, y, likelihood, "ggn")
  return run(params, x, y)


CASES = (("regression", 2), ("classification", 3), ("binary", 1))


def test_full_and_diag_equal_dense_reference():
  """GGN and empirical Fisher, full and diagonal, for the three likelihoods
  (one compiled program: compile time dominates these tiny problems)."""
  with jax.enable_x64(True):
    problems = {lik: _problem(lik, k=k) for lik, k in CASES}
    full, diag = curvature.full(), curvature.diag()

    @jax.jit
    def everything(args):
      out = {}
      for lik, (params, x, y) in args.items():
        apply_fn = problems[lik][0]
        flat, _ = ravel_pytree(params)
        sub = curvature.make_subset(params, "all")
        # The empirical Fisher's code path is shared; one likelihood suffices.
        for curv in ("ggn", "ef") if lik == "classification" else ("ggn",):
          out[lik, curv] = _reference(apply_fn, params, x, y, lik, curv)
          # chunk 4 does not divide N = 9: the padded chunk must not count.
          out[lik, curv, "full"], out[lik, curv, "eig"] = full.fit(
              apply_fn, sub, flat, flat, x, y, lik, curv, 4)
          out[lik, curv, "eig_ref"] = jnp.linalg.eigvalsh(out[lik, curv])
          out[lik, curv, "diag"] = diag.fit(apply_fn, sub, flat, flat, x, y,
                                            lik, curv, 4)
      return out
    out = everything({lik: pr[1:] for lik, pr in problems.items()})
    for lik, _ in CASES:
      for curv in ("ggn", "ef") if lik == "classification" else ("ggn",):
        ref = out[lik, curv]
        tol = RTOL * float(jnp.abs(ref).max())
        np.testing.assert_allclose(out[lik, curv, "full"], ref, atol=tol,
                                   err_msg=f"{lik} {curv} full")
        np.testing.assert_allclose(out[lik, curv, "eig"],
                                   out[lik, curv, "eig_ref"], atol=tol,
                                   err_msg=f"{lik} {curv} eigenvalues")
        np.testing.assert_allclose(out[lik, curv, "diag"], jnp.diag(ref),
                                   atol=tol, err_msg=f"{lik} {curv} diag")


def test_subsets_are_blocks_of_the_dense_reference():
  with jax.enable_x64(True):
    apply_fn, params, x, y = _problem("classification")
    flat, _ = ravel_pytree(params)
    # A random mask over all leaves (a subnetwork) and the last layer.
    rng = np.random.default_rng(0)
    mask = jax.tree.map(lambda a: rng.random(a.shape) < 0.5, params)
    subs = [curvature.make_subset(params, s) for s in ("last_layer", mask)]
    st = curvature.full()

    @jax.jit
    def run(params, x, y):
      fl, _ = ravel_pytree(params)
      ref = _reference(apply_fn, params, x, y, "classification", "ggn")
      return ref, [st.fit(apply_fn, sub, fl, fl[sub.idx], x, y,
                          "classification", "ggn", 4)[0] for sub in subs]
    ref, hs = run(params, x, y)
    for sub, h in zip(subs, hs):
      np.testing.assert_allclose(h, ref[np.ix_(sub.idx, sub.idx)],
                                 atol=RTOL * float(jnp.abs(ref).max()))
    # last layer = the output Dense of the MLP.
    assert [seg[0] for seg in subs[0].segments] == ["Dense_1/bias",
                                                    "Dense_1/kernel"]
    assert subs[1].idx.size == int(sum(np.sum(m) for m in
                                       jax.tree.leaves(mask)))
    assert flat.size == subs[0].num_params


def test_kfac_factors_match_their_definition():
  """KFAC blocks = kron(A, G) from hand-made inputs and back-propagated G."""
  with jax.enable_x64(True):
    apply_fn, params, x, y = _problem("classification")
    flat, _ = ravel_pytree(params)
    sub = curvature.make_subset(params, "all")
    st = curvature.kron(sub)

    @jax.jit
    def run(params, x, y):
      w0, b0 = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
      w1 = params["Dense_1"]["kernel"]
      n = x.shape[0]
      h = jnp.tanh(x @ w0 + b0[None])                               # [N, 4]
      f = apply_fn(params, x)
      lam = jax.vmap(jax.hessian(lambda fn, yn: _nll("classification", fn,
                                                     yn)))(f, y)  # [N, K, K]
      # d f / d s0 = W1^T diag(1 - h^2): G0 = sum_n B_n^T Lambda_n B_n.
      bmat = jnp.einsum("ok,no->nko", w1, 1 - h ** 2)           # [N, K, 4]
      g0 = jnp.einsum("nko,nkl,nlp->op", bmat, lam, bmat)
      g1 = jnp.sum(lam, axis=0)
      want = {"Dense_0/kernel": jnp.kron(x.T @ x / n, g0),
              "Dense_0/bias": g0,
              "Dense_1/kernel": jnp.kron(h.T @ h / n, g1), "Dense_1/bias": g1}
      c = st.fit(apply_fn, sub, flat, flat, x, y, "classification", "ggn", 4)
      return want, st.dense(c)
    want, dense = run(params, x, y)
    for name, start, size, _, _ in sub.segments:
      blk = dense[start:start + size, start:start + size]
      np.testing.assert_allclose(blk, want[name],
                                 atol=RTOL * float(jnp.abs(want[name]).max()))
    # Cross blocks are dropped.
    s0, s1 = sub.segments[0], sub.segments[1]
    assert float(jnp.abs(dense[s0[1]:s0[1] + s0[2],
                               s1[1]:s1[1] + s1[2]]).max()) == 0.0


def test_kfac_is_exact_for_one_linear_layer():
  with jax.enable_x64(True):
    net = nn.Dense(3, use_bias=False)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(11, 4)))
    y = jnp.asarray(rng.normal(size=(11, 3)))
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          jax.jit(net.init)(jax.random.key(2), x)["params"])
    apply_fn = lambda p, xx: net.apply({"params": p}, xx)  # noqa: E731
    h, ref = _fit_vs_reference("kron", apply_fn, params, x, y, "regression")
    np.testing.assert_allclose(h, ref,
                               atol=RTOL * float(jnp.abs(ref).max()))


def _count_primitive(jaxpr, name):
  """Equations of primitive ``name`` in ``jaxpr`` and, recursively, in the
  jaxprs of its equations (each call site counted)."""
  n = 0
  for eqn in jaxpr.eqns:
    n += eqn.primitive.name == name
    for v in eqn.params.values():
      for sub in v if isinstance(v, (tuple, list)) else (v,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          n += _count_primitive(sub.jaxpr, name)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          n += _count_primitive(sub, name)
  return n


def test_kron_fit_under_vmap_has_one_eigendecomposition():
  """Regression (UCI energy, ``laplace_kfac``, 20 vmapped splits: the run
  deadlocked at 0 % CPU on 2 cores). Under ``vmap`` every ``eigh`` is a
  batched LAPACK call that jaxlib's CPU kernel splits over XLA's intra-op
  thread pool and then waits for; one independent call per KFAC factor (6
  for a 2-layer MLP) let every pool thread wait on pieces queued behind the
  others. The fit must issue ONE eigendecomposition for all factors (jaxpr
  and, on CPU, the compiled program's LAPACK custom calls), and the
  batched fit must equal the per-split fits."""
  with jax.enable_x64(True):
    apply_fn, params, x, y = _problem("regression", k=1)   # 2 -> 4 -> 1
    sub = curvature.make_subset(params, "all")
    st = curvature.kron(sub)
    flat, _ = ravel_pytree(params)
    rng = np.random.default_rng(5)
    xs = jnp.stack([x, x[::-1], jnp.asarray(rng.normal(size=x.shape))])
    ys = jnp.stack([y, y[::-1], jnp.asarray(rng.normal(size=y.shape))])

    def fit(xx, yy):        # chunk 4 does not divide N = 9
      return st.dense(st.fit(apply_fn, sub, flat, flat, xx, yy, "regression",
                             "ggn", 4))
    batched = jax.vmap(fit)
    jaxpr = jax.make_jaxpr(batched)(xs, ys)
    assert _count_primitive(jaxpr.jaxpr, "eigh") == 1
    if jax.default_backend() == "cpu":
      hlo = jax.jit(batched).lower(xs, ys).compile().as_text()
      calls = re.findall(r'custom_call_target="([^"]*)"', hlo)
      assert len([c for c in calls if "syev" in c]) == 1, calls
      got = jax.jit(batched)(xs, ys)
      for i in range(xs.shape[0]):
        want = jax.jit(fit)(xs[i], ys[i])
        np.testing.assert_allclose(got[i], want, atol=RTOL * float(
            jnp.abs(want).max()))


def test_eigh_stacked_matches_separate_eigendecompositions():
  """Padding to one size keeps each matrix's eigenpairs: sizes 1..6, a zero
  matrix, a rank-1 one and one of scale 1e-12 (the padding is relative)."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(6)
    mats = []
    for k, scale in ((3, 1.0), (6, 1.0), (1, 2.0), (4, 1e-12)):
      b = rng.normal(size=(k, k + 2))
      mats.append(jnp.asarray(scale * b @ b.T))
    mats.append(jnp.zeros((2, 2)))
    v = rng.normal(size=(5,))
    mats.append(jnp.asarray(np.outer(v, v)))
    out = jax.jit(kron_lib._eigh_stacked)(mats)
    for m, (lam, q) in zip(mats, out):
      k = m.shape[0]
      scale = max(float(jnp.abs(m).max()), np.finfo(np.float64).tiny)
      assert lam.shape == (k,) and q.shape == (k, k)
      np.testing.assert_allclose(lam, jnp.linalg.eigvalsh(m),
                                 atol=RTOL * scale)
      np.testing.assert_allclose(q.T @ q, jnp.eye(k), atol=RTOL)
      np.testing.assert_allclose((q * lam[None]) @ q.T, m, atol=RTOL * scale)


def test_lowrank_full_rank_equals_dense():
  with jax.enable_x64(True):
    net = nn.Dense(2)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(7, 3)))
    y = jnp.asarray(rng.normal(size=(7, 2)))
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          jax.jit(net.init)(jax.random.key(2), x)["params"])
    apply_fn = lambda p, xx: net.apply({"params": p}, xx)  # noqa: E731
    h, ref = _fit_vs_reference("lowrank", apply_fn, params, x, y,
                               "regression")
    np.testing.assert_allclose(h, ref,
                               atol=RTOL * float(jnp.abs(ref).max()))


@pytest.mark.parametrize("subset,match", [
    ("first_layer", "subset_of_weights must be"),
    ({"Dense_0": True}, "structure of params"),
])
def test_bad_subset(subset, match):
  net = networks.MLP((4, 1))
  params = jax.eval_shape(net.init, jax.random.key(0),
                          jnp.zeros((1, 2)))["params"]
  with pytest.raises(ValueError, match=match):
    curvature.make_subset(params, subset)


def test_kron_rejects_partial_leaf_masks():
  with jax.enable_x64(True):
    apply_fn, params, x, y = _problem("binary", k=1)
    mask = jax.tree.map(lambda a: np.arange(a.size).reshape(a.shape) % 2 == 0,
                        params)
    with pytest.raises(ValueError, match="kron.*whole nn.Dense"):
      _fit_vs_reference("kron", apply_fn, params, x, y, "binary", mask)


# KFAC for convolutions (KFC, Grosse & Martens 2016) ---------------------------


def test_kfac_conv_with_one_output_location_is_exact():
  """A VALID conv whose kernel covers the image has T = 1 output location:
  it is a Dense layer on the flattened patch, and KFAC of one bias-free
  layer with a Gaussian likelihood is the exact GGN (``sum_n a a^T (x) I``).
  The dense reference also pins the patch ordering against the kernel's
  row-major flattening."""
  with jax.enable_x64(True):
    net = nn.Conv(3, (3, 3), padding="VALID", use_bias=False)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(7, 3, 3, 2)))
    y = jnp.asarray(rng.normal(size=(7, 3)))
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          jax.jit(net.init)(jax.random.key(2), x)["params"])
    apply_fn = lambda p, xx: net.apply({"params": p}, xx).reshape(  # noqa: E731
        xx.shape[0], -1)
    h, ref = _fit_vs_reference("kron", apply_fn, params, x, y, "regression")
    np.testing.assert_allclose(h, ref, atol=RTOL * float(jnp.abs(ref).max()))


class _TinyCNN(nn.Module):
  @nn.compact
  def __call__(self, x, conv_out=None):
    s = nn.Conv(2, (2, 2), strides=(1, 2), padding="SAME", name="conv")(x)
    if conv_out is not None:      # the reference differentiates through s
      s = conv_out
    h = jnp.tanh(s).reshape((x.shape[0], -1))
    return nn.Dense(3, name="head")(h)


def test_kfac_conv_factors_match_their_definition():
  """Conv blocks against the KFC definition (``_kron_fit``'s docstring)
  computed independently: the patches ``a_nt`` as the Jacobian of the conv
  output ``s_nt`` in the kernel (``ds_nto / dW[:, o] = a_nt``), the signals
  ``d_nt = (df_n / ds_nt)^T L_n`` from ``jax.jacobian`` of the network in
  ``s`` and ``L_n L_n^T = Lambda_n`` from ``jax.hessian`` of the NLL.
  The conv-bias block is exact: it equals the dense GGN's bias block."""
  with jax.enable_x64(True):
    net = _TinyCNN()
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(5, 4, 4, 2)))
    y = jnp.asarray(rng.integers(0, 3, size=5))
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          jax.jit(net.init)(jax.random.key(5), x)["params"])
    apply_fn = lambda p, xx: net.apply({"params": p}, xx)  # noqa: E731
    sub = curvature.make_subset(params, "all")
    st = curvature.kron(sub)

    @jax.jit
    def run(params, x, y):
      conv = nn.Conv(2, (2, 2), strides=(1, 2), padding="SAME")
      cp = params["conv"]
      s = conv.apply({"params": cp}, x)                      # [N, 4, 2, 2]
      n, t = x.shape[0], s.shape[1] * s.shape[2]
      # a: d s[n, t, o=0] / d kernel[..., o=0] -> [N, T, 2*2*2].
      js = jax.jacobian(lambda k: conv.apply(
          {"params": {"kernel": k, "bias": cp["bias"]}}, x))(cp["kernel"])
      a = js[..., 0, :, :, :, 0].reshape(n, t, -1)
      f = apply_fn(params, x)
      lam = jax.vmap(jax.hessian(lambda fn, yn: _nll("classification", fn,
                                                     yn)))(f, y)
      evals, evecs = jnp.linalg.eigh(lam)
      sqrt_lam = evecs * jnp.sqrt(jnp.clip(evals, 0.0))[:, None, :]
      jf = jax.vmap(lambda xn, sn: jax.jacobian(
          lambda z: net.apply({"params": params}, xn[None], z[None])[0])(sn)
          )(x, s).reshape(n, 3, t, 2)                        # [N, K, T, O]
      d = jnp.einsum("nkto,nkj->njto", jf, sqrt_lam)
      a_ref = jnp.einsum("nti,ntj->ij", a, a) / n
      g_ref = jnp.einsum("njto,njtp->op", d, d) / t
      db = d.sum(2)
      want = {"conv/kernel": jnp.kron(a_ref, g_ref),
              "conv/bias": jnp.einsum("njo,njp->op", db, db)}
      fl, _ = ravel_pytree(params)
      c = st.fit(apply_fn, sub, fl, fl, x, y, "classification", "ggn", 2)
      return want, st.dense(c), _reference(apply_fn, params, x, y,
                                           "classification", "ggn")
    want, dense, ref = run(params, x, y)
    for name, start, size, _, _ in sub.segments:
      if name in want:
        blk = dense[start:start + size, start:start + size]
        np.testing.assert_allclose(blk, want[name], atol=RTOL * float(
            jnp.abs(want[name]).max()))
    _, start, size, _, _ = [s for s in sub.segments if s[0] == "conv/bias"][0]
    np.testing.assert_allclose(
        dense[start:start + size, start:start + size],
        ref[start:start + size, start:start + size],
        atol=RTOL * float(jnp.abs(ref).max()))
