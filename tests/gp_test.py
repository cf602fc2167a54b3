"""Tests for jaxbdl.gp: exact GP regression against direct linear algebra."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from jaxbdl import gp
from jaxbdl import kernels
from jaxbdl import nngp

N, M, D = 12, 5, 2
NNGP_KERNEL = nngp.make_kernel_fn(2, "relu")     # (params, x1, x2) -> [N, M]


def _data(dtype=np.float32, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(N, D))
  y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] + 0.1 * rng.normal(size=N)
  x_test = rng.normal(size=(M, D))
  return x.astype(dtype), y.astype(dtype), x_test.astype(dtype)


def _rbf(x1, x2):
  return kernels.rbf(x1, x2, 0.8, 1.5)


def test_noise_free_posterior_interpolates():
  with jax.enable_x64(True):
    x, y, _ = _data(np.float64)
    post = gp.fit(_rbf, x, y, noise_variance=1e-10, jitter=0.0)
    mean, var = gp.predict(_rbf, post, x)
    np.testing.assert_allclose(mean, y, atol=1e-6)
    assert np.max(var) < 1e-7


@pytest.mark.parametrize("kernel_name", ["rbf", "nngp_relu"])
def test_predict_matches_direct_solve(kernel_name):
  with jax.enable_x64(True):
    x, y, x_test = _data(np.float64)
    kernel_fn = jax.jit(_rbf if kernel_name == "rbf" else functools.partial(
        NNGP_KERNEL, {"sigma_w2": 1.5, "sigma_b2": 0.2}))
    noise = 0.05
    post = gp.fit(kernel_fn, x, y, noise, jitter=0.0)
    mean, var = gp.predict(kernel_fn, post, x_test)
    _, cov = gp.predict(kernel_fn, post, x_test, full_cov=True)
    _, var_y = gp.predict(kernel_fn, post, x_test, include_noise=True)
    k = np.asarray(kernel_fn(x, x))
    k_s = np.asarray(kernel_fn(x, x_test))
    k_ss = np.asarray(kernel_fn(x_test, x_test))
    a = np.linalg.solve(k + noise * np.eye(N), np.c_[y, k_s])
    want_cov = k_ss - k_s.T @ a[:, 1:]
    # Deterministic float64 linear algebra on well-conditioned 12x12 systems.
    np.testing.assert_allclose(mean, k_s.T @ a[:, 0], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(cov, want_cov, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(var, np.diag(want_cov), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(var_y, np.diag(want_cov) + noise, rtol=1e-9)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)],
                         ids=["float64", "float32"])
def test_log_marginal_likelihood_matches_scipy(dtype, rtol):
  with jax.enable_x64(dtype == np.float64):
    x, y, _ = _data(dtype)
    kernel_fn = functools.partial(NNGP_KERNEL,
                                  {"sigma_w2": 1.5, "sigma_b2": 0.2})
    noise, jitter = 0.05, 1e-6
    got = gp.log_marginal_likelihood(kernel_fn, x, y, noise, jitter)
    cov = np.asarray(kernel_fn(x, x), np.float64) + (noise + jitter) * np.eye(N)
    want = multivariate_normal(np.zeros(N), cov).logpdf(y.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=rtol)


def test_log_marginal_likelihood_gradient_matches_finite_differences():
  """Central differences, step h = 1e-5 in float64: truncation error
  O(h^2 f''') ~ 1e-10 and round-off ~ eps / h ~ 1e-11, so rtol 1e-6 is loose."""
  with jax.enable_x64(True):
    x, y, _ = _data(np.float64)

    @jax.jit   # one compilation instead of many eager float64 op kernels
    def lml(theta):
      params = {"sigma_w2": theta[0], "sigma_b2": theta[1]}
      return gp.log_marginal_likelihood(functools.partial(NNGP_KERNEL, params),
                                        x, y, theta[2])

    theta = jnp.array([1.5, 0.2, 0.05])
    grad = np.asarray(jax.grad(lml)(theta))
    h = 1e-5
    fd = np.array([(lml(theta + h * e) - lml(theta - h * e)) / (2 * h)
                   for e in np.eye(3)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_optimise_hyperparameters_increases_marginal_likelihood():
  x, y, _ = _data()
  init = {"sigma_w2": 1.0, "sigma_b2": 1.0}
  # vmap over two "splits" (y and -y): one compilation serves both, as in the
  # UCI experiment; a zero-mean GP's likelihood is invariant to y -> -y.
  result = jax.vmap(lambda yy: gp.optimise_hyperparameters(
      NNGP_KERNEL, init, x, yy, 0.5, num_steps=100,
      learning_rate=0.05))(jnp.stack([jnp.asarray(y), -y]))
  assert result.neg_log_marginal_likelihood.shape == (2, 100)
  np.testing.assert_allclose(result.noise_variance[1],
                             result.noise_variance[0], rtol=1e-4)
  params = jax.tree.map(lambda v: v[0], result.params)
  noise = result.noise_variance[0]
  before = -gp.log_marginal_likelihood(
      functools.partial(NNGP_KERNEL, init), x, y, 0.5) / N
  after = -gp.log_marginal_likelihood(
      functools.partial(NNGP_KERNEL, params), x, y, noise) / N
  np.testing.assert_allclose(result.neg_log_marginal_likelihood[0, 0], before,
                             rtol=1e-4)
  # Adam from a poor start: the objective must fall by a clear margin (the
  # data have signal std ~0.8 and noise std 0.1; the init noise is 0.5).
  assert after < before - 0.2, (before, after)
  assert 0 < float(noise) < 0.5


@pytest.mark.parametrize("call,match", [
    (lambda x, y: gp.fit(_rbf, x, y[:-1], 0.1), "rows but y has"),
    (lambda x, y: gp.fit(_rbf, x, y[:, None], 0.1), "1-D"),
    (lambda x, y: gp.fit(_rbf, x[:, 0], y, 0.1), "2-D"),
    (lambda x, y: gp.fit(_rbf, x, y * np.nan, 0.1), "NaN"),
    (lambda x, y: gp.fit(_rbf, x, y, 0.0), "noise_variance must be positive"),
    (lambda x, y: gp.fit(_rbf, x, y, -1.0), "noise_variance must be positive"),
    (lambda x, y: gp.log_marginal_likelihood(_rbf, x, y, float("nan")),
     "noise_variance"),
    (lambda x, y: gp.predict(_rbf, gp.fit(_rbf, x, y, 0.1), x[:, :1]),
     "x_test must be"),
    (lambda x, y: gp.optimise_hyperparameters(
        NNGP_KERNEL, {"sigma_w2": -1.0, "sigma_b2": 1.0}, x, y, 0.1),
     "must be positive"),
    (lambda x, y: gp.optimise_hyperparameters(
        NNGP_KERNEL, {"sigma_w2": 1.0, "sigma_b2": 1.0}, x, y, 0.1,
        num_steps=0), "num_steps"),
], ids=["length_mismatch", "y_2d", "x_1d", "nan_y", "zero_noise",
        "negative_noise", "nan_noise", "predict_dims", "negative_init",
        "zero_steps"])
def test_bad_inputs_raise(call, match):
  x, y, _ = _data()
  with pytest.raises(ValueError, match=match):
    call(x, y)
