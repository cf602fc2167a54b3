r"""The delta-method control variate: a second-order Taylor expansion of f.

For any distribution with ``mean`` and ``covariance`` (Normal, Laplace,
Gamma, Beta, Dirichlet, multivariate Normals, ...), with
``m = stop_gradient(mu)``, ``mu = dist.mean`` and ``Sigma =
dist.covariance`` over the flattened event ``[D]``:

  h(x) = f(m) + grad f(m)^T (x - m) + 0.5 (x - m)^T H(m) (x - m),
  E_q[h] = f(m) + grad f(m)^T (mu - m)
           + 0.5 [(mu - m)^T H (mu - m) + tr(H Sigma)]

(Mohamed et al. 2020, sec. 7.1; Paisley, Blei & Jordan 2012). For a diagonal
Gaussian ``grad_mu E[h] = grad f(m)`` and ``grad_sigma E[h] = diag(H) *
sigma``. Cost per call: one gradient and one Hessian of ``f`` at the mean
(``[D, D]`` memory). Exact (zero variance) for quadratic ``f``; far from
quadratic it can RAISE the variance with ``beta = 1`` (use a fitted
coefficient, :func:`jaxbdl.gradients.control_variates.
cross_fitted_coefficient`).

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 7.1.
  J. Paisley, D. Blei, M. Jordan. Variational Bayesian inference with
  stochastic search. ICML 2012.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbdl.gradients.control_variate_protocol import ControlVariate

__all__ = ["delta_method"]


def _moments(dist, params):
  """``(mean [D], covariance [D, D], event_shape)`` from the capabilities."""
  if dist.mean is None or dist.covariance is None:
    raise ValueError(f"delta_method needs a distribution with mean and "
                     f"covariance (Distribution.mean/.covariance); "
                     f"{dist.name} has none")
  mean = dist.mean(params)
  return mean.reshape(-1), dist.covariance(params), mean.shape


def delta_method() -> ControlVariate:
  """Second-order Taylor expansion of ``f`` at the mean.

  Any distribution with ``mean`` and ``covariance``; see the module
  docstring for ``h`` and ``E_q[h]``.
  """

  def taylor(f, mean_d, shape):
    m = jax.lax.stop_gradient(mean_d)
    f_flat = lambda z: f(z.reshape(shape))
    return m, f_flat(m), jax.grad(f_flat)(m), jax.hessian(f_flat)(m)

  def function(f, dist, frozen_params, state):
    del state
    mean_d, _, shape = _moments(dist, frozen_params)
    m, f_m, g_d, h_dxd = taylor(f, mean_d, shape)

    def h(x):
      dx = x.reshape(-1) - m
      return f_m + g_d @ dx + 0.5 * dx @ (h_dxd @ dx)

    return h

  def expected_value(f, dist, params, state):
    del state
    mean_d, cov_dxd, shape = _moments(dist, params)
    m, f_m, g_d, h_dxd = taylor(f, mean_d, shape)
    dmu = mean_d - m  # zero in value, identity in gradient
    return (f_m + g_d @ dmu +
            0.5 * (dmu @ (h_dxd @ dmu) + jnp.sum(h_dxd * cov_dxd)))

  return ControlVariate("delta_method", function=function,
                        expected_value=expected_value)
