"""Conjugate check of the core through the bring-your-own-data entry point.

Bayesian linear regression with an orthogonal, zero-mean design (columns of a
Hadamard matrix), a Gaussian prior N(0, s^2) on every weight and the bias and
a fixed noise sigma: the exact posterior is diagonal with precision
``N / sigma^2 + 1 / s^2`` for every coordinate, so mean-field VI is exact at
its optimum. ``experiments.fit`` with ``hidden=()``, fixed noise and
``standardize=False`` must give the exact posterior predictive.

Tolerances: the predictive is a mixture over S posterior samples, so the
mean carries MC error ``sqrt(var_f / S)`` and the function-variance estimate
a relative error ``sqrt(2 / S)``; we allow 4 of those SEs plus the residual
optimisation error of Adam's last iterate (1 % of the posterior sd for
means, 5 % relative for variances).
"""
import json

import numpy as np
import pytest
import scipy.linalg

from experiments import fit
from experiments.configs import fit as fit_config

SIGMA, PRIOR, N, S = 0.5, 1.0, 32, 4000


def _problem(tmp_path):
  h = scipy.linalg.hadamard(N).astype(np.float64)
  x = h[:, 1:4]                        # orthogonal, zero-mean columns
  w_true = np.array([0.7, -0.4, 0.2])
  rng = np.random.RandomState(0)
  y = x @ w_true + 0.3 + SIGMA * rng.randn(N)
  xt = rng.randn(7, 3)
  path = tmp_path / "blr.npz"
  np.savez(path, x_train=x, y_train=y, x_test=xt)
  prec = N / SIGMA ** 2 + 1 / PRIOR ** 2   # every coordinate
  feats = np.concatenate([x, np.ones((N, 1))], 1)
  mean = feats.T @ y / SIGMA ** 2 / prec
  ft = np.concatenate([xt, np.ones((7, 1))], 1)
  return path, ft @ mean, (ft ** 2).sum(1) / prec


@pytest.mark.parametrize("method", ["mfvi", "mfvi_lrt", "mfvi_flipout"])
def test_linear_model_matches_exact_posterior_predictive(tmp_path, method):
  path, mean_exact, var_f_exact = _problem(tmp_path)
  c = fit_config.get_config()
  c.hidden = ()
  c.noise_scale = SIGMA
  c.standardize = False
  c.prior_scale = PRIOR
  c.batch_size = N
  c.num_epochs = 3000
  c.learning_rate = 3e-3
  c.num_predict_samples = S
  c[method].num_train_samples = 16
  res = fit.run(c, str(tmp_path), str(path), method)
  assert set(res["methods"]) == {method}
  pred = np.load(tmp_path / method / "predictions.npz")
  var_f = pred["variance"] - SIGMA ** 2
  mean_tol = 4 * np.sqrt(var_f_exact / S) + 0.01 * np.sqrt(var_f_exact)
  np.testing.assert_array_less(np.abs(pred["mean"] - mean_exact), mean_tol)
  rel = np.abs(var_f / var_f_exact - 1)
  np.testing.assert_array_less(rel, 4 * np.sqrt(2 / S) + 0.05)
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["methods"][method]["seconds"] > 0
