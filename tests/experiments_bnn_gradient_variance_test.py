"""Smoke test of experiments.bnn_gradient_variance on its quick config."""
import os

from experiments import bnn_gradient_variance
from experiments.configs import bnn_gradient_variance as config_lib


def test_quick_run_orders_the_estimators(tmp_path):
  res = bnn_gradient_variance.run(config_lib.get_config("quick"), str(tmp_path))
  for name in ("results.json", "results.md", "bnn_gradient_variance.png"):
    assert os.path.exists(tmp_path / name)
  rows = {(r["epochs"], r["estimator"]): r for r in res["rows"]}
  # With 64 draws the sample variance is within ~x2 of the truth with
  # overwhelming probability (chi-square, 63 dof), so ratios of 10x are safe.
  for stage in (0, 3):
    sf = rows[(stage, "score_function")]
    lrt = rows[(stage, "lrt")]
    # The score function ignores df/dw: orders of magnitude noisier.
    assert sf["top mean"] > 100 * lrt["top mean"]
    # LRT removes the weight-sharing covariance: lower scale-gradient variance
    # than one weight sample per minibatch (Kingma et al. 2015, Table 2).
    assert lrt["top raw scale"] < rows[(stage, "pathwise")]["top raw scale"]
    cv = rows[(stage, "score_function+delta_method")]
    assert cv["top mean"] < sf["top mean"] / 100
