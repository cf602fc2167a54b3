"""Tests of jaxbdl.bayes.conv_layers: unit marginals, gradient bias and
variance of LRT / Flipout against weight sampling, BayesianCNN <-> CNN."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbdl.bayes import bayesian_layers
from jaxbdl.nn import networks
from jaxbdl.bayes import elbo
from jaxbdl.bayes import priors
from jaxbdl.bayes import conv_layers as cl

K_SE = 4.0   # |estimate - expected| < K_SE * SE, SE computed from the draws.
# Element-wise checks over P ~ 300 units / parameters: Bonferroni at a
# family-wise 1e-3 needs a per-test two-sided 3e-6, i.e. k = 4.7; use 5.
K_MULTI = 5.0
_R = 2000    # draws of the layer noise
_B, _H, _CI, _CO = 4, 5, 2, 3


def _setup(layer):
  """A conv layer with varied posterior scales and positive inputs."""
  x = jax.random.uniform(jax.random.key(0), (_B, _H, _H, _CI))
  module = cl.CONV_LAYERS[layer](_CO, init_scale=0.3)
  params = dict(jax.jit(module.init)({"params": jax.random.key(1),
                             "sample": jax.random.key(2)}, x)["params"])
  params["bias_loc"] = jnp.array([0.5, -0.5, 0.1])
  params["bias_raw_scale"] = jnp.log(jnp.expm1(jnp.array([0.2, 0.4, 0.3])))
  n = params["kernel_loc"].size
  params["kernel_raw_scale"] = jnp.log(jnp.expm1(
      jnp.linspace(0.1, 0.6, n).reshape(params["kernel_loc"].shape)))
  return module, params, x


def _exact_moments(params, x):
  dn = ("NHWC", "HWIO", "NHWC")
  conv = lambda a, w: jax.lax.conv_general_dilated(a, w, (1, 1), "SAME",
                                                   dimension_numbers=dn)
  sp = jax.nn.softplus
  mean = conv(x, params["kernel_loc"]) + params["bias_loc"][None, None, None]
  var = conv(x**2, sp(params["kernel_raw_scale"])**2) + (sp(
      params["bias_raw_scale"])**2)[None, None, None]
  return np.asarray(mean, np.float64), np.asarray(var, np.float64)


_CACHE = {}


def _outputs(layer):
  if layer not in _CACHE:
    module, params, x = _setup(layer)
    keys = jax.random.split(jax.random.key(3), _R)
    out = jax.jit(jax.vmap(lambda k: module.apply(
        {"params": params}, x, rngs={"sample": k})))(keys)
    _CACHE[layer] = np.asarray(out, np.float64), params, x
  return _CACHE[layer]


@pytest.mark.parametrize("layer", ["reparam", "lrt", "flipout"])
def test_output_unit_marginals_match_closed_form(layer):
  out, params, x = _outputs(layer)
  mean, var = _exact_moments(params, x)
  assert np.all(np.abs(out.mean(0) - mean) < K_MULTI * np.sqrt(var / _R))
  # SE of a Gaussian sample variance: var * sqrt(2 / (R - 1)). Flipout's
  # units are Gaussian given the signs, which leave the variance unchanged.
  assert np.all(np.abs(out.var(0, ddof=1) - var)
                < K_MULTI * var * math.sqrt(2 / (_R - 1)))


def _pooled_sum_variance(out):
  """Per-(example, channel) variance of the spatial sum and its SE."""
  pooled = out.sum(axis=(2, 3))                     # [R, B, C_out]
  v = pooled.var(0, ddof=1)
  return v, v * math.sqrt(2 / (_R - 1))


def test_flipout_keeps_spatial_correlation_lrt_drops_it():
  # A sampled kernel is shared by all positions of an image, so the spatial
  # sum of a unit map has variance sum_pp' Cov > sum_p Var for positive x.
  v_rep, se_rep = _pooled_sum_variance(_outputs("reparam")[0])
  v_flip, se_flip = _pooled_sum_variance(_outputs("flipout")[0])
  v_lrt, se_lrt = _pooled_sum_variance(_outputs("lrt")[0])
  assert np.all(np.abs(v_flip - v_rep) < K_MULTI * np.hypot(se_flip, se_rep))
  assert np.all(v_rep - v_lrt > K_MULTI * np.hypot(se_rep, se_lrt))


def _grad_draws(layer, loss):
  module, params, x = _setup(layer)
  w = jax.random.normal(jax.random.key(4), (_H, _H, _CO))

  def objective(p, k):
    a = module.apply({"params": p}, x, rngs={"sample": k})
    return loss(a, w)

  grad = jax.grad(objective)
  keys = jax.random.split(jax.random.key(5), _R)
  g = jax.jit(jax.vmap(lambda k: grad(params, k)))(keys)
  flat = jnp.concatenate([jnp.reshape(g[n], (_R, -1)) for n in sorted(g)], 1)
  return np.asarray(flat, np.float64)                 # [R, P]


def _separable(a, w):   # mean over examples of sum over units of f(a_unit).
  return jnp.mean(jnp.sum(w[None] * jax.nn.softplus(a), axis=(1, 2, 3)))


def _pooled(a, w):      # depends on the joint of an example's units.
  return jnp.mean(jnp.square(jnp.sum(w[None] * a, axis=(1, 2, 3))))


_GRADS = {}


def _grads(layer, loss):
  if (layer, loss.__name__) not in _GRADS:
    _GRADS[layer, loss.__name__] = _grad_draws(layer, loss)
  return _GRADS[layer, loss.__name__]


@pytest.mark.parametrize("layer, loss", [
    ("lrt", _separable), ("flipout", _separable), ("flipout", _pooled)],
    ids=["lrt_separable", "flipout_separable", "flipout_pooled"])
def test_gradient_is_unbiased_vs_weight_sampling(layer, loss):
  g, g_rep = _grads(layer, loss), _grads("reparam", loss)
  se = np.sqrt(g.var(0, ddof=1) / _R + g_rep.var(0, ddof=1) / _R)
  diff = np.abs(g.mean(0) - g_rep.mean(0))
  assert np.all(diff < K_MULTI * se + 1e-6), float(np.max(diff / (se + 1e-12)))


@pytest.mark.parametrize("layer", ["lrt", "flipout"])
def test_gradient_variance_is_lower_than_weight_sampling(layer):
  def total_variance(g):
    q = np.sum(np.square(g - g.mean(0)), axis=1)    # [R]
    return q.mean() * _R / (_R - 1), q.std(ddof=1) / math.sqrt(_R)

  t, se_t = total_variance(_grads(layer, _separable))
  t_rep, se_rep = total_variance(_grads("reparam", _separable))
  # Delta method: SE of a log-ratio of independent estimates.
  se_log = math.hypot(se_t / t, se_rep / t_rep)
  assert math.log(t_rep / t) > K_SE * se_log, (t_rep, t)


def test_bayesian_cnn_tree_kl_and_small_scale_limit():
  x = jax.random.uniform(jax.random.key(6), (3, 8, 8))
  bcnn = cl.BayesianCNN(features=(4, 6), hidden=8, layer="flipout",
                        init_scale=1e-6)
  params = jax.jit(bcnn.init)({"params": jax.random.key(7),
                               "sample": jax.random.key(8)}, x)["params"]
  var = bayesian_layers.to_var_params(params)
  cnn = networks.CNN(features=(4, 6), hidden=8)
  cnn_params = cnn.init(jax.random.key(0), x)["params"]
  assert (jax.tree_util.tree_structure(var["loc"])
          == jax.tree_util.tree_structure(jax.tree_util.tree_map(
              lambda a: a, dict(cnn_params))))
  # sigma -> 0: the Bayesian CNN is the plain CNN at the posterior means.
  want = cnn.apply({"params": var["loc"]}, x)
  got = jax.jit(bcnn.apply)({"params": params}, x,
                            rngs={"sample": jax.random.key(9)})
  np.testing.assert_allclose(got, want, atol=1e-4)
  # KL(N(mu, s^2) || N(0, 1)) summed: closed form per weight.
  prior = priors.gaussian(1.0)
  kl = float(jax.jit(lambda p: elbo.analytic_kl(
      prior, {}, bayesian_layers.to_var_params(p), None))(params))
  leaves = jax.tree_util.tree_leaves
  mu = np.concatenate([np.ravel(a) for a in leaves(var["loc"])]).astype(
      np.float64)
  s = np.log1p(np.exp(np.concatenate(
      [np.ravel(a) for a in leaves(var["raw_scale"])]).astype(np.float64)))
  want_kl = np.sum(0.5 * (s**2 + mu**2 - 1.0) - np.log(s))
  assert abs(kl - want_kl) < 1e-5 * abs(want_kl)


@pytest.mark.parametrize("make, x, match", [
    (lambda: cl.BayesianCNN(layer="gauss"), jnp.zeros((1, 64)),
     "unknown Bayesian layer"),
    (lambda: cl.BayesianCNN(), jnp.zeros((1, 7, 7)), "BayesianCNN expects"),
    (lambda: cl.ConvLRT(3), jnp.zeros((1, 8, 8)), r"expects inputs \[B, H"),
    (lambda: cl.ConvFlipout(3, init_scale=0.0), jnp.zeros((1, 8, 8, 1)),
     "init_scale must be > 0"),
], ids=["layer", "cnn_shape", "conv_shape", "init_scale"])
def test_bad_input_raises(make, x, match):
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(make().init, {"params": jax.random.key(0),
                                 "sample": jax.random.key(1)}, x)


def test_conv_method_needs_cnn_module():
  from jaxbdl.bayes import posterior as post_lib
  from jaxbdl.bayes import registry
  model = post_lib.mlp_model((4,), 3, None, None)
  config = registry.method_config("mfvi_conv_lrt", registry.default_config())
  with pytest.raises(ValueError, match="needs a networks.CNN module"):
    cl.make_lrt(model, config)
