"""MAP: a point mass at the maximum a posteriori weights.

Training minimises the negative log joint per datum (the lecture's
"training is MAP"),

  ``L(W) = -[(N / B) (1/T) sum_b log p(y_b | x_b, W) + log p(W)] / N``,

with the likelihood's own parameters (a learned noise scale) and the prior's
(a learned scale) fitted jointly as point estimates. With
``config.valid_fraction > 0`` the harness carves a validation part and
training stops early on its predictive NLL (``config.patience`` epochs).

MC dropout (``jaxbdl.bayes.mc_dropout``) and deep ensembles
(``jaxbdl.bayes.ensembles``) reuse :func:`point_method`.

Config fields: ``num_epochs``, ``batch_size``, ``patience``,
``valid_fraction``. Hyper-parameters: ``learning_rate``, ``temperature``
and whatever the model's likelihood and prior read (``prior_scale``,
``noise_scale``).

References:
  Bishop (2006), Sec. 1.2.5 and Eq. 3.55; MacKay (1992).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from jaxbdl.bayes import posterior as post_lib

PyTree = Any
Array = jax.Array

__all__ = ["make", "point_method", "neg_log_joint_loss"]


def neg_log_joint_loss(train_apply: Callable, likelihood, prior, num_data,
                       temperature: Any = 1.0):
  """The per-datum negative log joint as a ``jaxbdl.training.train`` loss.

  Args:
    train_apply: ``(W, x, key) -> outputs [B, K]`` in training mode.
    likelihood, prior: the core's ``Likelihood`` / ``Prior``.
    num_data: ``N``.
    temperature: ``T`` (tempered likelihood).

  The trainable pytree is ``{"net": W, "likelihood": lik, "prior": theta}``.
  """

  def loss_fn(params, model_state, batch, key):
    x, y = batch["x"], batch["y"]
    out = train_apply(params["net"], x, key)
    ll = likelihood.log_prob(params["likelihood"], y, out)
    data = (num_data / x.shape[0]) * jnp.sum(ll)
    log_prior = prior.log_prob(params["prior"], params["net"])
    loss = -(data / temperature + log_prior) / num_data
    return loss, (model_state, {"nll": -jnp.mean(ll)})

  return loss_fn


def point_method(name: str, model: post_lib.Model, config, *,
                 stochastic: bool, num_predict: int = 1,
                 module_for: Optional[Callable] = None) -> post_lib.Posterior:
  """A network trained as MAP; predictions from the deterministic network or
  from ``num_predict`` stochastic passes (``stochastic=True``: dropout on).

  Args:
    module_for: ``module_for(hp) -> module`` (e.g. with ``hp``'s dropout
      rate); default ``model.module``.
  """
  module_for = module_for or (lambda hp: model.module)

  def train_apply(hp):
    m = module_for(hp)
    if stochastic:
      return lambda w, x, k: m.apply({"params": w}, x, train=True,
                                     rngs={"dropout": k})
    return lambda w, x, k: m.apply({"params": w}, x)

  def outputs(state, x, key, hp, num):
    if not stochastic:
      return post_lib.point_apply(module_for(hp))(state["net"], x)[None]
    apply = train_apply(hp)
    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(num))
    return jax.vmap(lambda k: apply(state["net"], x, k))(keys)

  def predict(state, x, key, hp):
    lik = model.likelihood(hp)

    def one(xc):
      return lik.predictive(state["likelihood"], outputs(state, xc, key, hp,
                                                          num_predict))

    return post_lib.chunked(one, x, config.get("predict_batch_size"))

  def fit(key, data, hp, valid=None):
    n, xshape = post_lib.check_data(data)
    k_init, k_fit = jax.random.split(key)
    lik, prior = model.likelihood(hp), model.prior(hp)
    net = module_for(hp).init(k_init, jnp.zeros((1,) + xshape,
                                                jnp.float32))["params"]
    params = {"net": net, "likelihood": lik.init(), "prior": prior.init(net)}
    loss_fn = neg_log_joint_loss(train_apply(hp), lik, prior, n,
                                 hp.get("temperature", 1.0))
    eval_fn = post_lib.validation_nll(
        lambda p, xv: lik.predictive(p["likelihood"],
                                     outputs(p, xv, jax.random.key(0), hp, 1)))
    return post_lib.gradient_fit(loss_fn, params, config, hp, data, k_fit,
                                 valid, eval_fn)

  return post_lib.Posterior(name, fit, predict,
                            float(config.get("valid_fraction", 0.0)))


def make(model: post_lib.Model, config) -> post_lib.Posterior:
  """MAP (see the module docstring)."""
  return point_method("map", model, config, stochastic=False)
