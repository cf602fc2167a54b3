"""Tests for jaxbdl.gaussian_processes.nngp: analytic NNGP kernels vs random finite networks.

Monte Carlo checks: for each kernel entry, the mean over S independent random
nets of the empirical (readout-integrated) kernel has standard error
SE = std_s / sqrt(S), computed here from the samples. We assert
|mean - analytic| < K_SE * SE with K_SE = 5: for ~100 entries across all cases
and Student-t(S - 1 = 63) errors, the family-wise false-alarm rate is ~1e-3.
For depth 2 the finite-width bias of the empirical kernel is O(1/width); at
width 512 and S = 64 it is ~sqrt(S / width) ~ 0.35 SE-units, inside the budget.
"""
import math

import jax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbdl.gaussian_processes import nngp
from tests.helpers import tol

K_SE = 5.0
N_POINTS, DIM = 6, 4  # one input shape everywhere: fewer distinct compilations
# Random nets use the "rbg" PRNG: same Gaussian law, much cheaper to compile.
SIGMA_W2, SIGMA_B2 = 1.7, 0.3
# Deterministic float32 maths through a few layers of arccos/arcsin.
_TOL32 = dict(rtol=2e-5, atol=2e-6)


def _inputs(seed=0):
  return np.random.default_rng(seed).normal(size=(N_POINTS, DIM)).astype(
      np.float32)


# Jitted once per (depth, activation); value checks run on traced args as no-ops.
_kernel = jax.jit(nngp.nngp_kernel, static_argnames=("depth", "activation"))
_kernel_diag = jax.jit(nngp.nngp_kernel_diag,
                       static_argnames=("depth", "activation"))


def _numpy_nngp(x1, x2, depth, sw2, sb2, activation):
  """Independent float64 NumPy version of the recursion (Lee et al. 2018, Eq. 4)."""
  x1 = np.asarray(x1, np.float64)
  x2 = np.asarray(x2, np.float64)
  d = x1.shape[1]
  k12 = sb2 + sw2 * x1 @ x2.T / d
  k11 = sb2 + sw2 * np.sum(x1 ** 2, 1) / d
  k22 = sb2 + sw2 * np.sum(x2 ** 2, 1) / d
  for _ in range(depth):
    if activation == "relu":
      norm = np.sqrt(np.outer(k11, k22))
      theta = np.arccos(np.clip(k12 / norm, -1, 1))
      e12 = norm / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
      e11, e22 = k11 / 2, k22 / 2
    elif activation == "erf":
      f = lambda a, b, c: 2 / np.pi * np.arcsin(2 * c / np.sqrt((1 + 2 * a) * (1 + 2 * b)))
      e12 = f(k11[:, None], k22[None, :], k12)
      e11, e22 = f(k11, k11, k11), f(k22, k22, k22)
    else:
      e12, e11, e22 = k12, k11, k22
    k12, k11, k22 = sb2 + sw2 * e12, sb2 + sw2 * e11, sb2 + sw2 * e22
  return k12


# relu depth 1 is covered at the output level by the readout test below.
# The depth-2 erf and identity cases repeat the depth-2 relu check at ~35 s of
# compile each on CI's 2 cores: they run with `-m experiment`.
CASES = [("relu", 2), ("erf", 1),
         pytest.param("erf", 2, marks=pytest.mark.experiment),
         pytest.param("identity", 2, marks=pytest.mark.experiment)]
CASE_IDS = ["relu_depth2", "erf_depth1", "erf_depth2", "identity_depth2"]


@pytest.mark.parametrize("activation,depth", CASES, ids=CASE_IDS)
def test_analytic_matches_monte_carlo_of_random_nets(activation, depth):
  x = _inputs()
  num_inits = 64
  samples = nngp.sample_empirical_kernels(
      jax.random.key(depth, impl="rbg"), x, num_inits=num_inits, depth=depth,
      width=512,
      sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, activation=activation)
  samples = np.asarray(samples, np.float64)                    # [S, N, N]
  mean = samples.mean(0)
  se = samples.std(0, ddof=1) / math.sqrt(num_inits)
  analytic = np.asarray(_kernel(x, x, depth=depth, sigma_w2=SIGMA_W2,
                                 sigma_b2=SIGMA_B2, activation=activation),
                         np.float64)
  # identity/depth-1 diagonal-free entries have SE > 0; guard the division.
  z = np.abs(mean - analytic) / np.maximum(se, 1e-12)
  assert z.max() < K_SE, (z.max(), mean, analytic)
  # And the MC check has power: the SE is small against the kernel's scale.
  assert se.max() < 0.05 * np.abs(analytic).max()


