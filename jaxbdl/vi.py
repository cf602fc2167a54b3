"""Mean-field Gaussian variational inference over any Flax parameter pytree.

The posterior over the weights ``W`` (any pytree, e.g. an ``MLP``'s params) is
approximated by the fully factorised Gaussian

  ``q(W) = prod_i N(w_i; mu_i, sigma_i^2)``,  ``sigma_i = softplus(rho_i)``,

stored as the *variational parameters* ``{"loc": mu, "raw_scale": rho}`` (two
pytrees with the structure of ``W``). Training maximises the evidence lower
bound (Graves 2011; Blundell et al. 2015, Eq. 1-2)

  ``ELBO = E_q[log p(D | W)] - KL(q(W) || p(W)) <= log p(D)``,

with the data term estimated on a minibatch of ``B`` of ``N`` examples as
``(N / B) sum_b log p(y_b | x_b, W)`` at reparameterised samples
``W = mu + sigma * eps`` (the pathwise estimator; a score-function surrogate is
available for comparison).

Pieces:

* :func:`init_mean_field`, :func:`to_normal`, :func:`sample_params`,
  :func:`log_q`, :func:`entropy` -- the variational family;
  :func:`ravel_model` -- the same network with its weights as one vector, so
  that q is two vectors (faster for small networks; same ELBO and gradients).
* :class:`Prior` (``init``, ``log_prob``, ``kl``) and factories
  :func:`gaussian_prior` (fixed scale), :func:`learned_gaussian_prior`
  (empirical Bayes: one learned log-scale per leaf), :func:`laplace_prior`,
  :func:`scale_mixture_prior` (Blundell et al. 2015, Eq. 7; no closed-form KL).
* KL estimators ``kl_estimator(prior, prior_params, var_params, w)``:
  :func:`analytic_kl`, :func:`mc_kl` (``log q(w) - log p(w)`` at the sample),
  :func:`stl_kl` ("sticking the landing", Roeder, Wu & Duvenaud 2017: the
  variational parameters inside ``log q`` are wrapped in ``stop_gradient``, so
  the zero-mean score term of the gradient is dropped) and :func:`auto_kl`
  (analytic when the prior has one, else MC).
* Data-term estimators ``(f, var_params, key) -> (surrogate, w)`` adapted
  from ``jaxbdl.estimators`` by :func:`from_estimator`: :data:`pathwise`
  (default) and :data:`score_function`.
* Observation noise: log-likelihoods ``log_lik(lik_params, y, outputs) -> [B]``
  with point-estimated (type-II) parameters: :func:`learned_gaussian_noise`,
  :func:`fixed_gaussian_noise`, :func:`heteroscedastic_gaussian_noise`.
* :func:`make_elbo_loss_fn` -- a ``jaxbdl.train`` loss function, so
  ``train.make_fit`` trains it; :func:`init_elbo_params` builds its params
  ``{"posterior": var_params, "prior": prior_params, "likelihood": lik}``.
* :func:`predict` -- network outputs at ``S`` posterior samples ``[S, N, ...]``.

Example::

  model = networks.MLP((50, 1))
  params = model.init(key, x[:1])["params"]
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  prior = vi.gaussian_prior(1.0)
  noise = vi.learned_gaussian_noise(init_scale=0.5)
  elbo_params = vi.init_elbo_params(params, prior, noise, init_scale=1e-3)
  loss_fn = vi.make_elbo_loss_fn(apply_fn, noise.log_likelihood, prior,
                                 num_data=len(x))
  fit = train.make_fit(loss_fn, optax.adam(1e-3), num_epochs=100,
                       batch_size=32)

References:
  A. Graves (2011), Practical variational inference for neural networks.
  C. Blundell, J. Cornebise, K. Kavukcuoglu, D. Wierstra (2015), Weight
    uncertainty in neural networks, ICML (Eq. 1-2 ELBO, Eq. 7 scale mixture).
  D. P. Kingma, M. Welling (2014), Auto-encoding variational Bayes (the
    reparameterisation trick).
  G. Roeder, Y. Wu, D. Duvenaud (2017), Sticking the landing, NeurIPS.
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih (2020), Monte Carlo gradient
    estimation in machine learning, JMLR (pathwise / score-function).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jax.flatten_util import ravel_pytree

from jaxbdl import distributions
from jaxbdl import estimators
from jaxbdl import likelihoods
from jaxbdl import objectives

PyTree = Any
Array = jax.Array

__all__ = [
    "init_mean_field", "to_normal", "sample_params", "log_q", "entropy",
    "RaveledModel", "ravel_model", "softplus_inverse", "Prior",
    "gaussian_prior", "learned_gaussian_prior", "laplace_prior",
    "scale_mixture_prior", "analytic_kl", "mc_kl", "stl_kl", "auto_kl",
    "from_estimator", "pathwise", "score_function", "NoiseModel",
    "learned_gaussian_noise", "fixed_gaussian_noise",
    "heteroscedastic_gaussian_noise", "init_elbo_params", "elbo_terms",
    "make_elbo_loss_fn", "predict", "predict_moments",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_tmap = jax.tree_util.tree_map


def _tree_sum(tree: PyTree) -> Array:
  leaves = jax.tree_util.tree_leaves(tree)
  return sum((jnp.sum(x) for x in leaves), jnp.float32(0.0))


def _split_like(key: Array, tree: PyTree) -> PyTree:
  """One independent key per leaf of ``tree``."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = jax.random.split(key, max(len(leaves), 1))
  return jax.tree_util.tree_unflatten(treedef, list(keys[:len(leaves)]))


