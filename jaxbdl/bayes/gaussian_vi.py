"""Correlated Gaussian VI over a network's weights: ``fullrank_vi``,
``lowrank_vi``.

``q(W) = N(ravel(W); mu, Sigma)`` with a full-rank Cholesky or a
low-rank-plus-diagonal covariance (``jaxbdl.bayes.families.fullrank`` /
``lowrank``), trained by the core's ONE ELBO (``jaxbdl.bayes.elbo``, through
``mfvi.variational``): the same minibatch scaling, temperature, KL estimators
(``config.kl``: ``"auto"`` = the closed-form Gaussian KL to a Gaussian prior,
Rasmussen & Williams 2006, Eq. A.23; ``"mc"``; ``"stl"``) and data-term
estimators (``config.estimator``: ``"pathwise"``, ``"score_function"``) as
mean-field VI. The prior's and likelihood's parameters are point estimates
trained with q (type-II ML).

Config fields: ``num_epochs``, ``batch_size``, ``num_train_samples``,
``init_scale`` (initial marginal standard deviation), ``rank``
(``lowrank_vi``), ``kl``, ``estimator``, ``num_predict_samples``,
``predict_batch_size``, ``valid_fraction``, ``patience``.

References:
  M. Titsias, M. Lazaro-Gredilla (2014), Doubly stochastic variational Bayes
    for non-conjugate inference, ICML (full-rank Cholesky, Alg. 1).
  V. Ong, D. Nott, M. Smith (2018), Gaussian variational approximation with a
    factor covariance structure, JCGS 27(3).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbdl.bayes import elbo
from jaxbdl.bayes import families
from jaxbdl.bayes import mfvi
from jaxbdl.bayes import posterior as post_lib

__all__ = ["make_fullrank", "make_lowrank", "DEFAULTS"]

DEFAULTS = dict(
    num_train_samples=8,   # Monte Carlo samples of w per ELBO step
    init_scale=1e-2,       # initial posterior standard deviation
    rank=5,                # lowrank_vi: columns of U
)


def _make(name: str, family: families.Family, model: post_lib.Model, config
          ) -> post_lib.Posterior:
  init_scale = float(config.get("init_scale", DEFAULTS["init_scale"]))
  module = model.module
  vmodel = elbo.weight_space(post_lib.point_apply(module), family)

  def init_q(key, xshape):
    k1, k2 = jax.random.split(key)
    w = module.init(k1, jnp.zeros((1,) + tuple(xshape), jnp.float32))["params"]
    return family.init(k2, w, init_scale)

  return mfvi.variational(name, model, config, lambda xshape: vmodel, init_q)


def make_fullrank(model: post_lib.Model, config) -> post_lib.Posterior:
  """Full-rank Gaussian VI as a core ``Posterior`` (method ``"fullrank_vi"``)."""
  return _make("fullrank_vi", families.fullrank(), model, config)


def make_lowrank(model: post_lib.Model, config) -> post_lib.Posterior:
  """Low-rank-plus-diagonal Gaussian VI (method ``"lowrank_vi"``), rank
  ``config.rank``."""
  return _make("lowrank_vi", families.lowrank(int(config.get(
      "rank", DEFAULTS["rank"]))), model, config)