def test_random_net_outputs_have_nngp_covariance():
  """Output-level check (exercises the readout init): E[f(x) f(x')] = K^1.

  Per init, average f_o(x) f_o(x') over 64 readout units (these share the
  hidden layer, so we treat the per-init average as one sample); SE over 64
  inits. Depth 1 has no finite-width bias, so K_SE applies exactly.
  """
  x = _inputs()
  model = nngp.RandomMLP(depth=1, width=256, sigma_w2=SIGMA_W2,
                         sigma_b2=SIGMA_B2, activation="relu", out_features=64)

  @jax.jit
  def per_init(key):
    f = model.apply(model.init(key, x), x)                      # [N, O]
    return f @ f.T / f.shape[1]

  samples = np.asarray(jax.vmap(per_init)(
      jax.random.split(jax.random.key(7, impl="rbg"), 64)), np.float64)
  mean = samples.mean(0)
  se = samples.std(0, ddof=1) / math.sqrt(samples.shape[0])
  analytic = np.asarray(_kernel(x, x, depth=1, sigma_w2=SIGMA_W2,
                                 sigma_b2=SIGMA_B2, activation="relu"))
  assert np.max(np.abs(mean - analytic) / se) < K_SE


@pytest.mark.parametrize("activation", nngp.ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 3])
def test_matches_numpy_recursion_and_is_symmetric_psd(activation, depth):
  x, x2 = _inputs(), _inputs(seed=1)
  kw = dict(depth=depth, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2,
            activation=activation)
  got = _kernel(x, x2, **kw)
  assert got.shape == (N_POINTS, N_POINTS)
  np.testing.assert_allclose(
      got, _numpy_nngp(x, x2, depth, SIGMA_W2, SIGMA_B2, activation),
      **_TOL32)
  k = np.asarray(_kernel(x, x, **kw), np.float64)
  np.testing.assert_allclose(k, k.T, **_TOL32)
  assert np.linalg.eigvalsh(k).min() >= -1e-5 * np.abs(k).max()
  np.testing.assert_allclose(_kernel_diag(x, **kw), np.diag(k), **_TOL32)


def test_relu_closed_form_at_angles_zero_and_pi():
  """theta = 0: E[relu(u)^2] = K11 / 2; theta = pi: E[relu(u) relu(-u)] = 0;
  a generic angle against Cho & Saul (2009), Eq. 6."""
  x = _inputs()
  # Rows 0..2 of x2 make angles 0, pi and 1 rad with the rows of x.
  angle = 1.0
  ortho = _inputs(seed=2)
  ortho -= np.sum(ortho * x, 1, keepdims=True) / np.sum(x * x, 1,
                                                         keepdims=True) * x
  ortho *= np.linalg.norm(x, axis=1, keepdims=True) / np.linalg.norm(
      ortho, axis=1, keepdims=True)
  rotated = (math.cos(angle) * x + math.sin(angle) * ortho).astype(np.float32)
  kw = dict(depth=1, sigma_w2=SIGMA_W2, sigma_b2=0.0, activation="relu")
  k0 = SIGMA_W2 * np.sum(x.astype(np.float64) ** 2, 1) / DIM   # K^0(x, x)
  same = np.diag(np.asarray(_kernel(x, x, **kw)))
  np.testing.assert_allclose(same, SIGMA_W2 * k0 / 2, **_TOL32)
  opposite = np.diag(np.asarray(_kernel(x, -x, **kw)))
  np.testing.assert_allclose(opposite, 0.0, atol=1e-6)
  generic = np.diag(np.asarray(_kernel(x, rotated, **kw)))
  j = math.sin(angle) + (math.pi - angle) * math.cos(angle)
  np.testing.assert_allclose(generic, SIGMA_W2 * k0 / (2 * math.pi) * j,
                             rtol=1e-4)


