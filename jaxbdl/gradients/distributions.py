"""Parameterised distributions as NamedTuples of pure functions.

A distribution here is not an object holding parameters: it is a fixed set of
pure functions that take a parameter dict, so that the parameters are an
ordinary pytree that ``jax.grad``, ``jax.vmap`` and optax see directly::

  params = {"loc": jnp.zeros(3), "scale": jnp.ones(3)}
  x = Normal.sample(params, key, (10,))          # [10, 3]
  lp = Normal.log_prob(params, x)                # [10]

Conventions (shared by every distribution in this module):

* The *event* is the whole parameter array: ``loc`` of shape ``E`` describes
  ``prod(E)`` independent coordinates and ``log_prob``, ``entropy`` and ``kl``
  sum over all of them (for ``Categorical`` the last axis of ``logits`` holds
  the classes, so the event shape is ``logits.shape[:-1]``).
* ``sample(params, key, shape=())`` returns ``shape + event_shape``.
* ``log_prob(params, x)`` accepts ``x`` of shape ``batch + event_shape`` and
  returns ``batch``.
* ``scale`` is the scale itself, not its logarithm (the standard deviation
  for the Normal), so gradients are taken with respect to sigma, as in
  Mohamed et al. (2020).
* ``sample = transform(params, noise(params, key, shape))``: the
  parameter-free ``noise`` and the deterministic ``transform`` are exposed so
  estimators can draw all noise in one call and map it per sample.
* ``reparameterized`` says whether ``transform`` is a differentiable function
  of the parameters (pathwise estimators need it);
  ``implicit_reparameterized`` says that this derivative is an *implicit*
  reparameterisation gradient (Figurnov et al. 2018): for Gamma, Beta and
  Dirichlet ``noise`` is a PRNG key per sample and ``transform`` draws
  ``z = jax.random.gamma(key, alpha)``, whose custom JVP is
  ``dz/dalpha = -(dF(z; alpha)/dalpha) / p(z; alpha)`` (``F`` the CDF), so
  ``jax.grad`` through a sample is the implicit gradient and the ordinary
  :data:`jaxbdl.gradients.estimators.pathwise` estimator covers these families.
* Capabilities are data: ``mean``/``covariance`` (delta-method control
  variates), ``weak_derivative`` (measure-valued estimators) are ``None``
  where a family lacks them; nothing dispatches on ``name``.

Where each family lives (all are re-exported here, so
``distributions.Gamma`` and ``from jaxbdl.gradients.distributions import
Normal`` keep working):

* :mod:`~jaxbdl.gradients.distribution_protocol`: the :class:`Distribution`
  type, :class:`WeakDerivative`, :func:`standard_normal` (``jax.random.normal``
  without XLA:CPU's slow path for odd sizes), :func:`check_params` (boundary checks:
  missing or unknown keys, shapes, positive parameters, NaN-poisoning under
  ``jit``);
* :mod:`~jaxbdl.gradients.location_scale`: :func:`location_scale`, the one
  construction of ``x = loc + scale * eps`` families, and its instances
  :data:`Normal` and :data:`Laplace`;
* :mod:`~jaxbdl.gradients.discrete`: :data:`Bernoulli`, :data:`Categorical`,
  :data:`Poisson`;
* :mod:`~jaxbdl.gradients.implicit_reparameterized`: :data:`Gamma`,
  :data:`Beta`, :data:`Dirichlet`;
* :mod:`~jaxbdl.gradients.multivariate_normal`:
  :data:`MultivariateNormalTriL`, :data:`LowRankMultivariateNormal`.

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 5 (pathwise), Sec. 6 and
  Table 1 (weak derivatives).
  M. Figurnov, S. Mohamed, A. Mnih. Implicit Reparameterization Gradients.
  NeurIPS 2018. Eq. (5): dz/dalpha = -(dF/dalpha) / q(z).
"""
from jaxbdl.gradients.discrete import Bernoulli, Categorical, Poisson
from jaxbdl.gradients.distribution_protocol import (
    Distribution, WeakDerivative, check_params, standard_normal)
from jaxbdl.gradients.implicit_reparameterized import Beta, Dirichlet, Gamma
from jaxbdl.gradients.location_scale import Laplace, Normal, location_scale
from jaxbdl.gradients.multivariate_normal import (
    LowRankMultivariateNormal, MultivariateNormalTriL)

__all__ = ["Distribution", "WeakDerivative", "Normal", "Laplace", "Bernoulli",
           "Categorical", "Gamma", "Beta", "Dirichlet", "Poisson",
           "MultivariateNormalTriL", "LowRankMultivariateNormal",
           "check_params", "location_scale", "standard_normal"]
