"""Online marginal-likelihood training (Immer et al. 2021, Algorithm 1).

The network's weights ``theta`` and the hyper-parameters ``h = (log delta,
log sigma)`` (prior precision; observation noise for regression) are learned
together, without validation data:

* every epoch, minibatch steps of ``optimizer`` on the negative log joint per
  datum at the CURRENT hyper-parameters,
  ``L(theta) = [(N / B) s sum_b l_b(theta) + 1/2 theta^T diag(delta)
  theta] / N`` (``l_b = SSR/2`` at unit noise and ``s = 1 / (T sigma^2)`` for
  Gaussian regression; ``l_b = -log p(y_b | f_b)`` and ``s = 1 / T``
  otherwise: the negative log joint up to constants);
* every ``frequency`` epochs once ``epoch >= burnin``: the Laplace
  approximation at the current ``theta`` (any structure of
  :mod:`curvature`: full, diag, KFAC, low-rank) and ``n_hypersteps`` steps of
  ``hyper_optimizer`` (Adam, lr 0.1 by default) on ``-log q(D | h)``, the
  Laplace evidence of :mod:`marglik` (Immer et al. Eq. 3, with the GGN /
  KFAC curvature of their Sec. 3). The hyper-optimiser's state persists across epochs, as in
  Algorithm 1 and laplace-torch's ``marglik_training``.

The result is the weights and hyper-parameters of the epoch with the highest
evidence (laplace-torch's model selection; Immer et al. Sec. 3.2), with the
Laplace approximation refitted there.

For a linear model with a Gaussian likelihood the Laplace evidence is exact
and, at ``theta = theta_MAP(h)``, its partial derivative in ``h`` is the total
derivative (``theta_MAP`` is stationary for the log joint and the log det
does not depend on ``theta``), so the joint fixed point is MacKay's evidence
maximum (``tests/laplace_online_test.py``).

Everything is pure: ``marglik_training`` jits, ``vmap``-s over keys and
scans epochs (``lax.scan``; the hyper update sits under ``lax.cond``).

References:
  Immer, Bauer, Fortuin, Ratsch & Khan (2021), *Scalable marginal likelihood
  estimation for model selection in deep learning*, ICML, Algorithm 1 and
  Eq. 3.
  MacKay (1992), *Bayesian interpolation*, Neural Computation 4(3).
  Daxberger et al. (2021), *Laplace Redux* (laplace-torch's
  ``marglik_training``).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxbdl.training import train
from jaxbdl.bayes.laplace import approximation
from jaxbdl.bayes.laplace import marglik as marglik_lib

__all__ = ["OnlineResult", "marglik_training", "neg_log_joint_loss",
           "init_hyper"]

PyTree = Any


class OnlineResult(NamedTuple):
  """What :func:`marglik_training` returns (a pytree).

  Attributes:
    params: the selected network weights (highest evidence).
    laplace: the ``LaplaceState`` fitted at ``params`` with the selected
      prior precision and noise.
    history: ``"loss" [E]`` (training loss per epoch), ``"neg_log_marglik"
      [E]`` (after the epoch's hyper steps; NaN in epochs without),
      ``"prior_precision" [E, S]``, ``"sigma_noise" [E]``, ``"best_epoch"``.
  """
  params: PyTree
  laplace: approximation.LaplaceState
  history: dict


def init_hyper(la, prior_structure: str, prior_precision=1.0,
               sigma_noise=1.0, dtype=jnp.float32) -> dict:
  """``{"log_prior": [S], "log_sigma": []}`` for ``prior_structure``."""
  shape = marglik_lib.prior_shape(la.spec, prior_structure)
  delta = jnp.broadcast_to(jnp.asarray(prior_precision, dtype), shape)
  return {"log_prior": jnp.log(delta),
          "log_sigma": jnp.log(jnp.asarray(sigma_noise, dtype))}


def _all_precision(spec, hyper, base_precision):
  """Per weight of the WHOLE network ``[P_all]``: the selected weights get
  ``exp(log_prior)`` (expanded), the others ``base_precision``."""
  delta = marglik_lib.expand_prior(spec, jnp.exp(hyper["log_prior"]))
  return base_precision.at[spec.subset.idx].set(delta.astype(
      base_precision.dtype))


def neg_log_joint_loss(la, num_data: int, base_precision, temperature=1.0):
  """A ``jaxbdl.training.train`` loss reading the hyper-parameters from the model
  state: ``loss(params, hyper, batch, key) -> (L, (hyper, metrics))``."""
  spec = la.spec

  def loss_fn(params, hyper, batch, key):
    del key
    x, y = batch["x"], batch["y"]
    data, _ = approximation.data_loss(spec, params, x, y)
    s = 1.0 / temperature
    if spec.likelihood == "regression":
      s = s * jnp.exp(-2.0 * hyper["log_sigma"])
    flat, _ = ravel_pytree(params)
    prec = _all_precision(spec, hyper, base_precision)
    reg = 0.5 * jnp.sum(prec * flat * flat)
    loss = ((num_data / x.shape[0]) * s * data + reg) / num_data
    return loss, (hyper, {"data": data / x.shape[0]})
  return loss_fn


def marglik_training(la, params: PyTree, x: jax.Array, y: jax.Array,
                     key: jax.Array, *, num_epochs: int, batch_size: int,
                     optimizer: optax.GradientTransformation | None = None,
                     prior_structure: str = "layerwise",
                     fit_noise: bool | None = None, n_hypersteps: int = 100,
                     hyper_optimizer: optax.GradientTransformation | None
                     = None, frequency: int = 1, burnin: int = 0,
                     prior_precision=1.0, sigma_noise=1.0,
                     base_precision=None, temperature=1.0) -> OnlineResult:
  """Algorithm 1 of Immer et al. (2021); see the module docstring.

  Args:
    la: a ``Laplace(...)`` approximation (its structure, subset, likelihood).
    params: initial network weights.
    x, y: training data ``[N, ...]``, ``[N]``.
    key: PRNG key (minibatch shuffles; epoch ``e`` uses ``fold_in(key, e)``).
    num_epochs, batch_size: the MAP training.
    optimizer: for the weights (default ``optax.adam(1e-3)``).
    prior_structure: ``"scalar"``, ``"layerwise"`` or ``"diagonal"``.
    fit_noise: learn ``sigma`` (default: True for regression).
    n_hypersteps: hyper-parameter steps per update (``K``).
    hyper_optimizer: for ``(log delta, log sigma)`` (default
      ``optax.adam(0.1)``).
    frequency: update every ``frequency`` epochs (``F``) ...
    burnin: ... once ``epoch >= burnin`` (1-based epochs).
    prior_precision, sigma_noise: initial hyper-parameters.
    base_precision: ``[P_all]`` fixed prior precision of the weights outside
      the Laplace subset (default: ``prior_precision``).
    temperature: likelihood temperature ``T``.

  Raises:
    ValueError: bad settings (non-positive counts or hyper-parameters,
      ``fit_noise`` for classification, KFAC with a diagonal prior).
  """
  spec = la.spec
  if fit_noise is None:
    fit_noise = spec.likelihood == "regression"
  for name, v, low in (("num_epochs", num_epochs, 1),
                       ("batch_size", batch_size, 1),
                       ("n_hypersteps", n_hypersteps, 1),
                       ("frequency", frequency, 1), ("burnin", burnin, 0)):
    if not isinstance(v, (int, np.integer)) or v < low:
      raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
  marglik_lib.check_hyperparameter_fit(spec, prior_structure, fit_noise)
  for name, v in (("prior_precision", prior_precision),
                  ("sigma_noise", sigma_noise)):
    if approximation._concrete(v) and np.any(np.asarray(v) <= 0):
      raise ValueError(f"{name} must be > 0, got {np.asarray(v)}")
  n = int(np.shape(x)[0])
  if np.shape(y)[0] != n:
    raise ValueError(f"x has {n} examples but y has {np.shape(y)[0]}")
  if batch_size > n:
    raise ValueError(f"batch_size {batch_size} exceeds the {n} examples")

  flat0, _ = ravel_pytree(params)
  dtype = flat0.dtype
  optimizer = optimizer or optax.adam(1e-3)
  hyper_optimizer = hyper_optimizer or optax.adam(0.1)
  hyper = init_hyper(la, prior_structure, prior_precision, sigma_noise, dtype)
  if base_precision is None:
    base_precision = jnp.full(flat0.shape, jnp.mean(jnp.asarray(
        prior_precision, dtype)), dtype)
  base_precision = jnp.broadcast_to(jnp.asarray(base_precision, dtype),
                                    flat0.shape)
  temperature = jnp.asarray(temperature, dtype)
  data = {"x": x, "y": y}
  loss_fn = neg_log_joint_loss(la, n, base_precision, temperature)
  epoch_fn = train.make_epoch(train.make_train_step(loss_fn, optimizer),
                              int(batch_size))

  def laplace_at(p, h):
    return la.fit(p, x, y, prior_precision=jnp.exp(h["log_prior"]),
                  sigma_noise=jnp.exp(h["log_sigma"]),
                  temperature=temperature, map_gradient_tol=np.inf)

  def hyper_update(p, h, opt_state):
    state = laplace_at(p, h)

    neg = marglik_lib.negative_evidence(spec, state, fit_noise)
    h, opt_state, _ = marglik_lib.evidence_steps(
        neg, hyper_optimizer, h, opt_state, n_hypersteps, fit_noise)
    return h, opt_state, neg(h)

  def epoch(carry, e):
    ts, opt_h, best = carry
    ts, metrics = epoch_fn(ts, data, jax.random.fold_in(key, e))
    due = ((e + 1) % frequency == 0) & (e + 1 >= burnin)
    h, opt_h, nlml = jax.lax.cond(
        due, lambda: hyper_update(ts.params, ts.model_state, opt_h),
        lambda: (ts.model_state, opt_h, jnp.asarray(jnp.nan, dtype)))
    better = due & (nlml < best[2])
    best = jax.tree.map(lambda a, b: jnp.where(better, a, b),
                        (ts.params, h, nlml, e), best)
    rec = {"loss": metrics["loss"], "neg_log_marglik": nlml,
           "prior_precision": jnp.exp(h["log_prior"]),
           "sigma_noise": jnp.exp(h["log_sigma"])}
    return (ts._replace(model_state=h), opt_h, best), rec

  ts = train.init_train_state(params, optimizer, hyper)
  best0 = (params, hyper, jnp.asarray(jnp.inf, dtype), jnp.asarray(-1))
  (ts, _, best), hist = jax.lax.scan(
      epoch, (ts, hyper_optimizer.init(hyper), best0),
      jnp.arange(int(num_epochs)))
  # No update happened (burnin >= num_epochs): keep the last epoch.
  none = best[3] < 0
  p_sel, h_sel = jax.tree.map(lambda a, b: jnp.where(none, a, b),
                              (ts.params, ts.model_state), best[:2])
  hist = dict(hist, best_epoch=best[3])
  return OnlineResult(p_sel, laplace_at(p_sel, h_sel), hist)