@pytest.mark.parametrize("activation,sigma_b2", [("relu", 0.0), ("erf", 0.3)],
                         ids=["relu_no_bias", "erf_bias"])
def test_gradients_through_the_diagonal_match_finite_differences(activation,
                                                                 sigma_b2):
  """d/d(sigma_w2, sigma_b2) of sum K(x, x) (arccos at c = 1 on the
  diagonal) equals float64 finite differences of the same kernel: central in
  sigma_w2, second-order one-sided in sigma_b2 (it may sit at its bound 0);
  both O(h^2) ~ 1e-10 relative at h = 1e-5. The float32 gradient sums 36
  entries of a depth-3 recursion, a few roundings each (observed: 2 ulps):
  64 ulps of float32, relative. The diagonal path's gradient is the same."""
  x = _inputs()
  kw = dict(depth=3, activation=activation)

  @jax.jit
  @jax.jacrev
  def grads(params):
    sw2, sb2 = params
    k = nngp.nngp_kernel(x, x, sigma_w2=sw2, sigma_b2=sb2, **kw)
    diag_only = nngp.nngp_kernel_diag(x, sigma_w2=sw2, sigma_b2=sb2, **kw)
    return jnp.stack([jnp.sum(jnp.diag(k)), jnp.sum(diag_only), jnp.sum(k)])

  g = np.asarray(grads(jnp.array([SIGMA_W2, sigma_b2], jnp.float32)),
                 np.float64)  # [3, 2]
  h = 1e-5
  with jax.enable_x64(True):
    x64 = jnp.asarray(x, jnp.float64)

    def f(sw2, sb2):
      k = nngp.nngp_kernel(x64, x64, sigma_w2=sw2, sigma_b2=sb2, **kw)
      return np.array([float(jnp.sum(jnp.diag(k))), float(jnp.sum(k))])

    fd_w = (f(SIGMA_W2 + h, sigma_b2) - f(SIGMA_W2 - h, sigma_b2)) / (2 * h)
    fd_b = (-3 * f(SIGMA_W2, sigma_b2) + 4 * f(SIGMA_W2, sigma_b2 + h)
            - f(SIGMA_W2, sigma_b2 + 2 * h)) / (2 * h)
  fd = np.stack([fd_w, fd_b], axis=1)  # [2 (diag, all), 2 (w, b)]
  np.testing.assert_allclose(g[[0, 2]], fd, **tol(np.float32, ulps=64))
  # Through arccos on the diagonal (c = 1) the gradient equals the diag path's.
  np.testing.assert_allclose(g[0], g[1], rtol=1e-4)


@pytest.mark.parametrize("call,match", [
    (lambda x: nngp.nngp_kernel(x, x[:, :2], 1), "feature dimension mismatch"),
    (lambda x: nngp.nngp_kernel(x, x, -1), "depth"),
    (lambda x: nngp.nngp_kernel(x, x, 1.5), "depth must be a Python int"),
    (lambda x: nngp.nngp_kernel(x, x, 1, -1.0, 0.0), "sigma_w2"),
    (lambda x: nngp.nngp_kernel(x, x, 1, 1.0, -0.1), "sigma_b2"),
    (lambda x: nngp.nngp_kernel(x, x, 1, activation="tanh"), "unknown activation"),
    (lambda x: nngp.nngp_kernel_diag(x[0], 1), "2-D"),
    (lambda x: nngp.nngp_kernel(x * np.nan, x, 1), "NaN"),
    (lambda x: nngp.make_kernel_fn(-2), "depth"),
], ids=["dim_mismatch", "negative_depth", "float_depth", "negative_sigma_w2",
        "negative_sigma_b2", "unknown_activation", "diag_not_2d", "nan",
        "factory_depth"])
def test_bad_inputs_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call(_inputs())


# ----------------------------------------------------------------------------
# Neural tangent kernel.