# ---------------------------------------------------------------------------
# The variational family.


def softplus_inverse(x: Any) -> Array:
  """``rho`` with ``softplus(rho) = x`` for ``x > 0`` (numerically stable)."""
  x = jnp.asarray(x, jnp.float32)
  return x + jnp.log(-jnp.expm1(-x))


def init_mean_field(params: PyTree, init_scale: float = 1e-3) -> dict:
  """Mean-field Gaussian centred on ``params`` with a small standard deviation.

  Args:
    params: any pytree of float arrays (e.g. a Flax ``params`` dict); its
      values become the means ``mu`` (start VI from a random initialisation).
    init_scale: initial standard deviation ``sigma > 0`` of every weight.

  Returns:
    ``{"loc": params, "raw_scale": rho}`` with ``softplus(rho) = init_scale``.
  """
  if not init_scale > 0:
    raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
  rho = softplus_inverse(init_scale)
  return {"loc": params,
          "raw_scale": _tmap(lambda p: jnp.full(jnp.shape(p), rho,
                                                jnp.result_type(p)), params)}


def _check_var_params(var_params: Any) -> None:
  if not isinstance(var_params, dict) or set(var_params) != {"loc",
                                                            "raw_scale"}:
    keys = sorted(var_params) if isinstance(var_params, dict) else type(
        var_params).__name__
    raise ValueError("variational params must be a dict with keys "
                     f"['loc', 'raw_scale'], got {keys}")


def to_normal(var_params: dict) -> dict:
  """``{"loc": mu, "scale": softplus(rho)}``, pytrees with the structure of W.

  Leaf-wise, ``{"loc": mu_leaf, "scale": sigma_leaf}`` is a parameter dict of
  ``jaxbdl.distributions.Normal`` (``scale`` is a standard deviation).
  """
  _check_var_params(var_params)
  return {"loc": var_params["loc"],
          "scale": _tmap(jax.nn.softplus, var_params["raw_scale"])}


def sample_params(var_params: dict, key: Array) -> PyTree:
  """One reparameterised sample ``W = mu + sigma * eps``, ``eps ~ N(0, I)``.

  Differentiable in ``var_params`` (pathwise gradients). Returns a pytree with
  the structure of ``var_params["loc"]``.
  """
  normal = to_normal(var_params)
  keys = _split_like(key, normal["loc"])
  return _tmap(lambda m, s, k: distributions.Normal.sample(
      {"loc": m, "scale": s}, k), normal["loc"], normal["scale"], keys)


def log_q(var_params: dict, w: PyTree) -> Array:
  """``log q(W)`` summed over all weights (scalar)."""
  normal = to_normal(var_params)
  return _tree_sum(_tmap(
      lambda m, s, x: distributions.Normal.log_prob({"loc": m, "scale": s}, x),
      normal["loc"], normal["scale"], w))


