"""SWAG: a Gaussian fitted to the SGD trajectory (Maddox et al. 2019).

After a MAP pre-training phase (``config.num_epochs`` epochs of Adam, the
core's ``gradient_fit``), SGD with a constant, high learning rate explores
around the optimum; every ``epochs_per_snapshot`` epochs its weights
``w_i [D]`` (raveled) are recorded, ``K = num_snapshots`` times. From the
snapshots (their Sec. 3.2-3.3):

* SWA mean ``w_bar = (1/K) sum_i w_i``;
* diagonal ``Sigma_diag = diag((1/K) sum_i w_i^2 - w_bar^2)``;
* low rank from the deviation matrix ``D_hat [D, R]`` whose columns are
  ``w_i - w_bar_i`` (``w_bar_i`` the running mean after snapshot ``i``) for
  the last ``R = rank`` snapshots;

and the posterior is ``N(w_bar, Sigma_diag / 2 + D_hat D_hat^T / (2 (R - 1)))``
(their Eq. 1 and the sampling rule of Alg. 1). The likelihood's parameters
(e.g. a learned noise) are point estimates, taken from the end of the SGD
phase. Predictions average ``num_predict_samples`` weight draws (no batch
norm here, so no re-estimation of its statistics).

References:
  Maddox, Garipov, Izmailov, Vetrov & Wilson (2019), "A simple baseline for
  Bayesian uncertainty in deep learning", NeurIPS, Sec. 3, Eq. 1, Alg. 1.
  Izmailov et al. (2018), "Averaging weights leads to wider optima and better
  generalization", UAI (SWA).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxbdl.gradients.distributions import standard_normal
from jaxbdl.training import train
from jaxbdl._checks import check_positive_int
from jaxbdl.bayes import hmc
from jaxbdl.bayes import map_estimate
from jaxbdl.bayes import posterior as post_lib

__all__ = ["SwagMoments", "moments", "sample", "covariance", "make",
           "DEFAULTS"]

PyTree = Any

DEFAULTS = dict(
    num_snapshots=20,
    rank=10,
    epochs_per_snapshot=1,
    swa_learning_rate=1e-2,   # per-datum SGD learning rate of the SWA phase
    swa_momentum=0.9,
)


class SwagMoments(NamedTuple):
  """SWAG's Gaussian: ``mean [D]``, ``sq_mean [D]``, ``deviations [R, D]``."""
  mean: jax.Array
  sq_mean: jax.Array
  deviations: jax.Array


def moments(snapshots: jax.Array, rank: int) -> SwagMoments:
  """SWAG moments from ``snapshots [K, D]`` (in trajectory order).

  ``deviations[r] = w_i - w_bar_i`` for the last ``rank`` snapshots ``i``,
  ``w_bar_i`` the running mean of snapshots ``1..i``.
  """
  k = snapshots.shape[0]
  if not 2 <= rank <= k:
    raise ValueError(f"rank must be in [2, num_snapshots={k}], got {rank}")
  counts = jnp.arange(1, k + 1, dtype=snapshots.dtype)[:, None]
  running = jnp.cumsum(snapshots, axis=0) / counts
  dev = (snapshots - running)[k - rank:]
  return SwagMoments(running[-1], jnp.mean(snapshots**2, axis=0), dev)


def _diag_variance(m: SwagMoments) -> jax.Array:
  return jnp.maximum(m.sq_mean - m.mean**2, 0.0)


def sample(m: SwagMoments, key: jax.Array, num: int) -> jax.Array:
  """``[num, D]`` draws ``w_bar + sqrt(diag / 2) z1 + D_hat z2 /
  sqrt(2 (R - 1))``."""
  k1, k2 = jax.random.split(key)
  d = m.mean.shape[0]
  r = m.deviations.shape[0]
  z1 = standard_normal(k1, (num, d), m.mean.dtype)
  z2 = standard_normal(k2, (num, r), m.mean.dtype)
  return (m.mean[None] + z1 * jnp.sqrt(0.5 * _diag_variance(m))[None]
          + (z2 @ m.deviations) / jnp.sqrt(2.0 * (r - 1)))


def covariance(m: SwagMoments) -> jax.Array:
  """Dense ``[D, D]`` covariance of :func:`sample` (tests, small ``D``)."""
  r = m.deviations.shape[0]
  return (0.5 * jnp.diag(_diag_variance(m))
          + m.deviations.T @ m.deviations / (2.0 * (r - 1)))


def make(model: post_lib.Model, config) -> post_lib.Posterior:
  """SWAG as a core ``Posterior`` (method ``"swag"``).

  Config: ``num_epochs`` (MAP pre-training), ``batch_size``,
  ``num_snapshots``, ``rank``, ``epochs_per_snapshot``,
  ``swa_learning_rate``, ``swa_momentum``, ``num_predict_samples``,
  ``predict_batch_size``. Hyper-parameters: ``learning_rate`` (pre-training
  Adam), ``temperature``, and the model's (``prior_scale``, ``noise_scale``).
  """
  cfg = {k: config.get(k, v) for k, v in DEFAULTS.items()}
  k_snap = check_positive_int("num_snapshots", int(cfg["num_snapshots"]))
  rank = int(cfg["rank"])
  if not 2 <= rank <= k_snap:
    raise ValueError(f"rank must be in [2, num_snapshots={k_snap}], got "
                     f"{rank}")
  per_snap = check_positive_int("epochs_per_snapshot",
                                int(cfg["epochs_per_snapshot"]))
  n_pred = int(config.get("num_predict_samples", 100))
  chunk = config.get("predict_batch_size", None)
  pre = map_estimate.point_method("swag", model, config, stochastic=False)

  def fit(key, data, hp, valid=None):
    n, xshape = post_lib.check_data(data)
    k_pre, k_swa = jax.random.split(key)
    params, pre_hist = pre.fit(k_pre, data, hp, valid)
    lik, prior = model.likelihood(hp), model.prior(hp)
    loss_fn = map_estimate.neg_log_joint_loss(
        lambda w, x, k: model.module.apply({"params": w}, x), lik, prior, n,
        hp.get("temperature", 1.0))
    opt = optax.sgd(cfg["swa_learning_rate"], momentum=cfg["swa_momentum"])
    sgd = train.make_fit(loss_fn, opt, num_epochs=per_snap,
                         batch_size=min(int(config.batch_size), n))

    def snapshot(state, i):
      state, _ = sgd(state, data, jax.random.fold_in(k_swa, i))
      return state, ravel_pytree(state.params["net"])[0]

    state, snaps = jax.lax.scan(snapshot, train.init_train_state(params, opt),
                                jnp.arange(k_snap))
    m = moments(snaps, rank)
    return ({"moments": m, "likelihood": state.params["likelihood"]},
            {"map_loss": pre_hist["loss"]})

  def predict(state, x, key, hp):
    net = model.module.init(jax.random.key(0), jnp.zeros(
        (1,) + tuple(x.shape[1:]), jnp.float32))["params"]
    unravel = ravel_pytree(net)[1]
    w = sample(state["moments"], key, n_pred)
    samples = {"params": jax.vmap(unravel)(w),
               "likelihood": jax.tree.map(
                   lambda a: jnp.broadcast_to(a, (n_pred,) + jnp.shape(a)),
                   state["likelihood"])}
    return hmc.predict_from_samples(model, samples, x, hp, chunk)

  return post_lib.Posterior("swag", fit, predict, pre.valid_fraction)
