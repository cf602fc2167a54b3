"""The ONE evidence lower bound, for any Gaussian variational family.

The approximate posterior over the weights ``W`` (any pytree, e.g. a Flax
``params`` dict) is by default the fully factorised Gaussian

  ``q(W) = prod_i N(w_i; mu_i, sigma_i^2)``,  ``sigma_i = softplus(rho_i)``,

stored as ``{"loc": mu, "raw_scale": rho}`` (two pytrees shaped like ``W``);
the family is data (``jaxbdl.bayes.families``: mean field, full rank,
low rank plus diagonal), given to :func:`weight_space`.
Training maximises (Graves 2011; Blundell et al. 2015, Eq. 1-2)

  ``ELBO = (1/T) E_q[log p(D | W)] - KL(q(W) || p(W)) <= log p(D)``

(``T = 1``; ``T != 1`` is a tempered posterior, Wenzel et al. 2020) with the
data term estimated on a minibatch of ``B`` of ``N`` examples as
``(N / B) sum_b log p(y_b | x_b, W)``.

How q enters the network is a :class:`VariationalModel`:

* :func:`weight_space` -- sample ``W ~ q`` explicitly and run ``apply(W, x)``
  (mean-field VI over any pytree; ``jaxbdl.bayes.mfvi``). Any estimator of
  ``jaxbdl.gradients.estimators`` gives the data-term gradient (:func:`data_term`), and
  the KL may be closed form, Monte Carlo or "sticking the landing".
* :func:`layerwise` -- a network of Bayesian layers that samples internally
  (local reparameterisation, Flipout; ``jaxbdl.bayes.bayesian_layers``); the KL is
  closed form (the weights are never drawn).

One function, :func:`elbo_terms`, computes the bound for both;
:func:`make_loss_fn` turns it into a ``jaxbdl.training.train`` loss. The trainable
pytree is ``{"posterior": q, "prior": theta, "likelihood": lik_params}``
(:func:`init_params`); the prior's and likelihood's parameters are point
estimates that maximise the ELBO (type-II ML).

References:
  A. Graves (2011), Practical variational inference for neural networks.
  C. Blundell et al. (2015), Weight uncertainty in neural networks, ICML.
  D. P. Kingma, M. Welling (2014), Auto-encoding variational Bayes.
  G. Roeder, Y. Wu, D. Duvenaud (2017), Sticking the landing, NeurIPS.
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih (2020), Monte Carlo gradient
    estimation in machine learning, JMLR.
  F. Wenzel et al. (2020), How good is the Bayes posterior in deep neural
    networks really?, ICML (tempered posteriors).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxbdl.gradients import distributions
from jaxbdl.gradients import estimators
from jaxbdl._checks import check_positive_int
from jaxbdl.bayes import families
from jaxbdl.bayes import likelihoods as lik_lib
from jaxbdl.bayes import priors as prior_lib

PyTree = Any
Array = jax.Array
_tmap = jax.tree_util.tree_map

__all__ = [
    "init_mean_field", "to_normal", "sample_params", "log_q", "entropy",
    "RaveledModel", "ravel_model", "VariationalModel", "weight_space",
    "layerwise", "analytic_kl", "mc_kl", "stl_kl", "auto_kl", "data_term",
    "normal_elbo",
    "init_params", "elbo_terms", "make_loss_fn", "sample_outputs",
]


# ---------------------------------------------------------------------------
# The mean-field family (defined in jaxbdl.bayes.families) is the default.

init_mean_field = families.init_mean_field
to_normal = families.to_normal
sample_params = families.sample_params
log_q = families.log_q
entropy = families.entropy
_MF = families.MEAN_FIELD


class RaveledModel(NamedTuple):
  """A network whose weights are ONE flat vector ``w [P]``.

  Attributes:
    params: ``w [P]`` (``jax.flatten_util.ravel_pytree`` order).
    apply_fn: ``apply_fn(w [P], x) -> outputs``.
    unravel: ``unravel(w [P]) -> pytree``.
  """
  params: Array
  apply_fn: Callable[[Array, Array], Array]
  unravel: Callable[[Array], PyTree]


def ravel_model(params: PyTree,
                apply_fn: Callable[[PyTree, Array], Array]) -> RaveledModel:
  """The same network with its weights raveled into one vector ``[P]``.

  Mean-field q is then two vectors: the same ELBO and gradients, but every
  per-leaf operation (softplus, KL, sample, optimiser update) becomes one
  array op, which is faster for small networks. A learned Gaussian prior then
  learns ONE scale (there is one leaf); samples for a given key differ from
  the pytree form's (one noise vector instead of one per leaf).
  """
  if not jax.tree_util.tree_leaves(params):
    raise ValueError("ravel_model: params has no leaves")
  flat, unravel = ravel_pytree(params)
  return RaveledModel(flat, lambda w, x: apply_fn(unravel(w), x), unravel)


# ---------------------------------------------------------------------------
# How q enters the network.


class VariationalModel(NamedTuple):
  """How the variational posterior enters the network.

  Attributes:
    stochastic_apply: ``(q, x, key) -> outputs [B, K]``: one forward pass with
      fresh posterior noise (a reparameterised sample, differentiable in q).
    mean_field: ``(q) -> {"loc", "raw_scale"}`` over the weight pytree, for
      the KL and the prior's ``init``.
    apply: ``(W, x) -> outputs`` for an explicit weight sample, or ``None``
      when the model samples internally (then only a closed-form KL and the
      reparameterised data term apply).
    family: the ``jaxbdl.bayes.families.Family`` of ``mean_field(q)``
      (mean field unless :func:`weight_space` is given another).
  """
  stochastic_apply: Callable[[PyTree, Array, Array], Array]
  mean_field: Callable[[PyTree], dict]
  apply: Optional[Callable[[PyTree, Array], Array]]
  family: families.Family = _MF


def weight_space(apply_fn: Callable[[PyTree, Array], Array],
                 family: families.Family = _MF) -> VariationalModel:
  """Explicit weight samples ``W ~ q`` (``q`` in ``family``: mean field,
  ``families.fullrank()``, ``families.lowrank(R)``) fed to
  ``apply_fn(W, x)``."""
  return VariationalModel(
      lambda q, x, key: apply_fn(families.draw(family, q, key), x),
      lambda q: q, apply_fn, family)


def layerwise(stochastic_apply: Callable[[PyTree, Array, Array], Array],
              mean_field: Callable[[PyTree], dict]) -> VariationalModel:
  """A network of Bayesian layers that draws its own noise (LRT, Flipout)."""
  return VariationalModel(stochastic_apply, mean_field, None)


# ---------------------------------------------------------------------------
# KL estimators: kl_estimator(prior, theta, q, w, family=mean field) -> scalar.


def analytic_kl(prior: prior_lib.Prior, theta: PyTree, q: dict,
                w: Optional[PyTree], family: families.Family = _MF) -> Array:
  """Closed-form ``KL(q || p)`` (``family.kl(prior)``); ``w`` is unused."""
  del w
  kl = family.kl(prior)
  if kl is None:
    raise ValueError(f"prior {prior.name} has no closed-form KL to the "
                     f"{family.name} family; use mc_kl or stl_kl")
  return kl(theta, q)


def mc_kl(prior: prior_lib.Prior, theta: PyTree, q: dict, w: PyTree,
          family: families.Family = _MF) -> Array:
  """One-sample estimate ``log q(w) - log p(w)`` at the sample ``w``."""
  return family.log_q(q, w) - prior.log_prob(theta, w)


def stl_kl(prior: prior_lib.Prior, theta: PyTree, q: dict, w: PyTree,
           family: families.Family = _MF) -> Array:
  """"Sticking the landing" (Roeder et al. 2017): ``log q`` with
  ``stop_gradient`` on q's parameters, so only the path derivative remains."""
  return (family.log_q(jax.lax.stop_gradient(q), w)
          - prior.log_prob(theta, w))