def entropy(var_params: dict) -> Array:
  """Entropy ``H[q] = sum_i (0.5 log(2 pi e) + log sigma_i)`` (scalar)."""
  normal = to_normal(var_params)
  return _tree_sum(_tmap(
      lambda m, s: distributions.Normal.entropy({"loc": m, "scale": s}),
      normal["loc"], normal["scale"]))


class RaveledModel(NamedTuple):
  """A network whose weights are ONE flat vector ``w [P]`` (:func:`ravel_model`).

  Attributes:
    params: ``w [P]``, every leaf of the original pytree, raveled and
      concatenated (``jax.flatten_util.ravel_pytree`` order).
    apply_fn: ``apply_fn(w [P], x) -> outputs``, the original network.
    unravel: ``unravel(w [P]) -> pytree`` with the original structure.
  """
  params: Array
  apply_fn: Callable[[Array, Array], Array]
  unravel: Callable[[Array], PyTree]


def ravel_model(params: PyTree,
                apply_fn: Callable[[PyTree, Array], Array]) -> RaveledModel:
  """The same network with its weight pytree raveled into one vector ``[P]``.

  Everything in this module takes any weight pytree, so passing
  ``ravel_model(...).params`` and ``.apply_fn`` instead of the pytree and its
  ``apply_fn`` gives the SAME model, estimator and (for the same key) the same
  ELBO and gradients, but the mean-field q is two vectors ``{"loc": mu [P],
  "raw_scale": rho [P]}`` instead of two pytrees. That is faster for small
  networks, where per-leaf work dominates: ``softplus``, the KL, the sample,
  the gradient and each optimiser update become one array op each instead of
  one per leaf, and a jitted step passes ``~L`` times fewer buffers in and
  out (``L`` leaves). Only the forward pass sees the pytree (``unravel`` is
  slicing and reshaping, fused by XLA).

  Differences from the pytree form: :func:`learned_gaussian_prior` learns ONE
  scale for all weights (it learns one per leaf, and there is one leaf);
  per-leaf optimiser transforms (e.g. ``optax.masked``) see one leaf;
  :func:`sample_params` / :func:`predict` draw one noise vector instead of one
  per leaf, so their samples for a given key differ (same distribution). The
  leaves are cast to one dtype (``ravel_pytree``); mix no dtypes.

  Example::

    flat = vi.ravel_model(params, apply_fn)
    elbo_params = vi.init_elbo_params(flat.params, prior, noise, init_scale)
    loss_fn = vi.make_elbo_loss_fn(flat.apply_fn, noise.log_likelihood,
                                   prior, num_data)
    ...  # train; then back to pytrees {"loc": W-tree, "raw_scale": W-tree}:
    q_tree = jax.tree.map(flat.unravel, state.params["posterior"])

  Args:
    params: any pytree of float arrays (e.g. a Flax ``params`` dict).
    apply_fn: ``apply_fn(params, x) -> outputs``.

  Returns:
    a :class:`RaveledModel` ``(params [P], apply_fn(w, x), unravel)``.
  """
  if not jax.tree_util.tree_leaves(params):
    raise ValueError("ravel_model: params has no leaves")
  flat, unravel = ravel_pytree(params)
  return RaveledModel(flat, lambda w, x: apply_fn(unravel(w), x), unravel)


# ---------------------------------------------------------------------------
# Priors over the whole pytree.


class Prior(NamedTuple):
  """A prior ``p(W | theta)`` over a weight pytree, factorised over weights.

  Attributes:
    name: for messages and results.
    init: ``init(params) -> theta``, the prior's own TRAINABLE parameters
      (``{}`` for a fixed prior; learned by maximising the ELBO = type-II ML).
    log_prob: ``log_prob(theta, W) -> scalar``, summed over all weights.
    kl: ``kl(theta, normal) -> scalar`` with ``normal = to_normal(var_params)``,
      the closed-form ``KL(q || p)``; ``None`` when there is none.
  """
  name: str
  init: Callable[[PyTree], PyTree]
  log_prob: Callable[[PyTree, PyTree], Array]
  kl: Optional[Callable[[PyTree, dict], Array]]


