"""Tests of jaxbdl.ensembles: mixture moments, vmapped members."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbdl import ensembles
from jaxbdl import train

K_SE = 4.0


def test_mixture_moments_match_samples_from_the_mixture():
  means = jnp.array([[0.0, 1.0], [2.0, 1.0], [-1.0, 3.0]])  # [M=3, N=2]
  variances = jnp.array([[1.0, 0.5], [0.25, 0.5], [2.0, 1.0]])
  mean, var = ensembles.mixture_moments(means, variances)
  np.testing.assert_allclose(mean, [1 / 3, 5 / 3], rtol=1e-6)
  m, v = np.asarray(means), np.asarray(variances)
  np.testing.assert_allclose(var, v.mean(0) + m.var(0), rtol=1e-6)
  # Monte Carlo: sample component then Gaussian.
  r = 40000
  key_c, key_z = jax.random.split(jax.random.key(0))
  comp = jax.random.randint(key_c, (r, 2), 0, 3)
  z = jax.random.normal(key_z, (r, 2))
  cols = jnp.arange(2)[None, :]
  samples = np.asarray(means[comp, cols] + jnp.sqrt(variances[comp, cols]) * z)
  se_mean = samples.std(0) / math.sqrt(r)
  assert np.all(np.abs(samples.mean(0) - np.asarray(mean)) < K_SE * se_mean)
  # SE of a sample variance: sqrt((m4 - s^4) / r).
  c = samples - samples.mean(0)
  se_var = np.sqrt(((c**4).mean(0) - c.var(0)**2) / r)
  assert np.all(np.abs(c.var(0) - np.asarray(var)) < K_SE * se_var)


def test_log_likelihood_is_mixture_density():
  means = jnp.array([[0.0], [2.0]])
  variances = jnp.array([[1.0], [4.0]])
  y = jnp.array([1.0])
  dens = 0.5 * (math.exp(-0.5) / math.sqrt(2 * math.pi)
                + math.exp(-0.5 * 0.25) / math.sqrt(8 * math.pi))
  np.testing.assert_allclose(ensembles.log_likelihood(y, means, variances),
                             [math.log(dens)], rtol=1e-5)


def test_vmapped_members_equal_single_fits():
  x = jnp.linspace(-1, 1, 16)[:, None]
  data = {"x": x, "y": 2.0 * x[:, 0]}

  def loss_fn(params, state, batch, key):
    pred = batch["x"][:, 0] * params["w"] + params["b"]
    loss = jnp.mean((pred - batch["y"])**2)
    return loss, (state, {})

  opt = optax.sgd(0.1)
  fit = train.make_fit(loss_fn, opt, num_epochs=3, batch_size=4)
  init = lambda k: train.init_train_state(
      {"w": jax.random.normal(k, ()), "b": jnp.zeros(())}, opt)
  key = jax.random.key(7)
  states = ensembles.init_members(init, key, 3)
  efit = jax.jit(ensembles.make_ensemble_fit(fit, 3))
  out, _ = efit(states, data, key)
  for m in (0, 2):
    km = jax.random.fold_in(key, m)
    single, _ = jax.jit(fit)(init(km), data, km)
    np.testing.assert_allclose(out.params["w"][m], single.params["w"],
                               rtol=1e-5)
  assert np.std(np.asarray(out.params["w"])) > 0  # members differ