def auto_kl(prior: prior_lib.Prior, theta: PyTree, q: dict,
            w: Optional[PyTree], family: families.Family = _MF) -> Array:
  """:func:`analytic_kl` when the family has one for the prior, else
  :func:`mc_kl`."""
  if family.kl(prior) is not None:
    return analytic_kl(prior, theta, q, w, family)
  return mc_kl(prior, theta, q, w, family)


def _needs_sample(kl_estimator, prior: prior_lib.Prior,
                  family: families.Family) -> bool:
  return not (kl_estimator is analytic_kl
              or (kl_estimator is auto_kl and family.kl(prior) is not None))


# ---------------------------------------------------------------------------
# The data term through any jaxbdl.gradients.estimators estimator.


def data_term(estimator, f: Callable[[PyTree], Array], q: dict,
              key: Array, family: families.Family = _MF
              ) -> tuple[Array, PyTree]:
  """``(surrogate, w)``: a one-sample estimate of ``E_q[f(W)]`` whose gradient
  w.r.t. ``q`` is ``estimator``'s (q seen as ONE distribution over the
  raveled weights, ``family.distribution(q)``; the chain rule to q's own
  parameters is ``jax.grad``'s) and w.r.t. parameters that ``f`` closes over
  is ``grad f(w)``; ``w`` is the sample it used.

  Args:
    estimator: any ``jaxbdl.gradients.estimators.Estimator`` (or a control-variate
      composition of one); its ``reparameterized`` capability decides whether
      gradients flow through ``w``.
    family: q's ``jaxbdl.bayes.families.Family`` (mean field by default).
  """
  dist, dist_params = family.distribution(q)
  _, unravel = ravel_pytree(q["loc"])
  value = estimator.surrogate(lambda x: f(unravel(x)), dist)(
      dist_params, key, 1)
  w = unravel(estimators.draw_samples(dist, dist_params, key, 1)[0])
  if not _reparameterized(estimator):
    # The surrogate stops gradients through f(x); add grad f(w) for the
    # parameters f closes over (the value is unchanged).
    w = jax.lax.stop_gradient(w)
    fw = f(w)
    value = value + (fw - jax.lax.stop_gradient(fw))
  return value, w