def _check_positive(name: str, value: Any) -> None:
  if not (isinstance(value, (int, float)) and value > 0):
    raise ValueError(f"{name} must be a positive number, got {value!r}")


def _gauss_kl_leaf(m: Array, s: Array, prior_scale: Array) -> Array:
  """``sum KL(N(m, s^2) || N(0, p^2))`` = log(p/s) + (s^2 + m^2)/(2 p^2) - 1/2."""
  zeros = jnp.zeros_like(m)
  return distributions.Normal.kl(
      {"loc": m, "scale": s},
      {"loc": zeros, "scale": jnp.broadcast_to(prior_scale, m.shape)})


def _gauss_log_prob_leaf(w: Array, scale: Array) -> Array:
  z = w / scale
  return jnp.sum(-0.5 * z * z - jnp.log(scale) - _HALF_LOG_2PI)


def gaussian_prior(scale: float = 1.0) -> Prior:
  """``p(w_i) = N(0, scale^2)`` with a fixed standard deviation ``scale``.

  Closed-form KL per weight: ``log(s_p / sigma) + (sigma^2 + mu^2) / (2 s_p^2)
  - 1/2``.
  """
  _check_positive("gaussian_prior scale", scale)

  def log_prob(theta, w):
    del theta
    return _tree_sum(_tmap(lambda x: _gauss_log_prob_leaf(x, jnp.float32(scale)),
                           w))

  def kl(theta, normal):
    del theta
    return _tree_sum(_tmap(lambda m, s: _gauss_kl_leaf(m, s, jnp.float32(scale)),
                           normal["loc"], normal["scale"]))

  return Prior(f"gaussian({scale})", lambda params: {}, log_prob, kl)


def learned_gaussian_prior(init_scale: float = 1.0) -> Prior:
  """``p(w_i) = N(0, s_l^2)`` with one LEARNED scale per leaf (empirical Bayes).

  ``theta = {"log_scale": pytree of scalars}``, one per leaf of W (so one per
  kernel and one per bias), initialised at ``log(init_scale)`` and trained
  jointly with q by maximising the ELBO (type-II maximum likelihood; at the
  optimum ``s_l^2 = mean_i (mu_i^2 + sigma_i^2)`` over the leaf).
  """
  _check_positive("learned_gaussian_prior init_scale", init_scale)

  def init(params):
    return {"log_scale": _tmap(
        lambda p: jnp.full((), math.log(init_scale), jnp.float32), params)}

  def log_prob(theta, w):
    return _tree_sum(_tmap(lambda x, ls: _gauss_log_prob_leaf(x, jnp.exp(ls)),
                           w, theta["log_scale"]))

  def kl(theta, normal):
    return _tree_sum(_tmap(lambda m, s, ls: _gauss_kl_leaf(m, s, jnp.exp(ls)),
                           normal["loc"], normal["scale"], theta["log_scale"]))

  return Prior(f"learned_gaussian({init_scale})", init, log_prob, kl)


def laplace_prior(scale: float = 1.0) -> Prior:
  """``p(w_i) = Laplace(0, b)`` = ``exp(-|w| / b) / (2 b)``, ``b = scale``.

  The KL to a Gaussian ``q = N(mu, sigma^2)`` is closed form:
  ``KL = -H[q] + log(2 b) + E_q|w| / b`` with ``H[q] = 0.5 log(2 pi e
  sigma^2)`` and the folded-normal mean ``E_q|w| = sigma sqrt(2/pi)
  exp(-mu^2 / (2 sigma^2)) + mu erf(mu / (sigma sqrt 2))``.
  """
  _check_positive("laplace_prior scale", scale)
  b = float(scale)

  def log_prob(theta, w):
    del theta
    return _tree_sum(_tmap(lambda x: jnp.sum(-jnp.abs(x) / b - math.log(2 * b)),
                           w))

  def kl_leaf(m, s):
    abs_mean = (s * math.sqrt(2.0 / math.pi) * jnp.exp(-0.5 * jnp.square(m / s))
                + m * jax.scipy.special.erf(m / (s * math.sqrt(2.0))))
    neg_entropy = -(0.5 + _HALF_LOG_2PI + jnp.log(s))
    return jnp.sum(neg_entropy + math.log(2 * b) + abs_mean / b)

  def kl(theta, normal):
    del theta
    return _tree_sum(_tmap(kl_leaf, normal["loc"], normal["scale"]))

  return Prior(f"laplace({scale})", lambda params: {}, log_prob, kl)


