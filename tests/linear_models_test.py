"""Tests for jaxbdl.nn.linear_models: MAP optimality conditions, masking."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbdl.nn import linear_models, objectives
from jaxbdl.bayes import likelihoods, priors

X = jnp.linspace(-1.0, 1.0, 12)
Y = jnp.sin(3.0 * X) + 0.1 * jnp.cos(17.0 * X)


def test_features_mask_unused_degrees():
  phi = linear_models.polynomial_features(X, 2, 4)
  np.testing.assert_allclose(phi[:, :3], X[:, None] ** jnp.arange(3)[None, :])
  np.testing.assert_array_equal(phi[:, 3:], 0.0)


@pytest.mark.parametrize("alpha", [1e-3, 0.5])
def test_gaussian_map_zeroes_the_map_objective_gradient(alpha):
  """The closed form is the stationary point of -log N(y|Phi w, 1/beta) - log N(w|0, 1/alpha)."""
  beta = 4.0
  phi = linear_models.polynomial_features(X, 3, 5)
  w = linear_models.gaussian_map(phi, Y, alpha, beta)
  np.testing.assert_array_equal(w[4:], 0.0)

  def neg_log_joint(w3):
    lp = priors.gaussian(1.0 / np.sqrt(alpha)).log_prob({}, w3)
    return objectives.map_loss(w3, (phi[:, :4], Y), lambda p, x: x @ p,
                               lambda y, m: likelihoods.normal_log_prob(y, m, beta ** -0.5),
                               lambda p: lp, Y.shape[0])

  g = jax.grad(neg_log_joint)(w[:4])
  # Gradient scale: beta * |Phi^T y| ~ 1e1; float32 solve error ~ 1e-6 relative.
  np.testing.assert_allclose(g, 0.0, atol=2e-3)


def test_laplace_map_satisfies_subgradient_conditions():
  """At the lasso optimum: beta Phi^T (y - Phi w) = sign(w)/b where w != 0, and |.| <= 1/b where w = 0."""
  beta, b = 4.0, 0.2
  phi = linear_models.polynomial_features(X, 5, 5)
  w = linear_models.laplace_map(phi, Y, b, beta, num_iters=20000)
  corr = beta * phi.T @ (Y - phi @ w)
  nz = np.abs(np.asarray(w)) > 1e-6
  assert nz.any() and (~nz).any(), "choose b so that the solution is sparse"
  np.testing.assert_allclose(np.asarray(corr)[nz], np.sign(np.asarray(w))[nz] / b,
                             rtol=2e-3)
  assert np.all(np.abs(np.asarray(corr)[~nz]) <= 1.0 / b * (1 + 2e-3))


@pytest.mark.parametrize("degree", [3, 9, 11])
def test_maximum_likelihood_is_float64_least_squares(degree):
  """Oracle: numpy's float64 lstsq on the used columns (no ridge anywhere).

  Degree 11 on 12 points interpolates: train residual at float64 rounding.
  """
  x = np.linspace(-1.0, 1.0, 12)
  y = np.sin(3.0 * x) + 0.1 * np.cos(17.0 * x)
  with jax.enable_x64(True):
    phi = linear_models.polynomial_features(jnp.asarray(x), degree, 11)
    w = np.asarray(linear_models.maximum_likelihood(phi, jnp.asarray(y)))
  assert w.dtype == np.float64
  np.testing.assert_array_equal(w[degree + 1:], 0.0)
  vander = x[:, None] ** np.arange(degree + 1)[None, :]
  expected, *_ = np.linalg.lstsq(vander, y, rcond=None)
  # Condition of the Vandermonde matrix times eps64 bounds the difference.
  cond = np.linalg.cond(vander)
  np.testing.assert_allclose(w[:degree + 1], expected,
                             atol=64 * cond * np.finfo(np.float64).eps)
  if degree == 11:
    assert np.max(np.abs(vander @ w[:12] - y)) < 1e3 * cond * 1e-16


def test_gaussian_map_refuses_alpha_0():
  phi = linear_models.polynomial_features(X, 3, 5)
  with pytest.raises(ValueError, match="alpha must be > 0, got 0.0 \\(use "
                     "maximum_likelihood"):
    linear_models.gaussian_map(phi, Y, 0.0)
