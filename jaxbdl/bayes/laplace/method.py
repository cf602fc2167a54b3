"""Laplace approximations as registry methods of the Bayesian core.

``fit`` depends on ``config.marglik`` (a shared field, so ``experiments.fit
--config.marglik=False`` reaches every Laplace method):

* ``"posthoc"`` (default; ``True``): train the MAP
  (``jaxbdl.bayes.map_estimate``: the negative log joint with the model's
  prior and likelihood), fit the Laplace approximation around it on the same
  training data, then fit the prior precision and (regression) the
  observation noise by the Laplace evidence;
* ``"online"``: online marginal-likelihood training (``online``; Immer et
  al. 2021, Algorithm 1) from the model prior's precision and the
  likelihood's initial noise: every ``marglik_frequency`` epochs after
  ``marglik_burnin``, ``marglik_steps`` Adam(``marglik_lr``) steps on the
  evidence; no validation split (``valid_fraction`` is 0);
* ``False`` (``"False"``, ``"none"``): MAP, then the Laplace approximation
  with the model's prior precision and the MAP's noise. ``predict`` is the GLM predictive
(``S = 1``: one Gaussian / one probit probability vector) or, with
``config.pred_type = "nn"``, ``num_predict_samples`` weight draws.

Config fields (``registry.default_config().laplace_*``): ``prior_structure`` ("scalar" | "layerwise" | "diagonal"),
``marglik_steps``, ``marglik_lr``, ``marglik_frequency``,
``marglik_burnin``, ``curvature`` ("ggn" | "ef"),
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
import optax
from jax.flatten_util import ravel_pytree

from jaxbdl.bayes import map_estimate
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes.laplace import approximation
from jaxbdl.bayes.laplace import online

__all__ = ["make", "make_full", "make_diag", "make_kfac", "make_last_layer",
           "likelihood_kind", "marglik_mode", "MARGLIK_MODES"]

MARGLIK_MODES = ("posthoc", "online", False)
_OFF = (False, None, "false", "none", "off", "no", "0", "")
_POSTHOC = (True, "posthoc", "true", "yes", "1")


def marglik_mode(value):
  """``config.marglik`` -> ``"posthoc"``, ``"online"`` or ``False``; strings
  from the command line (``"False"``, ``"True"``) included."""
  v = value.strip().lower() if isinstance(value, str) else value
  if v in _POSTHOC:
    return "posthoc"
  if v == "online":
    return "online"
  if v in _OFF:
    return False
  raise ValueError(f"config.marglik must be one of {MARGLIK_MODES} (or "
                   f"True), got {value!r}")


def likelihood_kind(lik) -> str:
  """The Laplace likelihood name of a core ``Likelihood`` (capabilities)."""
  if lik.classification:
    return "binary" if lik.num_outputs == 1 else "classification"
  if lik.num_outputs != 1:
    raise ValueError("Laplace supports homoscedastic Gaussian regression "
                     f"(num_outputs == 1); likelihood {lik.name!r} has "
                     f"num_outputs={lik.num_outputs}")
  return "regression"


def _all_prior_precision(model, hp, prior_params, net):
  """Per weight of the whole network ``[P_all]`` from ``Prior.precision``,
  else ``1 / hp["prior_scale"]^2``."""
  prior = model.prior(hp)
  flat_net = ravel_pytree(net)[0]
  if prior.precision is None:
    return jnp.full(flat_net.shape, 1.0 / hp["prior_scale"] ** 2,
                    flat_net.dtype)
  tree = prior.precision(prior_params, net)
  return ravel_pytree(jax.tree.map(
      lambda a, w: jnp.broadcast_to(a, jnp.shape(w)), tree, net))[0]


def _prior_precision(model, hp, map_state, subset):
  """Per selected weight ``[P]`` from ``Prior.precision``, else from
  ``hp["prior_scale"]`` (``[1]``)."""
  if model.prior(hp).precision is None:
    return jnp.asarray(1.0 / hp["prior_scale"] ** 2).reshape(1)
  return _all_prior_precision(model, hp, map_state["prior"],
                              map_state["net"])[subset.idx]


def _init_noise(lik, lik_params, dtype):
  """The likelihood's noise scale at ``lik_params`` (regression)."""
  var = lik.predictive(lik_params, jnp.zeros((1, 1), dtype))
  return jnp.sqrt(var["variance"][0])


