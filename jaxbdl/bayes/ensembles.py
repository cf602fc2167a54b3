"""Deep ensembles (Lakshminarayanan, Pritzel & Blundell 2017).

``M = config.num_members`` MAP networks from independent initialisations and
minibatch orders, trained as ONE vmapped program (member ``m`` uses key
``fold_in(key, m)``); the predictive is the uniform mixture of the members'
predictives (their Sec. 2.4), so with Gaussian members its mean and variance
are the mean of means and mean of variances plus variance of means
(``likelihoods.mixture_summary``). Use a heteroscedastic likelihood for the
paper's "proper scoring rule" members (their Eq. 1).

References:
  B. Lakshminarayanan, A. Pritzel, C. Blundell (2017), Simple and scalable
    predictive uncertainty estimation using deep ensembles, NeurIPS.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbdl._checks import check_positive_int
from jaxbdl.bayes import map_estimate
from jaxbdl.bayes import posterior as post_lib

__all__ = ["make", "member_keys"]


def member_keys(key: jax.Array, num_members: int) -> jax.Array:
  """``[M]`` keys; member ``m`` gets ``fold_in(key, m)``."""
  check_positive_int("num_members", num_members)
  return jax.vmap(lambda m: jax.random.fold_in(key, m))(jnp.arange(num_members))


def make(model: post_lib.Model, config) -> post_lib.Posterior:
  """A deep ensemble of ``config.num_members`` MAP members."""
  m = check_positive_int("num_members", config.num_members)
  member = map_estimate.point_method("ensemble", model, config,
                                     stochastic=False)

  def fit(key, data, hp, valid=None):
    return jax.vmap(lambda k: member.fit(k, data, hp, valid))(
        member_keys(key, m))

  def predict(state, x, key, hp):
    pred = jax.vmap(lambda s: member.predict(s, x, key, hp))(state)
    # [M, 1, N, ...] -> [M, N, ...]: one mixture component per member.
    return jax.tree_util.tree_map(lambda a: a[:, 0], pred)

  return post_lib.Posterior("ensemble", fit, predict, member.valid_fraction)
