"""Mean-field Gaussian VI over a network's weights (the core's one ELBO).

Three ways for q to enter the network, one bound (``jaxbdl.bayes.elbo``):

* ``mfvi``: explicit weight samples ``W ~ q`` over any Flax module's
  parameter pytree; with ``config.flat`` the weights are raveled into one
  vector (``elbo.ravel_model``: same ELBO, faster for small networks);
* ``mfvi_lrt``: the local reparameterisation trick (Kingma et al. 2015),
* ``mfvi_flipout``: Flipout (Wen et al. 2018),
  both through ``jaxbdl.bayes.bayesian_layers.BayesianMLP`` built from the model's
  ``networks.MLP`` (same widths and activation).

The prior and the likelihood's parameters are point estimates trained with
q (type-II ML). Prediction: ``config.num_predict_samples`` posterior passes,
chunked over inputs (``config.predict_batch_size``).

Config fields: ``num_epochs``, ``batch_size``, ``init_scale`` (initial
posterior standard deviation), ``num_train_samples``,
``num_predict_samples``, ``kl`` (``"auto" | "analytic" | "mc" | "stl"``),
``estimator`` (data term: ``"pathwise" | "score_function"``; the score
function needs a closed-form KL and explicit weight samples).
Hyper-parameters: ``learning_rate``, ``temperature`` and the model's.

References:
  C. Blundell et al. (2015), Weight uncertainty in neural networks, ICML.
  D. P. Kingma, T. Salimans, M. Welling (2015), Variational dropout and the
    local reparameterization trick, NeurIPS.
  Y. Wen et al. (2018), Flipout, ICLR.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxbdl.bayes import bayesian_layers
from jaxbdl.gradients import estimators
from jaxbdl.nn import networks
from jaxbdl.bayes import elbo
from jaxbdl.bayes import posterior as post_lib

__all__ = ["make", "make_lrt", "make_flipout", "variational", "KL_ESTIMATORS",
           "ESTIMATORS"]

KL_ESTIMATORS = {"auto": elbo.auto_kl, "analytic": elbo.analytic_kl,
                 "mc": elbo.mc_kl, "stl": elbo.stl_kl}
# Data-term gradient: "pathwise" = reparameterised forward passes
# (``estimator=None``: the model's own sampling, also LRT / Flipout).
ESTIMATORS = {"pathwise": None, "score_function": estimators.score_function}


def _choice(config, field: str, default: str, table: dict, what: str):
  name = config.get(field, default)
  if name not in table:
    raise ValueError(f"unknown {what} {name!r}; valid: {sorted(table)}")
  return table[name]


def variational(name: str, model: post_lib.Model, config, build, init_q):
  """A Posterior trained by the core ELBO (``elbo.make_loss_fn``) from
  ``build(xshape) -> VariationalModel`` and ``init_q(key, xshape) -> q``
  (used by every VI method, also ``gaussian_vi``)."""
  num_train = int(config.get("num_train_samples", 1))
  num_predict = int(config.num_predict_samples)
  kl_estimator = _choice(config, "kl", "auto", KL_ESTIMATORS, "kl estimator")
  estimator = _choice(config, "estimator", "pathwise", ESTIMATORS,
                      "data-term estimator")

  def predict_with(vmodel, params, x, key, hp, num):
    lik = model.likelihood(hp)

    def one(xc):
      out = elbo.sample_outputs(vmodel, params["posterior"], xc, key, num)
      return lik.predictive(params["likelihood"], out)

    return post_lib.chunked(one, x, config.get("predict_batch_size"))

  def fit(key, data, hp, valid=None):
    n, xshape = post_lib.check_data(data)
    k_init, k_fit = jax.random.split(key)
    vmodel = build(xshape)
    lik, prior = model.likelihood(hp), model.prior(hp)
    params = elbo.init_params(init_q(k_init, xshape), prior, lik,
                              vmodel.mean_field)
    loss_fn = elbo.make_loss_fn(vmodel, lik, prior, n, num_train,
                                kl_estimator, estimator,
                                temperature=hp.get("temperature", 1.0))
    eval_fn = post_lib.validation_nll(
        lambda p, xv: predict_with(vmodel, p, xv, jax.random.key(0), hp, 10))
    return post_lib.gradient_fit(loss_fn, params, config, hp, data, k_fit,
                                 valid, eval_fn)

  def predict(state, x, key, hp):
    return predict_with(build(tuple(x.shape[1:])), state, x, key, hp,
                        num_predict)

  return post_lib.Posterior(name, fit, predict,
                            float(config.get("valid_fraction", 0.0)))


def _zeros(xshape):
  return jnp.zeros((1,) + tuple(xshape), jnp.float32)


def make(model: post_lib.Model, config) -> post_lib.Posterior:
  """Mean-field VI with explicit weight samples (any Flax module)."""
  init_scale = float(config.init_scale)
  flat = bool(config.get("flat", False))
  module = model.module
  apply = post_lib.point_apply(module)

  def unravel_for(xshape):
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0),
                                                _zeros(xshape)))["params"]
    return ravel_pytree(jax.tree_util.tree_map(
        lambda s: jnp.zeros(s.shape, s.dtype), shapes))[1]

  def build(xshape):
    if not flat:
      return elbo.weight_space(apply)
    unravel = unravel_for(xshape)
    return elbo.weight_space(lambda w, x: apply(unravel(w), x))

  def init_q(key, xshape):
    w = module.init(key, _zeros(xshape))["params"]
    if flat:
      w = ravel_pytree(w)[0]
    return elbo.init_mean_field(w, init_scale)

  return variational("mfvi", model, config, build, init_q)


def _make_layers(name: str, layer: str, model: post_lib.Model, config):
  module = model.module
  if not isinstance(module, networks.MLP):
    raise ValueError(f"{name} needs a networks.MLP module (its widths and "
                     f"activation), got {type(module).__name__}")
  bmlp = bayesian_layers.BayesianMLP(tuple(module.features),
                                     activation=module.activation,
                                     layer=layer,
                                     init_scale=float(config.init_scale))
  vmodel = elbo.layerwise(
      lambda q, x, key: bmlp.apply({"params": q}, x, rngs={"sample": key}),
      bayesian_layers.to_var_params)

  def init_q(key, xshape):
    k1, k2 = jax.random.split(key)
    return bmlp.init({"params": k1, "sample": k2}, _zeros(xshape))["params"]

  return variational(name, model, config, lambda xshape: vmodel, init_q)


def make_lrt(model: post_lib.Model, config) -> post_lib.Posterior:
  """Mean-field VI with the local reparameterisation trick."""
  return _make_layers("mfvi_lrt", "lrt", model, config)


def make_flipout(model: post_lib.Model, config) -> post_lib.Posterior:
  """Mean-field VI with Flipout."""
  return _make_layers("mfvi_flipout", "flipout", model, config)
