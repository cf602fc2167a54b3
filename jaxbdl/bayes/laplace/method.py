"""Laplace approximations as registry methods of the Bayesian core.

``fit`` trains the MAP (``jaxbdl.bayes.map_estimate``: the negative log
joint with the model's prior and likelihood), then fits the Laplace
approximation around it on the same training data and, with
``config.marglik`` (default), fits the prior precision and (regression) the
observation noise by the Laplace evidence. ``predict`` is the GLM predictive
(``S = 1``: one Gaussian / one probit probability vector) or, with
``config.pred_type = "nn"``, ``num_predict_samples`` weight draws.

Config fields (``registry.default_config().laplace_*``): ``marglik``,
``prior_structure`` ("scalar" | "layerwise" | "diagonal"),
``marglik_steps``, ``marglik_lr``, ``curvature`` ("ggn" | "ef"),
``link_approx`` ("probit" | "mc"), ``pred_type`` ("glm" | "nn"),
``curvature_batch_size``; plus MAP's ``num_epochs``, ``batch_size``,
``patience``, ``valid_fraction`` and the shared ``num_predict_samples``,
``predict_batch_size``. With ``marglik=False`` the prior precision is the
model prior's (``1 / prior_scale^2`` for ``priors.gaussian``) and the noise
the MAP likelihood's (``noise_scale`` when fixed).

Likelihoods: homoscedastic Gaussian (``num_outputs == 1``), categorical and
Bernoulli; others raise ``ValueError``.

References:
  Daxberger et al. (2021), *Laplace Redux*, Sec. 3-4.
  Immer, Korzepa & Bauer (2021), *Improving predictions of Bayesian neural
  nets via local linearization*, AISTATS.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxbdl.bayes import map_estimate
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes.laplace import approximation

__all__ = ["make", "make_full", "make_diag", "make_kfac", "make_last_layer",
           "likelihood_kind"]


def likelihood_kind(lik) -> str:
  """The Laplace likelihood name of a core ``Likelihood`` (capabilities)."""
  if lik.classification:
    return "binary" if lik.num_outputs == 1 else "classification"
  if lik.num_outputs != 1:
    raise ValueError("Laplace supports homoscedastic Gaussian regression "
                     f"(num_outputs == 1); likelihood {lik.name!r} has "
                     f"num_outputs={lik.num_outputs}")
  return "regression"


def _prior_precision(model, hp, map_state, subset):
  """Per selected weight ``[P]`` from ``Prior.precision``, else from
  ``hp["prior_scale"]``."""
  prior = model.prior(hp)
  if prior.precision is None:
    return jnp.asarray(1.0 / hp["prior_scale"] ** 2).reshape(1)
  tree = prior.precision(map_state["prior"], map_state["net"])
  flat = ravel_pytree(jax.tree.map(
      lambda a, w: jnp.broadcast_to(a, jnp.shape(w)), tree,
      map_state["net"]))[0]
  return flat[subset.idx]


def make(model: post_lib.Model, config, *, hessian_structure: str = "full",
         subset_of_weights="all", name: str = "laplace") -> post_lib.Posterior:
  """A Laplace :class:`Posterior` (see the module docstring)."""
  map_post = map_estimate.make(model, config)
  apply_fn = post_lib.point_apply(model.module)
  cache = {}

  def approx(net, hp):
    lik = model.likelihood(hp)
    key = (jax.tree.structure(net),
           tuple((np.shape(a), str(a.dtype)) for a in jax.tree.leaves(net)),
           lik.name, lik.num_outputs, lik.classification)
    if key not in cache:
      cache[key] = approximation.Laplace(
          apply_fn, net, likelihood_kind(lik),
          subset_of_weights=subset_of_weights,
          hessian_structure=hessian_structure,
          curvature=config.get("curvature", "ggn"),
          chunk_size=int(config.get("curvature_batch_size", 256)))
    return cache[key]

  def fit(key, data, hp, valid=None):
    lik = model.likelihood(hp)
    kind = likelihood_kind(lik)
    map_state, history = map_post.fit(key, data, hp, valid)
    net = map_state["net"]
    la = approx(net, hp)
    if kind == "regression":
      var = lik.predictive(map_state["likelihood"],
                           jnp.zeros((1, 1), jax.tree.leaves(net)[0].dtype))
      sigma = jnp.sqrt(var["variance"][0])
    else:
      sigma = 1.0
    state = la.fit(net, data["x"], data["y"],
                   prior_precision=_prior_precision(model, hp, map_state,
                                                    la.spec.subset),
                   sigma_noise=sigma,
                   temperature=hp.get("temperature", 1.0))
    if config.get("marglik", True):
      state, mh = la.optimize_prior_precision(
          state, prior_structure=config.get("prior_structure", "scalar"),
          fit_noise=kind == "regression",
          n_steps=int(config.get("marglik_steps", 100)),
          lr=float(config.get("marglik_lr", 0.1)))
      history = {**history, **mh}
    return {"map": map_state, "laplace": state}, history

  def predict(state, x, key, hp):
    la = approx(state["map"]["net"], hp)
    pred_type = config.get("pred_type", "glm")
    pred = la.predict(state["laplace"], x, pred_type=pred_type,
                      link_approx=config.get("link_approx", "probit"),
                      n_samples=int(config.get("num_predict_samples", 100)),
                      key=key,
                      chunk_size=int(config.get("predict_batch_size", 256)))
    if pred_type == "nn":
      return pred
    if la.spec.likelihood == "regression":
      return {"mean": pred["mean"][None], "variance": pred["variance"][None]}
    return {"probs": pred["probs"][None]}

  return post_lib.Posterior(name, fit, predict,
                            float(config.get("valid_fraction", 0.0)))


def make_full(model, config):
  """Full GGN over all weights (``laplace_full``)."""
  return make(model, config, hessian_structure="full", name="laplace_full")


def make_diag(model, config):
  """Diagonal GGN over all weights (``laplace_diag``)."""
  return make(model, config, hessian_structure="diag", name="laplace_diag")


def make_kfac(model, config):
  """KFAC GGN over all Dense weights (``laplace_kfac``)."""
  return make(model, config, hessian_structure="kron", name="laplace_kfac")


def make_last_layer(model, config):
  """Full GGN over the last layer (``laplace_last_layer``)."""
  return make(model, config, hessian_structure="full",
              subset_of_weights="last_layer", name="laplace_last_layer")
