"""Smoke test of experiments/bayes_logreg.py on its quick config.

Asserts numbers: with the pathwise estimator the ELBO rises by more than 100
nats from its initial value (about -382 at q = N(0, 0.1^2)) and the test
accuracy of the posterior predictive exceeds 0.9; the delta-method control
variate keeps the score-function gradient variance finite and training
stable (its ELBO also rises).
"""
import os

import numpy as np

from experiments import bayes_logreg
from experiments.configs import bayes_logreg as config_lib


def test_quick_run(tmp_path):
  config = config_lib.get_config("quick")
  res = bayes_logreg.run(config, str(tmp_path))
  for name in ("results.json", "results.md", "training.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  assert res["dim"] == 31
  rows = {r["estimator"]: r for r in res["summary"]}
  pw = rows["pathwise"]
  assert pw["final_elbo"] > pw["initial_elbo"] + 100.0
  assert pw["test_accuracy"] > 0.9
  tr = res["traces"]["pathwise"]
  assert tr["elbo"].shape == (config.num_seeds,
                              config.num_steps // config.eval_every + 1)
  assert np.all(np.isfinite(tr["grad_variance"]))
  cv = rows["score_function_delta"]
  assert cv["final_elbo"] > cv["initial_elbo"] + 100.0
  assert np.isfinite(cv["mean_log10_grad_var"])


def test_fitted_coefficient_is_exact_for_a_quadratic():
  """The delta method is exact for a quadratic f, so the fitted beta is 1
  and score_function + delta(fitted on 25 fresh samples) returns the exact
  gradient (2 (mu - k), 2 sigma) per coordinate up to float32 rounding."""
  import jax
  import jax.numpy as jnp
  from jaxbdl.gradients import control_variates, distributions, estimators
  k = jnp.array([0.3, -1.0])
  params = {"loc": jnp.array([0.5, 0.2]), "scale": jnp.array([0.7, 1.3])}
  est = bayes_logreg.fitted_coefficient(
      estimators.score_function, control_variates.delta_method(), 25)
  f = lambda x: jnp.sum(jnp.square(x - k))
  g = jax.jit(est(f, distributions.Normal), static_argnums=2)(
      params, jax.random.key(0), 4)
  np.testing.assert_allclose(np.asarray(g["loc"]),
                             2 * np.asarray(params["loc"] - k), atol=1e-3)
  np.testing.assert_allclose(np.asarray(g["scale"]),
                             2 * np.asarray(params["scale"]), atol=1e-3)


def test_paper_protocol_shrunk(tmp_path):
  """The :paper config's pieces (batch 32, SGD cosine, log-scale, per-dim
  variance) on 2 epochs: per-dimension variances of shape [seeds, E + 1, D]
  are finite and positive, and the ELBO rises from its initial value."""
  config = config_lib.get_config("paper")
  config.estimators = ("pathwise",)
  config.num_steps = 28
  config.eval_every = 14
  config.variance_samples = 16
  config.elbo_samples = 100
  config.learning_rate = 1e-2
  res = bayes_logreg.run(config, str(tmp_path))
  tr = res["traces"]["pathwise"]
  for key in ("var_loc", "var_log_scale"):
    assert tr[key].shape == (1, 3, 31)
    assert np.all(np.isfinite(tr[key])) and np.all(tr[key] > 0)
  row = res["summary"][0]
  assert row["final_elbo"] > row["initial_elbo"]