def make(model: post_lib.Model, config, *, hessian_structure: str = "full",
         subset_of_weights="all", name: str = "laplace") -> post_lib.Posterior:
  """A Laplace :class:`Posterior` (see the module docstring)."""
  mode = marglik_mode(config.get("marglik", "posthoc"))
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

  def fit_online(key, data, hp):
    n, xshape = post_lib.check_data(data)
    lik, prior = model.likelihood(hp), model.prior(hp)
    kind = likelihood_kind(lik)
    k_init, k_fit = jax.random.split(key)
    net = model.module.init(k_init, jnp.zeros((1,) + xshape,
                                              jnp.float32))["params"]
    la = approx(net, hp)
    lik_params, prior_params = lik.init(), prior.init(net)
    dtype = jax.tree.leaves(net)[0].dtype
    base = _all_prior_precision(model, hp, prior_params, net)
    res = online.marglik_training(
        la, net, data["x"], data["y"], k_fit,
        num_epochs=int(config.num_epochs),
        batch_size=min(int(config.batch_size), n),
        optimizer=optax.adam(hp["learning_rate"]),
        prior_structure=config.get("prior_structure", "scalar"),
        n_hypersteps=int(config.get("marglik_steps", 100)),
        hyper_optimizer=optax.adam(float(config.get("marglik_lr", 0.1))),
        frequency=int(config.get("marglik_frequency", 1)),
        burnin=int(config.get("marglik_burnin", 0)),
        prior_precision=jnp.mean(base[la.spec.subset.idx]),
        sigma_noise=(_init_noise(lik, lik_params, dtype)
                     if kind == "regression" else 1.0),
        base_precision=base, temperature=hp.get("temperature", 1.0))
    map_state = {"net": res.params, "likelihood": lik_params,
                 "prior": prior_params}
    return {"map": map_state, "laplace": res.laplace}, res.history

  def fit(key, data, hp, valid=None):
    if mode == "online":
      return fit_online(key, data, hp)
    lik = model.likelihood(hp)
    kind = likelihood_kind(lik)
    map_state, history = map_post.fit(key, data, hp, valid)
    net = map_state["net"]
    la = approx(net, hp)
    if kind == "regression":
      sigma = _init_noise(lik, map_state["likelihood"],
                          jax.tree.leaves(net)[0].dtype)
    else:
      sigma = 1.0
    state = la.fit(net, data["x"], data["y"],
                   prior_precision=_prior_precision(model, hp, map_state,
                                                    la.spec.subset),
                   sigma_noise=sigma,
                   temperature=hp.get("temperature", 1.0))
    if mode == "posthoc":
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

  valid_fraction = 0.0 if mode == "online" else float(
      config.get("valid_fraction", 0.0))
  return post_lib.Posterior(name, fit, predict, valid_fraction)


def make_full(model, config):
  """Full GGN over all weights (``laplace_full``)."""
  return make(model, config, hessian_structure="full", name="laplace_full")


def make_diag(model, config):
  """Diagonal GGN over all weights (``laplace_diag``)."""
  return make(model, config, hessian_structure="diag", name="laplace_diag")


def make_kfac(model, config):
  """KFAC GGN over all Dense / Conv weights (``laplace_kfac``)."""
  return make(model, config, hessian_structure="kron", name="laplace_kfac")


def make_last_layer(model, config):
  """Full GGN over the last layer (``laplace_last_layer``)."""
  return make(model, config, hessian_structure="full",
              subset_of_weights="last_layer", name="laplace_last_layer")
