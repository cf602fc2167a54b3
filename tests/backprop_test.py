"""Tests for jaxbdl.nn.backprop: hand-written delta rule == autodiff == finite differences."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbdl.nn import backprop

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)

@functools.partial(jax.jit, static_argnums=3)  # one small program per case
def _hand_and_auto(params, x, y, activation):
  return (backprop.two_layer_backward(params, x, y, activation),
          jax.grad(backprop.two_layer_loss)(params, x, y, activation))


_SHAPES = [(5, 3, 4, 2), (7, 1, 6, 3)]  # (N, D, H, K)


@pytest.mark.default_xla
@pytest.mark.parametrize("shape", _SHAPES, ids=["N5-D3-H4-K2", "N7-D1-H6-K3"])
@pytest.mark.parametrize("activation", backprop.ACTIVATIONS)
def test_hand_backward_equals_autodiff(activation, shape):
  n, d, h, k = shape
  rng = np.random.default_rng(sum(shape))  # numpy data: no PRNG compiles
  params = {name: jnp.asarray(rng.normal(size=s), jnp.float32)
            for name, s in [("W1", (h, d)), ("b1", (h,)), ("W2", (k, h)), ("b2", (k,))]}
  x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(n, k)), jnp.float32)
  hand, auto = _hand_and_auto(params, x, y, activation)
  assert jax.tree.structure(hand) == jax.tree.structure(params)
  # Both sum the same O(N * H) products in float32, in different orders:
  # error <= c * eps * (sum of |terms|); scale by the magnitude of the grads.
  for name in params:
    assert hand[name].shape == params[name].shape
    scale = float(jnp.max(jnp.abs(auto[name]))) + 1.0
    np.testing.assert_allclose(hand[name], auto[name], rtol=64 * EPS32,
                               atol=64 * EPS32 * n * h * scale)


def test_relu_derivative_at_zero_matches_jax():
  a = jnp.array([-1.0, 0.0, 1.0])
  np.testing.assert_array_equal(backprop.activation_derivative("relu")(a),
                                jax.vmap(jax.grad(jax.nn.relu))(a))


def test_unknown_activation_raises():
  with pytest.raises(ValueError, match="softsign"):
    backprop.activation_derivative("softsign")


_IN_DOMAIN = [(2.0, 1.0), (1.5, 0.5), (-1.0, 2.0), (3.0, -1.2), (0.9, 0.6)]


@jax.jit
def _third_derivatives(x):
  """[d^3 f / d x_i^3 for i = 1, 2] at x: [2], by nested jvps (autodiff)."""
  f = lambda v: backprop.lecture_function(v[0], v[1])

  def along(e):
    d1 = lambda v: jax.jvp(f, (v,), (e,))[1]
    d2 = lambda v: jax.jvp(d1, (v,), (e,))[1]
    return jax.jvp(d2, (x,), (e,))[1]

  return jnp.stack([along(e) for e in jnp.eye(2, dtype=x.dtype)])


def _third_derivative_bound(x):
  """max_i |d^3 f / d x_i^3| at x (float64): the FD truncation constant."""
  return float(jnp.max(jnp.abs(_third_derivatives(x))))


@pytest.mark.default_xla
@pytest.mark.parametrize("x1,x2", _IN_DOMAIN, ids=[f"{a}_{b}" for a, b in _IN_DOMAIN])
def test_autodiff_equals_central_differences(x1, x2):
  """Central-difference error <= eps_h^2 / 6 * |f'''| + eps64 * |f| / eps_h.

  With eps_h = eps64^(1/3) * max(1, |x|) both terms are O(eps64^(2/3)); the
  third derivative is computed (in float64, by autodiff) at the point and a
  factor 10 covers its variation over [x - eps_h, x + eps_h] and the few
  roundings in f.
  """
  res = backprop.check_lecture_function(x1, x2)
  assert res.in_domain and np.isfinite(res.autodiff).all()
  with jax.enable_x64(True):
    m3 = _third_derivative_bound(jnp.array([x1, x2], jnp.float64))
  h = res.eps
  bound = 10 * (h * h / 6 * m3 + EPS64 * max(abs(res.value), 1.0) / h)
  assert bound < 1e-6  # eps64^(2/3) ~ 4e-11 scale, not a vacuous check
  np.testing.assert_array_less(np.abs(res.autodiff - res.finite_difference), bound)
  np.testing.assert_allclose(res.autodiff, res.analytic, rtol=64 * EPS64)
  assert res.abs_error < bound


# u = x1 / sin(x2^2): 0.59 (log < 0), -1.19 (log of a negative), 0.66 with
# sin(x2^2) < 0 (log < 0).
_OUT_OF_DOMAIN = [(0.5, 1.0), (-1.0, 1.0), (-0.5, 2.0)]


@pytest.mark.parametrize("x1,x2", _OUT_OF_DOMAIN,
                         ids=["ratio-below-one", "ratio-negative",
                              "ratio-below-one-negative-sin"])
def test_out_of_domain_gives_nan_and_is_flagged(x1, x2):
  res = backprop.check_lecture_function(x1, x2)
  assert not res.in_domain
  assert np.isnan(res.autodiff).all() and np.isnan(res.value)
  assert math.isnan(res.abs_error)


def test_domain_formula():
  u = np.array([2.0, 1.5, -1.0, 0.5]) / np.sin(np.array([1.0, 0.5, 2.0, 1.0]) ** 2)
  got = backprop.lecture_domain(jnp.array([2.0, 1.5, -1.0, 0.5]),
                                jnp.array([1.0, 0.5, 2.0, 1.0]))
  np.testing.assert_array_equal(got, u > 1)


def test_central_difference_grad_on_a_quadratic_is_exact_to_rounding():
  f = lambda v: float(v @ np.diag([1.0, 2.0, 3.0]) @ v) / 2
  x = np.array([0.3, -1.0, 2.0])
  h = 1e-3
  g = backprop.central_difference_grad(f, x, h)
  # No truncation error (third derivative 0); rounding ~ eps64 * |f| / h.
  np.testing.assert_allclose(g, [0.3, -2.0, 6.0], atol=10 * EPS64 * 10.0 / h)
  with pytest.raises(ValueError, match="eps"):
    backprop.central_difference_grad(f, x, 0.0)
