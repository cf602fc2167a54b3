"""Tests of jaxbdl.mc_dropout: the weight-decay / precision relation, T passes."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from jaxbdl import mc_dropout
from jaxbdl import networks

_F32 = 1e-6


@pytest.mark.parametrize("tau,l,p,n", [(1.0, 1.0, 0.1, 100),
                                       (25.0, 0.1, 0.5, 1000),
                                       (0.3, 3.0, 0.0, 7)])
def test_weight_decay_precision_relation(tau, l, p, n):
  lam = mc_dropout.weight_decay_from_precision(tau, l, p, n)
  assert lam == pytest.approx((1 - p) * l**2 / (2 * n * tau), rel=1e-12)
  assert mc_dropout.precision_from_weight_decay(lam, l, p, n) == pytest.approx(
      tau, rel=1e-12)


def test_gal_example_value():
  # p = 0.5, l = 1e-2, N = 10, tau = 1 -> lambda = 0.5 * 1e-4 / 20 = 2.5e-6.
  assert mc_dropout.weight_decay_from_precision(1.0, 1e-2, 0.5, 10) == (
      pytest.approx(2.5e-6))


@pytest.mark.parametrize("bad", [dict(tau=0.0), dict(dropout_rate=1.0),
                                 dict(num_data=0)])
def test_relation_rejects_bad_values(bad):
  args = dict(tau=1.0, length_scale=1.0, dropout_rate=0.1, num_data=10)
  args.update(bad)
  with pytest.raises(ValueError):
    mc_dropout.weight_decay_from_precision(**args)


def test_passes_are_stochastic_and_moments_match_direct():
  model = networks.MLP((32, 1), dropout_rate=0.3)
  x = jnp.linspace(0.5, 1.5, 5)[:, None]
  params = model.init(jax.random.key(0), x)["params"]
  apply = mc_dropout.flax_stochastic_apply(model)
  out = jax.jit(lambda p, k: mc_dropout.predict(apply, p, x, k, 50))(
      params, jax.random.key(1))[..., 0]
  assert out.shape == (50, 5)
  assert float(jnp.std(out, axis=0).min()) > 0  # dropout is on
  tau = 4.0
  mean, var = mc_dropout.predictive_moments(out, tau)
  o = np.asarray(out, np.float64)
  np.testing.assert_allclose(mean, o.mean(0), rtol=1e-5, atol=_F32)
  np.testing.assert_allclose(var, 1 / tau + (o**2).mean(0) - o.mean(0)**2,
                             rtol=1e-4)
  y = np.linspace(0, 1, 5)
  direct = special.logsumexp(-0.5 * math.log(2 * math.pi / tau)
                             - 0.5 * tau * (y - o)**2, axis=0) - math.log(50)
  np.testing.assert_allclose(mc_dropout.log_likelihood(jnp.asarray(y, jnp.float32),
                                                       out, tau), direct,
                             rtol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 7, 50, None])
def test_chunked_passes_equal_vmapped_passes(batch_size):
  model = networks.MLP((16, 1), dropout_rate=0.3)
  x = jnp.linspace(-1.0, 1.0, 6)[:, None]
  params = model.init(jax.random.key(0), x)["params"]
  apply = mc_dropout.flax_stochastic_apply(model)
  full = mc_dropout.predict(apply, params, x, jax.random.key(1), 20)
  chunked = mc_dropout.predict(apply, params, x, jax.random.key(1), 20,
                               batch_size=batch_size)
  np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=_F32)
  with pytest.raises(ValueError, match="batch_size"):
    mc_dropout.predict(apply, params, x, jax.random.key(1), 20, batch_size=0)