def scale_mixture_prior(pi: float = 0.5, scale1: float = 1.0,
                        scale2: float = math.exp(-6.0)) -> Prior:
  """``p(w_i) = pi N(0, s1^2) + (1 - pi) N(0, s2^2)`` (Blundell et al. 2015, Eq. 7).

  No closed-form KL (``kl`` is ``None``): use :func:`mc_kl` / :func:`stl_kl`.
  Blundell et al. use ``s1 > s2``, ``s2 << 1`` (e.g. ``exp(-6)``).
  """
  if not 0.0 < pi < 1.0:
    raise ValueError(f"scale_mixture_prior pi must be in (0, 1), got {pi!r}")
  _check_positive("scale_mixture_prior scale1", scale1)
  _check_positive("scale_mixture_prior scale2", scale2)
  log_w = jnp.array([math.log(pi), math.log1p(-pi)], jnp.float32)
  scales = jnp.array([scale1, scale2], jnp.float32)

  def leaf(x):
    shape = (1,) * x.ndim + (2,)
    sc, lw = scales.reshape(shape), log_w.reshape(shape)
    z = x[..., None] / sc  # [..., 2]
    comp = -0.5 * z * z - jnp.log(sc) - _HALF_LOG_2PI + lw
    return jnp.sum(jax.nn.logsumexp(comp, axis=-1))

  def log_prob(theta, w):
    del theta
    return _tree_sum(_tmap(leaf, w))

  return Prior(f"scale_mixture({pi}, {scale1}, {scale2:.4g})",
               lambda params: {}, log_prob, None)


# ---------------------------------------------------------------------------
# KL estimators: kl_estimator(prior, theta, var_params, w) -> scalar.


def analytic_kl(prior: Prior, theta: PyTree, var_params: dict,
                w: PyTree) -> Array:
  """Closed-form ``KL(q || p)``; ``w`` (the current sample) is unused."""
  del w
  if prior.kl is None:
    raise ValueError(f"prior {prior.name} has no closed-form KL; use mc_kl or "
                     "stl_kl")
  return prior.kl(theta, to_normal(var_params))


def mc_kl(prior: Prior, theta: PyTree, var_params: dict, w: PyTree) -> Array:
  """One-sample estimate ``log q(w) - log p(w)`` at the reparameterised ``w``."""
  return log_q(var_params, w) - prior.log_prob(theta, w)


def stl_kl(prior: Prior, theta: PyTree, var_params: dict, w: PyTree) -> Array:
  """"Sticking the landing" (Roeder et al. 2017, Sec. 3): ``log q`` of ``w``
  with ``stop_gradient`` on the variational parameters, so only the path
  derivative through ``w`` remains; the value equals :func:`mc_kl`'s and the
  gradient variance vanishes as q approaches the posterior."""
  return (log_q(jax.lax.stop_gradient(var_params), w)
          - prior.log_prob(theta, w))


def auto_kl(prior: Prior, theta: PyTree, var_params: dict, w: PyTree) -> Array:
  """:func:`analytic_kl` when the prior has a closed form, else :func:`mc_kl`."""
  if prior.kl is not None:
    return analytic_kl(prior, theta, var_params, w)
  return mc_kl(prior, theta, var_params, w)


# ---------------------------------------------------------------------------
# Data-term estimators: estimator(f, var_params, key) -> (surrogate, w).
#
# ``f(w) -> scalar`` may close over other differentiated parameters (the
# likelihood's). The surrogate's VALUE is the one-sample estimate f(w) of
# E_q[f]; its GRADIENT with respect to var_params is the named estimator of
# ``jaxbdl.estimators`` (Mohamed et al. 2020, Sec. 4-5), applied to q as one
# diagonal ``distributions.Normal`` over the flattened weight vector; with
# respect to the closed-over parameters it is grad f(w). ``w`` is the sample
# the estimate used (MC KL estimators reuse it).


