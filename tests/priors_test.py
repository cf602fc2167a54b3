"""Tests of jaxbdl.bayes.priors: scipy oracles, penalty identities, gradients,
closed-form KL against Monte Carlo, precision."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxbdl.bayes import priors

# Sums of ~30 float32 terms of order 1-10: a few hundred ulps relative.
RTOL = 256 * float(np.finfo(np.float32).eps)

_rng = np.random.default_rng(1)
PARAMS = {"Dense_0": {"kernel": jnp.asarray(_rng.normal(size=(4, 5)), jnp.float32),
                      "bias": jnp.asarray(_rng.normal(size=(5,)), jnp.float32)},
          "out": [jnp.asarray(_rng.normal(size=(5,)), jnp.float32)]}
FLAT = np.concatenate([np.float64(x).ravel() for x in jax.tree_util.tree_leaves(PARAMS)])
P = 30


def test_num_params_and_penalties():
  assert priors.num_params(PARAMS) == P == FLAT.size
  np.testing.assert_allclose(priors.l2_penalty(PARAMS), 0.5 * np.sum(FLAT ** 2), rtol=RTOL)
  np.testing.assert_allclose(priors.l1_penalty(PARAMS), np.sum(np.abs(FLAT)), rtol=RTOL)


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_gaussian_prior(scale):
  prior = priors.gaussian(scale)
  lp = prior.log_prob({}, PARAMS)
  np.testing.assert_allclose(lp, stats.norm.logpdf(FLAT, 0.0, scale).sum(), rtol=RTOL)
  # -log N(W; 0, s^2) = l2 / s^2 + (P / 2) log(2 pi s^2).
  np.testing.assert_allclose(
      -lp, priors.l2_penalty(PARAMS) / scale ** 2
      + 0.5 * P * np.log(2 * np.pi * scale ** 2), rtol=RTOL)
  prec = prior.precision({}, PARAMS)
  jax.tree.map(lambda p: np.testing.assert_allclose(p, scale ** -2.0,
                                                    rtol=RTOL), prec)


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_laplace_prior(scale):
  lp = priors.laplace(scale).log_prob({}, PARAMS)
  np.testing.assert_allclose(lp, stats.laplace.logpdf(FLAT, 0.0, scale).sum(), rtol=RTOL)
  # -log Laplace(W; 0, b) = l1 / b + P log(2 b).
  np.testing.assert_allclose(
      -lp, priors.l1_penalty(PARAMS) / scale + P * np.log(2 * scale),
      rtol=RTOL)


def test_gradients_are_weight_decay_and_sign():
  s = 0.5
  g = jax.grad(lambda p: -priors.gaussian(s).log_prob({}, p))(PARAMS)
  jax.tree.map(lambda gi, w: np.testing.assert_allclose(gi, w / s ** 2, rtol=RTOL),
               g, PARAMS)
  g = jax.grad(lambda p: -priors.laplace(s).log_prob({}, p))(PARAMS)
  jax.tree.map(lambda gi, w: np.testing.assert_allclose(gi, jnp.sign(w) / s, rtol=RTOL),
               g, PARAMS)


def test_traced_scale_and_flat_prior():
  # A traced scale (learned or vmapped) is not validated but works.
  scales = jnp.array([0.5, 2.0])
  lps = jax.jit(jax.vmap(lambda s: priors.gaussian(s).log_prob({}, PARAMS)))(
      scales)
  np.testing.assert_allclose(lps, [stats.norm.logpdf(FLAT, 0, s).sum() for s in (0.5, 2.0)],
                             rtol=RTOL)
  assert float(priors.flat().log_prob({}, PARAMS)) == 0.0


@pytest.mark.parametrize("fn", [priors.gaussian, priors.laplace], ids=["gaussian", "laplace"])
@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_non_positive_scale_raises(fn, scale):
  with pytest.raises(ValueError, match="scale must be a positive finite"):
    fn(scale)


def test_learned_gaussian_is_per_leaf_and_matches_scipy():
  prior = priors.learned_gaussian(0.7)
  theta = prior.init(PARAMS)
  assert len(jax.tree.leaves(theta)) == len(jax.tree.leaves(PARAMS))
  np.testing.assert_allclose(prior.log_prob(theta, PARAMS),
                             stats.norm.logpdf(FLAT, 0.0, 0.7).sum(), rtol=RTOL)
