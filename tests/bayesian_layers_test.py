"""Tests of jaxbdl.bayes.bayesian_layers: LRT / Flipout moments, KL, ELBO training."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl.bayes import bayesian_layers as bl
from jaxbdl.nn import networks
from jaxbdl.training import train
from jaxbdl.bayes import elbo, likelihoods, priors

K_SE = 4.0  # |estimate - predicted| < K_SE * SE, SE computed from the draws.
_R = 4000   # draws of the layer noise
_B, _D, _K = 6, 3, 2


def _layer_draws(layer):
  """Returns (outputs [R, B, K], x, mu_w, s_w, mu_b, s_b)."""
  x = jax.random.normal(jax.random.key(0), (_B, _D))
  module = bl.LAYERS[layer](_K, init_scale=0.3)
  params = module.init({"params": jax.random.key(1),
                        "sample": jax.random.key(2)}, x)["params"]
  params = dict(params)
  params["bias_loc"] = jnp.array([0.5, -0.5])
  params["bias_raw_scale"] = jnp.log(jnp.expm1(jnp.array([0.2, 0.4])))
  params["kernel_raw_scale"] = jnp.log(jnp.expm1(
      jnp.linspace(0.1, 0.6, _D * _K).reshape(_D, _K)))
  keys = jax.random.split(jax.random.key(3), _R)
  out = jax.jit(jax.vmap(lambda k: module.apply({"params": params}, x,
                                                rngs={"sample": k})))(keys)
  sp = jax.nn.softplus
  return (np.asarray(out, np.float64), np.asarray(x, np.float64),
          np.asarray(params["kernel_loc"], np.float64),
          np.asarray(sp(params["kernel_raw_scale"]), np.float64),
          np.asarray(params["bias_loc"], np.float64),
          np.asarray(sp(params["bias_raw_scale"]), np.float64))


_DRAWS = {}


def _draws(layer):
  if layer not in _DRAWS:
    _DRAWS[layer] = _layer_draws(layer)
  return _DRAWS[layer]


@pytest.mark.parametrize("layer", ["reparam", "lrt", "flipout"])
def test_preactivation_marginals_are_unbiased(layer):
  out, x, mw, sw, mb, sb = _draws(layer)
  mean = x @ mw + mb
  var = (x**2) @ (sw**2) + sb**2  # Kingma et al. 2015, Eq. 6
  emp_mean, emp_var = out.mean(0), out.var(0, ddof=1)
  assert np.all(np.abs(emp_mean - mean) < K_SE * np.sqrt(var / _R))
  # SE of a sample variance of Gaussian draws: var * sqrt(2 / (R - 1)); Flipout
  # marginals are also Gaussian given the signs, mixtures only through signs
  # that do not change the variance.
  assert np.all(np.abs(emp_var - var) < K_SE * var * math.sqrt(2 / (_R - 1)))


def _predicted_batch_mean_variance(layer, x, sw, sb):
  """Var of (1/B) sum_b a_bk: shared weights correlate the examples."""
  cov_kernel = np.einsum("bd,cd,dk->bck", x, x, sw**2)  # [B, B, K]
  if layer == "lrt":
    cov = np.einsum("bbk->bk", cov_kernel)[:, None, :] * np.eye(_B)[:, :, None]
    cov = cov + sb**2 * np.eye(_B)[:, :, None]
  elif layer == "flipout":
    cov = cov_kernel * np.eye(_B)[:, :, None] + sb**2  # bias is shared
  else:
    cov = cov_kernel + sb**2
  return cov.sum(axis=(0, 1)) / _B**2


@pytest.mark.parametrize("layer", ["reparam", "lrt", "flipout"])
def test_minibatch_mean_variance_matches_prediction(layer):
  out, x, _, sw, _, sb = _draws(layer)
  batch_mean = out.mean(1)  # [R, K]
  pred = _predicted_batch_mean_variance(layer, x, sw, sb)
  emp = batch_mean.var(0, ddof=1)
  assert np.all(np.abs(emp - pred) < K_SE * pred * math.sqrt(2 / (_R - 1))), (
      emp, pred)


def test_lrt_variance_below_shared_weight_sample():
  out_r = _draws("reparam")[0].mean(1)
  out_l = _draws("lrt")[0].mean(1)
  v_r, v_l = out_r.var(0, ddof=1), out_l.var(0, ddof=1)
  # Ratio of two independent sample variances; log-ratio SE ~ sqrt(4 / R).
  assert np.all(np.log(v_r / v_l) > K_SE * math.sqrt(4 / _R))


def _init(model, x, key=0):
  k1, k2 = jax.random.split(jax.random.key(key))
  return model.init({"params": k1, "sample": k2}, x)["params"]


def test_to_var_params_matches_mlp_tree_and_kl():
  model = bl.BayesianMLP((4, 1), layer="lrt", init_scale=0.1)
  x = jnp.ones((2, 3))
  p = _init(model, x)
  var = bl.to_var_params(p)
  mlp_params = networks.MLP((4, 1)).init(jax.random.key(0), x)["params"]
  assert jax.tree.structure(var["loc"]) == jax.tree.structure(mlp_params)
  # The KL of the layer posterior, by the closed form per weight (independent
  # of the core's prior code): log(1/s) + (s^2 + m^2)/2 - 1/2 for N(0, 1).
  m = np.concatenate([np.ravel(a) for a in jax.tree.leaves(var["loc"])])
  s = np.log1p(np.exp(np.concatenate(
      [np.ravel(a) for a in jax.tree.leaves(var["raw_scale"])])))
  expected = np.sum(-np.log(s) + (s**2 + m**2) / 2 - 0.5)
  got = elbo.analytic_kl(priors.gaussian(1.0), {}, var, None)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  with pytest.raises(ValueError, match="no closed-form KL"):
    elbo.analytic_kl(priors.scale_mixture(), {}, var, None)


def test_elbo_training_lowers_loss():
  x = jax.random.normal(jax.random.key(0), (64, 2))
  y = jnp.sin(2 * x[:, 0])
  model = bl.BayesianMLP((16, 1), layer="flipout")
  prior, noise = priors.gaussian(1.0), likelihoods.gaussian(None,
                                                            init_scale=1.0)
  vmodel = elbo.layerwise(
      lambda q, xb, k: model.apply({"params": q}, xb, rngs={"sample": k}),
      bl.to_var_params)
  params = elbo.init_params(_init(model, x, 1), prior, noise,
                            bl.to_var_params)
  loss_fn = elbo.make_loss_fn(vmodel, noise, prior, 64)
  opt = optax.adam(1e-2)
  step = jax.jit(train.make_train_step(loss_fn, opt))
  state = train.init_train_state(params, opt)
  key, data, loss = jax.random.key(2), {"x": x, "y": y}, []
  for t in range(60):  # full-batch steps: one compilation
    state, m = step(state, data, jax.random.fold_in(key, t))
    loss.append(float(m["loss"]))
  loss = np.asarray(loss)
  # The per-datum negative ELBO starts near 0.5 log(2 pi) + var(y)/2 + KL/N and
  # must fall well beyond its step-to-step MC noise (SE of the last 10 steps).
  first, last = loss[:5].mean(), loss[-10:].mean()
  se = loss[-10:].std(ddof=1) / np.sqrt(10)
  assert last < first - 0.1 and last < first - 4 * se, (first, last)
  out = elbo.sample_outputs(vmodel, state.params["posterior"], x,
                            jax.random.key(3), 3)
  assert out.shape == (3, 64, 1)


def test_unknown_layer_raises():
  with pytest.raises(ValueError, match="unknown Bayesian layer"):
    bl.BayesianMLP((2, 1), layer="nope").init(
        {"params": jax.random.key(0), "sample": jax.random.key(1)},
        jnp.ones((1, 2)))
