"""Tests for jaxbdl.linear_models: MAP optimality conditions, masking."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbdl import likelihoods, linear_models, objectives, priors

X = jnp.linspace(-1.0, 1.0, 12)
Y = jnp.sin(3.0 * X) + 0.1 * jnp.cos(17.0 * X)


def test_features_mask_unused_degrees():
  phi = linear_models.polynomial_features(X, 2, 4)
  np.testing.assert_allclose(phi[:, :3], X[:, None] ** jnp.arange(3)[None, :])
  np.testing.assert_array_equal(phi[:, 3:], 0.0)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_gaussian_map_zeroes_the_map_objective_gradient(alpha):
  """The closed form is the stationary point of -log N(y|Phi w, 1/beta) - log N(w|0, 1/alpha)."""
  beta = 4.0
  phi = linear_models.polynomial_features(X, 3, 5)
  w = linear_models.gaussian_map(phi, Y, alpha, beta)
  np.testing.assert_array_equal(w[4:], 0.0)

  def neg_log_joint(w3):
    lp = priors.gaussian(w3, 1.0 / np.sqrt(alpha)) if alpha > 0 else 0.0
    return objectives.map_loss(w3, (phi[:, :4], Y), lambda p, x: x @ p,
                               lambda y, m: likelihoods.gaussian(y, m, beta),
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