def _numpy_ntk(x1, x2, depth, sw2, sb2, activation):
  """Independent float64 NumPy NTK recursion (Arora et al. 2019, Eqs. 10-11)."""
  x1 = np.asarray(x1, np.float64)
  x2 = np.asarray(x2, np.float64)
  d = x1.shape[1]
  k12 = sb2 + sw2 * x1 @ x2.T / d
  k11 = sb2 + sw2 * np.sum(x1 ** 2, 1) / d
  k22 = sb2 + sw2 * np.sum(x2 ** 2, 1) / d
  theta = k12.copy()
  for layer in range(depth):
    a, b = k11[:, None], k22[None, :]
    if activation == "relu":
      ang = np.arccos(np.clip(k12 / np.sqrt(a * b), -1, 1))
      kdot = (np.pi - ang) / (2 * np.pi)
    elif activation == "erf":
      kdot = 4 / np.pi / np.sqrt((1 + 2 * a) * (1 + 2 * b) - 4 * k12 ** 2)
    else:
      kdot = np.ones_like(k12)
    k12_next = _numpy_nngp(x1, x2, layer + 1, sw2, sb2, activation)
    theta = k12_next + sw2 * kdot * theta
    k12 = k12_next
    k11 = np.diag(_numpy_nngp(x1, x1, layer + 1, sw2, sb2, activation))
    k22 = np.diag(_numpy_nngp(x2, x2, layer + 1, sw2, sb2, activation))
  return theta


_ntk = jax.jit(nngp.ntk_kernel, static_argnames=("depth", "activation"))


@pytest.mark.parametrize("activation", nngp.ACTIVATIONS)
def test_ntk_matches_numpy_recursion(activation):
  x, x2 = _inputs(), _inputs(seed=1)
  kw = dict(sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, activation=activation)
  got = _ntk(x, x2, depth=2, **kw)
  np.testing.assert_allclose(got, _numpy_ntk(x, x2, 2, SIGMA_W2, SIGMA_B2,
                                             activation), **_TOL32)
  # Depth 0: the NTK of a linear readout is the linear NNGP kernel.
  np.testing.assert_allclose(_ntk(x, x2, depth=0, **kw),
                             _kernel(x, x2, depth=0, **kw), **_TOL32)


def test_empirical_ntk_of_flax_dense_is_exact_and_chunking_invariant():
  """f(x) = x.w + b (nn.Dense, 2 outputs): J J^T = x1.x2^T + 1 per output."""
  x1, x2 = _inputs(), _inputs(seed=1)[:4]
  model = nn.Dense(2)
  params = model.init(jax.random.key(0), x1)["params"]
  apply = lambda p, x: model.apply({"params": p}, x)
  want = x1.astype(np.float64) @ x2.T + 1.0
  for chunk in (None, 4):     # 4 does not divide 6: exercises the padding
    np.testing.assert_allclose(nngp.empirical_ntk(apply, params, x1, x2,
                                                  chunk_size=chunk),
                               want, **_TOL32)


WIDTHS = (64, 256, 1024)


def test_empirical_ntk_converges_to_analytic_at_rate_width_to_minus_half():
  """Mean |Theta_emp - Theta| over entries and 8 inits per width; the fitted
  log-log slope must be -1/2 within +-0.2 (an O(1/width) bias would give
  ~-1, no convergence ~0), and the widest error below 10% of the kernel."""
  x = _inputs()
  analytic = np.asarray(_ntk(x, x, depth=1, sigma_w2=SIGMA_W2,
                             sigma_b2=SIGMA_B2, activation="relu"))
  errors = []
  for width in WIDTHS:
    model = nngp.NTKMLP(depth=1, width=width, sigma_w2=SIGMA_W2,
                        sigma_b2=SIGMA_B2, activation="relu")

    @jax.jit
    def one(key, model=model):
      params = model.init(key, x)["params"]
      return nngp.empirical_ntk(lambda p, xx: model.apply({"params": p}, xx),
                                params, x, x)

    keys = jax.random.split(jax.random.key(width, impl="rbg"), 8)
    emp = np.stack([np.asarray(one(k)) for k in keys])
    errors.append(np.mean(np.abs(emp - analytic[None])))
  slope = np.polyfit(np.log(WIDTHS), np.log(errors), 1)[0]
  assert -0.7 < slope < -0.3, (slope, errors)
  assert errors[-1] < 0.1 * np.abs(analytic).mean(), errors