def from_estimator(estimator: estimators.Estimator):
  """Adapts a ``jaxbdl.estimators.Estimator`` to the ELBO data term.

  Args:
    estimator: e.g. ``estimators.pathwise`` or ``estimators.score_function``.

  Returns:
    ``data_estimator(f, var_params, key) -> (surrogate, w)``.
  """
  if not isinstance(estimator, estimators.Estimator):
    raise ValueError(f"expected a jaxbdl.estimators.Estimator, got {estimator!r}")
  reparam = estimator.name == "pathwise"

  def data_estimator(f, var_params, key):
    normal = to_normal(var_params)
    loc, unravel = ravel_pytree(normal["loc"])
    scale, _ = ravel_pytree(normal["scale"])
    dist_params = {"loc": loc, "scale": scale}
    value = estimator.surrogate(lambda x: f(unravel(x)), distributions.Normal)(
        dist_params, key, 1)
    w = unravel(estimators.draw_samples(distributions.Normal, dist_params, key,
                                        1)[0])
    if not reparam:
      # The surrogate stops gradients through f(x); add grad f(w) for the
      # parameters f closes over (value unchanged).
      w = jax.lax.stop_gradient(w)
      fw = f(w)
      value = value + (fw - jax.lax.stop_gradient(fw))
    return value, w

  data_estimator.reparameterized = reparam
  return data_estimator


pathwise = from_estimator(estimators.pathwise)
pathwise.__doc__ = ("Reparameterisation gradient ``grad f(mu + sigma eps)`` "
                    "(``estimators.pathwise``); the default.")
score_function = from_estimator(estimators.score_function)
score_function.__doc__ = (
    "REINFORCE ``f(w) grad log q(w)`` (``estimators.score_function``); "
    "unbiased, high variance; pair with a closed-form KL.")


# ---------------------------------------------------------------------------
# Observation noise with point-estimated (type-II) parameters.


class NoiseModel(NamedTuple):
  """A Gaussian observation model whose parameters are point estimates.

  Attributes:
    name: for messages.
    num_outputs: network outputs per target: 1 (mean) or 2 (mean, raw scale).
    init: ``init() -> lik_params`` (``{}`` when nothing is learned).
    log_likelihood: ``(lik_params, y [B], outputs [B, num_outputs]) -> [B]``.
    moments: ``(lik_params, outputs [..., N, num_outputs]) -> (mean [..., N],
      variance [..., N])``: the Gaussian predictive of one network output.
  """
  name: str
  num_outputs: int
  init: Callable[[], PyTree]
  log_likelihood: Callable[[PyTree, Array, Array], Array]
  moments: Callable[[PyTree, Array], tuple[Array, Array]]


def learned_gaussian_noise(init_scale: float = 0.5,
                           min_scale: float = 1e-3) -> NoiseModel:
  """Homoscedastic noise ``y ~ N(f(x), s^2)`` with ``s = softplus(r) + min_scale``
  LEARNED as a point estimate (``lik_params = {"raw_scale": r}``), so no noise
  precision grid is needed."""
  _check_positive("learned_gaussian_noise init_scale", init_scale)
  if not init_scale > min_scale >= 0:
    raise ValueError(f"need init_scale > min_scale >= 0, got {init_scale}, "
                     f"{min_scale}")
  x0 = float(init_scale - min_scale)
  # softplus^-1 in Python floats: this factory may run inside a jit trace
  # (e.g. a method built per vmapped split), where jnp values are tracers.
  r0 = x0 + math.log(-math.expm1(-x0))

  def scale(lp):
    return jax.nn.softplus(lp["raw_scale"]) + min_scale

  def log_likelihood(lp, y, outputs):
    return likelihoods.gaussian_scale(y, outputs[..., 0], scale(lp))

  def moments(lp, outputs):
    mean = outputs[..., 0]
    return mean, jnp.broadcast_to(jnp.square(scale(lp)), mean.shape)

  return NoiseModel("learned_gaussian", 1,
                    lambda: {"raw_scale": jnp.float32(r0)}, log_likelihood,
                    moments)


