"""Tests of experiments.hierarchical_bnn: data, the hierarchical log density
against a direct formula, and an end-to-end quick run."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from experiments import hierarchical_bnn
from experiments.configs import hierarchical_bnn as config_lib
from jaxbdl.evaluation import metric_writers
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes import priors


def test_tasks_are_standardised_rotations():
  d = hierarchical_bnn.make_tasks(3, 100, 0.3, 90.0, seed=1)
  assert d["x"].shape == (3, 100, 2) and d["y"].shape == (3, 100)
  # A rotation keeps the standardised cloud's total variance (2 per task).
  np.testing.assert_allclose(np.sum(d["x"].var(axis=1), -1), 2.0, rtol=1e-5)
  assert set(np.unique(d["y"])) == {0, 1}
  # Different tasks, different rotations.
  assert not np.allclose(np.cov(d["x"][0].T), np.cov(d["x"][1].T), atol=0.05)


def test_hierarchical_log_density_matches_direct_formula():
  module = hierarchical_bnn.NoBiasMLP((3, 1))
  model = post_lib.Model(module, lambda hp: likelihoods.bernoulli(),
                         lambda hp: priors.gaussian(1.0))
  rng = np.random.default_rng(0)
  t = 2
  data = {"x": jnp.asarray(rng.normal(size=(t, 5, 2)), jnp.float32),
          "y": jnp.asarray(rng.integers(0, 2, size=(t, 5)), jnp.int32)}
  mu = {"Dense_0": {"kernel": rng.normal(size=(2, 3))},
        "Dense_1": {"kernel": rng.normal(size=(3, 1))}}
  eps = jax.tree.map(lambda a: rng.normal(size=(t,) + a.shape), mu)
  log_sigma = {"Dense_0": {"kernel": np.float32(-0.3)},
               "Dense_1": {"kernel": np.float32(0.2)}}
  tree = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32),
                      {"mu": mu, "log_sigma": log_sigma, "eps": eps})
  got = hierarchical_bnn.hierarchical_log_density(model, data, {})(tree)
  # Direct: w_t = mu + sigma eps_t; Bernoulli logits of tanh(x W0) W1;
  # N(0,1) on mu and eps; HalfNormal(1) on sigma plus log sigma (Jacobian).
  want = 0.0
  s0, s1 = np.exp(-0.3), np.exp(0.2)
  for k in range(t):
    w0 = mu["Dense_0"]["kernel"] + s0 * eps["Dense_0"]["kernel"][k]
    w1 = mu["Dense_1"]["kernel"] + s1 * eps["Dense_1"]["kernel"][k]
    logit = (np.tanh(np.asarray(data["x"][k], np.float64) @ w0) @ w1)[:, 0]
    yk = np.asarray(data["y"][k])
    want += np.sum(yk * -np.log1p(np.exp(-logit))
                   + (1 - yk) * -np.log1p(np.exp(logit)))
  for a in jax.tree.leaves(mu) + jax.tree.leaves(eps):
    want += np.sum(stats.norm.logpdf(a))
  want += stats.halfnorm.logpdf(s0) + stats.halfnorm.logpdf(s1) - 0.3 + 0.2
  # float32 sums of ~50 terms of size ~1: rtol 1e-5.
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


@pytest.mark.slow  # two NUTS programs: ~60 s CPU, 115 s wall at load 12
def test_quick_run_beats_chance_and_writes_outputs(tmp_path):
  config = config_lib.get_config("quick")
  res = hierarchical_bnn.run(config, str(tmp_path))
  rows = {r["model"]: r for r in res["rows"]}
  assert set(rows) == {"separate", "hierarchical"}
  # Chance is 0.5. 3 tasks x 50 test points: the SE of an accuracy near 0.8
  # is sqrt(0.8 * 0.2 / 150) = 0.033, so > 0.65 is > 4 SE above chance.
  for r in rows.values():
    assert r["test_accuracy"] > 0.65, r
    assert np.isfinite(r["rhat_max"]) and r["rhat_max"] >= 0.99
  for name in ("results.json", "results.md", "hierarchical_bnn.png"):
    assert os.path.exists(tmp_path / name)
  with open(tmp_path / "results.json") as f:
    saved = json.load(f)
  assert "provenance" in saved and len(saved["rows"]) == 2
  scalars = metric_writers.read_scalars(str(tmp_path / "seed0_hierarchical"))
  # Event files store float32: rtol 1e-6.
  assert scalars["test_accuracy"][0][1] == pytest.approx(
      rows["hierarchical"]["test_accuracy"], rel=1e-6)