def normal_elbo(estimator, log_lik: Callable[[Array], Array],
                normal_params: dict, prior_params: dict, key: Array,
                num_samples: int) -> Array:
  """The ELBO of ``q = N(loc, scale^2)`` over a flat vector ``w [D]``.

  ``E_q[log_lik(w)] - KL(q || N(prior loc, prior scale^2))`` with the data
  term as ``estimator``'s surrogate (its value the ``num_samples``-sample
  estimate, its gradient the estimator's; Mohamed et al. 2020, Sec. 8) and
  the KL in closed form. The form for estimator studies, where q's
  parameterisation is the caller's (``normal_params = {"loc", "scale"}``).
  """
  data = estimator.surrogate(log_lik, distributions.Normal)(
      normal_params, key, num_samples)
  return data - distributions.Normal.kl(normal_params, prior_params)


def _reparameterized(estimator) -> bool:
  flag = getattr(estimator, "reparameterized", None)
  if flag is None:
    raise ValueError(f"estimator {getattr(estimator, 'name', estimator)!r} "
                     "does not declare whether it is reparameterised")
  return bool(flag)


# ---------------------------------------------------------------------------
# The ELBO.


def init_params(q: PyTree, prior: prior_lib.Prior,
                likelihood: lik_lib.Likelihood,
                mean_field: Callable[[PyTree], dict] = lambda q: q) -> dict:
  """``{"posterior": q, "prior": prior.init(loc), "likelihood": lik.init()}``."""
  return {"posterior": q, "prior": prior.init(mean_field(q)["loc"]),
          "likelihood": likelihood.init()}


def _check_params(params: Any) -> None:
  if not isinstance(params, dict) or set(params) != {"posterior", "prior",
                                                     "likelihood"}:
    keys = sorted(params) if isinstance(params, dict) else type(params).__name__
    raise ValueError("ELBO params must have keys ['posterior', 'prior', "
                     f"'likelihood'] (see elbo.init_params), got {keys}")