def fixed_gaussian_noise(scale: float) -> NoiseModel:
  """Homoscedastic noise with a FIXED standard deviation ``scale``."""
  _check_positive("fixed_gaussian_noise scale", scale)

  def log_likelihood(lp, y, outputs):
    del lp
    return likelihoods.gaussian_scale(y, outputs[..., 0], scale)

  def moments(lp, outputs):
    del lp
    mean = outputs[..., 0]
    return mean, jnp.full(mean.shape, scale * scale, mean.dtype)

  return NoiseModel(f"fixed_gaussian({scale})", 1, lambda: {}, log_likelihood,
                    moments)


def heteroscedastic_gaussian_noise(min_scale: float = 1e-3) -> NoiseModel:
  """Input-dependent noise: outputs ``[mean, raw]``, ``s = softplus(raw) +
  min_scale`` (``jaxbdl.likelihoods.heteroscedastic_gaussian``; Nix & Weigend
  1994; Lakshminarayanan et al. 2017, Eq. 1)."""

  def log_likelihood(lp, y, outputs):
    del lp
    return likelihoods.heteroscedastic_gaussian(y, outputs, min_scale)

  def moments(lp, outputs):
    del lp
    s = jax.nn.softplus(outputs[..., 1]) + min_scale
    return outputs[..., 0], s * s

  return NoiseModel("heteroscedastic_gaussian", 2, lambda: {}, log_likelihood,
                    moments)


# ---------------------------------------------------------------------------
# The ELBO as a train-loop loss.


def init_elbo_params(params: PyTree, prior: Prior,
                     noise: Optional[NoiseModel] = None,
                     init_scale: float = 1e-3) -> dict:
  """The trainable pytree of :func:`make_elbo_loss_fn`.

  Returns:
    ``{"posterior": init_mean_field(params, init_scale), "prior":
    prior.init(params), "likelihood": noise.init() (or {})}``.
  """
  return {"posterior": init_mean_field(params, init_scale),
          "prior": prior.init(params),
          "likelihood": {} if noise is None else noise.init()}


def _check_elbo_params(params: Any) -> None:
  if not isinstance(params, dict) or set(params) != {"posterior", "prior",
                                                     "likelihood"}:
    keys = sorted(params) if isinstance(params, dict) else type(params).__name__
    raise ValueError("ELBO params must have keys ['posterior', 'prior', "
                     f"'likelihood'] (see init_elbo_params), got {keys}")


def elbo_terms(params: dict, batch, key: Array, *, apply_fn, log_likelihood,
               prior: Prior, num_data, num_samples: int = 1,
               kl_estimator=auto_kl, estimator=pathwise) -> dict:
  """Minibatch ELBO estimate and its parts (all scalars, un-normalised).

  ``elbo = (N / B) sum_b E_q[log p(y_b | x_b, W)] - KL(q || p)``, each
  expectation averaged over ``num_samples`` draws of ``W`` (each shared by the
  whole minibatch).

  Args:
    params: ``{"posterior", "prior", "likelihood"}`` (:func:`init_elbo_params`).
    batch: ``{"x": [B, ...], "y": [B, ...]}`` or ``(x, y)``.
    key: PRNG key.
    apply_fn: ``apply_fn(W, x) -> outputs [B, ...]``.
    log_likelihood: ``(lik_params, y, outputs) -> [B]``.
    prior: a :class:`Prior`.
    num_data: ``N``.
    num_samples: ``S`` Monte Carlo samples (static).
    kl_estimator: e.g. :func:`auto_kl`, :func:`mc_kl`, :func:`stl_kl`.
    estimator: data-term estimator, :func:`pathwise` or :func:`score_function`
      (or :func:`from_estimator` of any ``jaxbdl.estimators.Estimator``).

  Returns:
    ``{"elbo", "expected_log_lik", "kl"}``; ``expected_log_lik`` is the
    (N/B)-scaled full-data estimate.
  """
  _check_elbo_params(params)
  x, y = objectives.unpack_batch(batch)
  batch_size = jnp.shape(x)[0]
  scale = num_data / batch_size
  q, theta, lik = params["posterior"], params["prior"], params["likelihood"]

  def one(k):
    def f(w):
      ll = log_likelihood(lik, y, apply_fn(w, x))
      if ll.shape != (batch_size,):
        raise ValueError(f"log_likelihood must return [B] = [{batch_size}], "
                         f"got {ll.shape}")
      return scale * jnp.sum(ll)
    data, w = estimator(f, q, k)
    return data, kl_estimator(prior, theta, q, w)

  keys = jax.random.split(key, num_samples)
  data, kl = jax.vmap(one)(keys)
  data, kl = jnp.mean(data), jnp.mean(kl)
  return {"elbo": data - kl, "expected_log_lik": data, "kl": kl}


