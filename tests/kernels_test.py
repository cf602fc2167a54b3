"""Tests for jaxbdl.gaussian_processes.kernels: RBF and Matern kernels against NumPy formulas."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbdl.gaussian_processes import kernels
from tests.helpers import tol

# Deterministic maths: tolerance keyed on dtype (a few hundred ulps of O(1) values).
_RTOL = {np.dtype("float32"): 1e-5, np.dtype("float64"): 1e-12}


def _numpy_kernel(name, x1, x2, lengthscale, variance):
  """Float64 reference from the textbook formulas (R&W 2006 Eq. 4.9, 4.16-4.17)."""
  ls = np.broadcast_to(np.asarray(lengthscale, np.float64), (x1.shape[1],))
  d = (x1[:, None, :] - x2[None, :, :]) / ls
  r = np.sqrt(np.sum(d * d, axis=-1))
  if name == "rbf":
    k = np.exp(-0.5 * r ** 2)
  elif name == "matern12":
    k = np.exp(-r)
  elif name == "matern32":
    k = (1 + math.sqrt(3) * r) * np.exp(-math.sqrt(3) * r)
  else:
    k = (1 + math.sqrt(5) * r + 5 * r ** 2 / 3) * np.exp(-math.sqrt(5) * r)
  return variance * k


def _inputs(n=7, m=5, d=3, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)).astype(np.float32),
          rng.normal(size=(m, d)).astype(np.float32))


@pytest.mark.parametrize("name", ["rbf", "matern12", "matern32", "matern52"])
@pytest.mark.parametrize("lengthscale", [0.7, (0.5, 1.0, 2.0)],
                         ids=["isotropic", "ard"])
def test_matches_numpy_formula(name, lengthscale):
  x1, x2 = _inputs()
  ls = jnp.asarray(lengthscale, jnp.float32)
  got = kernels.get_kernel(name)(x1, x2, ls, 1.3)
  want = _numpy_kernel(name, x1.astype(np.float64), x2.astype(np.float64),
                       lengthscale, 1.3)
  assert got.shape == (7, 5)
  np.testing.assert_allclose(got, want, rtol=10 * _RTOL[np.dtype(got.dtype)],
                             atol=1e-6)


@pytest.mark.parametrize("name", ["rbf", "matern12", "matern32", "matern52"])
def test_symmetric_psd_and_unit_diagonal(name):
  x, _ = _inputs(n=12)
  k = np.asarray(kernels.get_kernel(name)(x, x, 0.9, 2.0), np.float64)
  np.testing.assert_allclose(k, k.T, atol=1e-6)
  np.testing.assert_allclose(np.diag(k), 2.0, rtol=1e-6)
  assert np.linalg.eigvalsh(k).min() >= -1e-5 * np.abs(k).max()


@pytest.mark.parametrize("name", ["rbf", "matern12", "matern32", "matern52"])
def test_gradients_with_the_diagonal_match_finite_differences(name):
  """d/d(lengthscale, variance) of sum K(x, x) -- the diagonal r = 0 where
  sqrt and |r| are not differentiable included -- equals float64 central
  differences of the NumPy reference. FD error: h^2/6 |f'''| + eps64 |f| / h
  ~ 1e-10 at h = 1e-5 (negligible); the float32 gradient sums 16 same-signed
  terms, each a few roundings: <= ~24 ulps relative, so 64 ulps of float32."""
  x, _ = _inputs(n=4)
  ls, v = 0.8, 1.5
  grads = jax.grad(
      lambda ls, v: jnp.sum(kernels.get_kernel(name)(x, x, ls, v)),
      argnums=(0, 1))(jnp.float32(ls), jnp.float32(v))
  x64, h = x.astype(np.float64), 1e-5
  f = lambda ls, v: _numpy_kernel(name, x64, x64, ls, v).sum()
  fd = ((f(ls + h, v) - f(ls - h, v)) / (2 * h),
        (f(ls, v + h) - f(ls, v - h)) / (2 * h))
  np.testing.assert_allclose(np.asarray(grads, np.float64), fd,
                             **tol(np.float32, ulps=64))


def test_make_kernel_fn_uses_params():
  x1, x2 = _inputs()
  kernel_fn = kernels.make_kernel_fn("matern32")
  got = kernel_fn({"lengthscale": 0.7, "variance": 1.3}, x1, x2)
  np.testing.assert_allclose(got, kernels.matern32(x1, x2, 0.7, 1.3))


@pytest.mark.parametrize("call,match", [
    (lambda x1, x2: kernels.rbf(x1, x2[:, :2]), "feature dimension mismatch"),
    (lambda x1, x2: kernels.rbf(x1[0], x2), "2-D"),
    (lambda x1, x2: kernels.rbf(x1, x2, -1.0), "lengthscale must be positive"),
    (lambda x1, x2: kernels.rbf(x1, x2, 1.0, 0.0), "variance must be positive"),
    (lambda x1, x2: kernels.rbf(x1, x2, (1.0, 2.0)), "lengthscale has 2"),
    (lambda x1, x2: kernels.rbf(x1 * np.nan, x2), "NaN"),
    (lambda x1, x2: kernels.get_kernel("cosine"), "unknown kernel"),
], ids=["dim_mismatch", "not_2d", "neg_lengthscale", "zero_variance",
        "ard_length", "nan", "unknown"])
def test_bad_inputs_raise(call, match):
  x1, x2 = _inputs()
  with pytest.raises(ValueError, match=match):
    call(x1, x2)