def elbo_terms(params: dict, x: Array, y: Array, key: Array, *,
               model: VariationalModel, likelihood: lik_lib.Likelihood,
               prior: prior_lib.Prior, num_data: Any, num_samples: int = 1,
               kl_estimator=auto_kl, estimator=None,
               temperature: Any = 1.0) -> dict:
  """Minibatch ELBO estimate and its parts (scalars, not normalised).

  ``elbo = (N / B) (1/T) sum_b E_q[log p(y_b | x_b, W)] - KL(q || p)``, each
  expectation averaged over ``num_samples`` draws shared by the minibatch.

  Args:
    params: ``{"posterior", "prior", "likelihood"}`` (:func:`init_params`).
    x, y: the minibatch ``[B, ...]``, ``[B]``.
    key: PRNG key.
    model: a :class:`VariationalModel`.
    likelihood: a ``jaxbdl.bayes.likelihoods.Likelihood``.
    prior: a ``jaxbdl.bayes.priors.Prior``.
    num_data: ``N`` (may be traced).
    num_samples: ``S`` (static).
    kl_estimator: :func:`auto_kl`, :func:`analytic_kl`, :func:`mc_kl` or
      :func:`stl_kl`.
    estimator: ``None`` (reparameterised forward passes through
      ``model.stochastic_apply``) or a ``jaxbdl.gradients.estimators.Estimator`` for
      the data term of a :func:`weight_space` model.
    temperature: ``T`` (may be traced).

  Returns:
    ``{"elbo", "expected_log_lik", "kl"}``; ``expected_log_lik`` is the
    ``N / B``-scaled full-data estimate (before tempering).
  """
  _check_params(params)
  b = jnp.shape(x)[0]
  scale = num_data / b
  q, theta, lik = params["posterior"], params["prior"], params["likelihood"]

  def data_fn(outputs):
    ll = likelihood.log_prob(lik, y, outputs)
    if ll.shape != (b,):
      raise ValueError(f"log_prob must return [B] = [{b}], got {ll.shape}")
    return scale * jnp.sum(ll)

  family = model.family
  explicit = (estimator is not None
              or _needs_sample(kl_estimator, prior, family))
  if explicit and model.apply is None:
    raise ValueError("this variational model samples inside its layers: it "
                     "needs estimator=None and a prior with a closed-form KL "
                     f"(prior {prior.name})")

  def one(k):
    if not explicit:
      data = data_fn(model.stochastic_apply(q, x, k))
      return data, kl_estimator(prior, theta, model.mean_field(q), None,
                                family)
    est = estimators.pathwise if estimator is None else estimator
    data, w = data_term(est, lambda w: data_fn(model.apply(w, x)), q, k,
                        family)
    return data, kl_estimator(prior, theta, q, w, family)

  data, kl = jax.vmap(one)(jax.random.split(key, num_samples))
  data, kl = jnp.mean(data), jnp.mean(kl)
  return {"elbo": data / temperature - kl, "expected_log_lik": data, "kl": kl}


def make_loss_fn(model: VariationalModel, likelihood: lik_lib.Likelihood,
                 prior: prior_lib.Prior, num_data: Any, num_samples: int = 1,
                 kl_estimator=auto_kl, estimator=None, temperature: Any = 1.0):
  """``-ELBO / N`` as a ``jaxbdl.training.train`` loss (same optimum, friendly scale).

  Returns:
    ``loss_fn(params, model_state, batch, key) -> (loss, (model_state,
    metrics))`` with metrics ``elbo``, ``kl``, ``nll`` (mean per-example
    negative expected log-likelihood).
  """
  check_positive_int("num_samples", num_samples)
  if kl_estimator is analytic_kl and model.family.kl(prior) is None:
    raise ValueError(f"prior {prior.name} has no closed-form KL to the "
                     f"{model.family.name} family; use mc_kl, stl_kl or "
                     "auto_kl")
  if (estimator is not None and not _reparameterized(estimator)
      and _needs_sample(kl_estimator, prior, model.family)):
    raise ValueError("a non-reparameterised data estimator (e.g. "
                     "score_function) needs a closed-form KL (analytic_kl, or "
                     f"auto_kl with a prior that has one); prior {prior.name}")

  def loss_fn(params, model_state, batch, key):
    x, y = (batch["x"], batch["y"]) if isinstance(batch, dict) else batch
    t = elbo_terms(params, x, y, key, model=model, likelihood=likelihood,
                   prior=prior, num_data=num_data, num_samples=num_samples,
                   kl_estimator=kl_estimator, estimator=estimator,
                   temperature=temperature)
    metrics = {"elbo": t["elbo"], "kl": t["kl"],
               "nll": -t["expected_log_lik"] / num_data}
    return -t["elbo"] / num_data, (model_state, metrics)

  return loss_fn


def sample_outputs(model: VariationalModel, q: PyTree, x: Array, key: Array,
                   num_samples: int) -> Array:
  """Outputs of ``S`` posterior passes ``[S, N, K]``; pass ``s`` uses
  ``fold_in(key, s)``."""
  keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(num_samples))
  return jax.vmap(lambda k: model.stochastic_apply(q, x, k))(keys)