def make_elbo_loss_fn(apply_fn: Callable[[PyTree, Array], Array],
                      log_likelihood: Callable[[PyTree, Array, Array], Array],
                      prior: Prior, num_data: int, num_samples: int = 1,
                      kl_estimator=auto_kl, estimator=pathwise):
  """The negative ELBO per datum as a ``jaxbdl.train`` loss function.

  ``loss = -ELBO / N`` (same optimum, learning-rate friendly). The trainable
  params are ``{"posterior", "prior", "likelihood"}`` from
  :func:`init_elbo_params`; the prior's and the likelihood's parameters are
  point estimates that maximise the ELBO (type-II / empirical Bayes).

  Args: see :func:`elbo_terms`.

  Returns:
    ``loss_fn(params, model_state, batch, key) -> (loss, (model_state,
    metrics))`` with metrics ``elbo``, ``kl``, ``nll`` (mean per-example
    negative expected log-likelihood).
  """
  if not (isinstance(num_samples, int) and num_samples >= 1):
    raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
  if not num_data > 0:
    raise ValueError(f"num_data must be > 0, got {num_data!r}")
  if kl_estimator is analytic_kl and prior.kl is None:
    raise ValueError(f"prior {prior.name} has no closed-form KL; use mc_kl, "
                     "stl_kl or auto_kl")
  if not getattr(estimator, "reparameterized", True) and not (
      kl_estimator is analytic_kl or
      (kl_estimator is auto_kl and prior.kl is not None)):
    raise ValueError("a non-reparameterised data estimator (score_function) "
                     "needs a closed-form KL (analytic_kl, or auto_kl with a "
                     f"prior that has one); prior {prior.name} / "
                     f"{getattr(kl_estimator, '__name__', kl_estimator)}")

  def loss_fn(params, model_state, batch, key):
    t = elbo_terms(params, batch, key, apply_fn=apply_fn,
                   log_likelihood=log_likelihood, prior=prior,
                   num_data=num_data, num_samples=num_samples,
                   kl_estimator=kl_estimator, estimator=estimator)
    loss = -t["elbo"] / num_data
    metrics = {"elbo": t["elbo"], "kl": t["kl"],
               "nll": -t["expected_log_lik"] / num_data}
    return loss, (model_state, metrics)

  return loss_fn


# ---------------------------------------------------------------------------
# Prediction.


def predict(var_params: dict, apply_fn: Callable[[PyTree, Array], Array],
            x: Array, key: Array, num_samples: int) -> Array:
  """Network outputs at ``S`` posterior samples, vmapped: ``[S, N, ...]``.

  Args:
    var_params: ``{"loc", "raw_scale"}``.
    apply_fn: ``apply_fn(W, x) -> [N, ...]``.
    x: inputs ``[N, ...]``.
    key: PRNG key; sample ``s`` uses ``fold_in(key, s)``.
    num_samples: ``S`` (static).
  """
  _check_var_params(var_params)
  keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(num_samples))
  return jax.vmap(lambda k: apply_fn(sample_params(var_params, k), x))(keys)


def predict_moments(elbo_params: dict, apply_fn, noise: NoiseModel, x: Array,
                    key: Array, num_samples: int) -> tuple[Array, Array]:
  """Per-sample Gaussian predictive moments ``(means [S, N], variances [S, N])``.

  Feed them to ``metrics.gaussian_predictive_log_likelihood`` (the mixture
  log-likelihood) or ``metrics.mixture_mean_variance``.
  """
  _check_elbo_params(elbo_params)
  out = predict(elbo_params["posterior"], apply_fn, x, key, num_samples)
  return noise.moments(elbo_params["likelihood"], out)