def test_ntk_predictive_limits():
  """t = 0: the prior (mean 0, cov = NNGP); t = inf: Theta* Theta^-1 y."""
  with jax.enable_x64(True):
    x = _inputs().astype(np.float64)
    xs = _inputs(seed=1).astype(np.float64)[:3]
    y = np.sin(x[:, 0])
    kw = dict(depth=2, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, activation="erf")
    mean0, cov0 = nngp.ntk_predictive(x, y, xs, 0.0, **kw)
    np.testing.assert_allclose(mean0, 0.0, atol=1e-12)
    np.testing.assert_allclose(cov0, nngp.nngp_kernel(xs, xs, **kw),
                               rtol=1e-10)
    mean, cov = nngp.ntk_predictive(x, y, xs, jnp.inf, **kw)
    th = np.asarray(nngp.ntk_kernel(x, x, **kw))
    th_s = np.asarray(nngp.ntk_kernel(xs, x, **kw))
    k = np.asarray(nngp.nngp_kernel(x, x, **kw))
    k_s = np.asarray(nngp.nngp_kernel(xs, x, **kw))
    a = th_s @ np.linalg.inv(th)
    np.testing.assert_allclose(mean, a @ y, rtol=1e-8)
    want = (np.asarray(nngp.nngp_kernel(xs, xs, **kw)) + a @ k @ a.T
            - a @ k_s.T - k_s @ a.T)
    np.testing.assert_allclose(cov, want, rtol=1e-7, atol=1e-9)


def test_gradient_flow_prediction_matches_training_a_wide_net():
  """A width-2048 NTK-parameterised net trained by full-batch gradient descent
  (small step) follows the linearised prediction with the ANALYTIC NTK and its
  own f_0 (Lee et al. 2019, Eqs. 9-10): the deviation along the whole test-MSE
  curve is < 10% of the distance travelled (finite-width effects are
  O(width^-1/2) ~ 2%)."""
  x = _inputs()
  xs = _inputs(seed=1)
  y = np.sin(x[:, 0]) + 0.5 * x[:, 1]
  ys = np.sin(xs[:, 0]) + 0.5 * xs[:, 1]
  kw = dict(depth=1, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, activation="relu")
  model = nngp.NTKMLP(width=2048, **kw)
  apply = lambda p, xx: model.apply({"params": p}, xx)[:, 0]
  theta = np.asarray(_ntk(x, x, **kw), np.float64)
  theta_s = np.asarray(_ntk(xs, x, **kw), np.float64)
  lr = 0.5 / np.linalg.eigvalsh(theta).max()
  steps, every = 200, 20

  @jax.jit
  def train(key):
    params = model.init(key, x)["params"]
    f0, f0s = apply(params, x), apply(params, xs)

    def step(p, _):
      grads = jax.grad(lambda q: 0.5 * jnp.sum((apply(q, x) - y) ** 2))(p)
      p = jax.tree.map(lambda a, g: a - lr * g, p, grads)
      return p, apply(p, xs)

    _, outs = jax.lax.scan(step, params, None, length=steps)
    return f0, f0s, outs[every - 1::every]                     # [T, M]

  f0, f0s, outs = (np.asarray(a, np.float64) for a in train(jax.random.key(3)))
  times = lr * np.arange(every, steps + 1, every)
  pred = np.stack([np.asarray(nngp.linearised_prediction(
      f0, f0s, y, theta, theta_s, t)) for t in times])
  travelled = np.max(np.abs(outs[-1] - f0s))
  assert travelled > 0.1, travelled
  assert np.max(np.abs(outs - pred)) < 0.1 * travelled
  mse_net = np.mean((outs - ys) ** 2, axis=1)
  mse_pred = np.mean((pred - ys) ** 2, axis=1)
  np.testing.assert_allclose(mse_net, mse_pred, rtol=0.1)
