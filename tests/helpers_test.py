"""Tests for tests/helpers.py: the Monte Carlo check fails for the right
reason, the tolerance table is the dtype's epsilon."""
import numpy as np
import pytest

from tests.helpers import assert_mc_close, tol


def test_tol_is_ulps_times_eps():
  assert tol(np.float32, 4) == dict(rtol=4 * 2.0 ** -23, atol=4 * 2.0 ** -23)
  assert tol(np.float64)["rtol"] == 16 * 2.0 ** -52


def test_mc_close_accepts_an_unbiased_estimator():
  rng = np.random.default_rng(0)
  assert_mc_close(rng.normal(1.0, 2.0, size=(4000, 3)), [1.0, 1.0, 1.0], k=4)


def test_mc_close_rejects_a_bias_of_ten_standard_errors():
  rng = np.random.default_rng(1)
  s = 4000
  samples = rng.normal(0.0, 1.0, size=s) + 10.0 / np.sqrt(s)
  with pytest.raises(AssertionError, match=r"differs from exact 0 by .* SE "
                     r"\(SE .*, S = 4000, allowed k = 4\)"):
    assert_mc_close(samples, 0.0, k=4)


def test_mc_close_constant_samples_need_exact_equality():
  assert_mc_close(np.full(5, 2.0), 2.0)
  with pytest.raises(AssertionError, match="Monte Carlo estimate 2 at"):
    assert_mc_close(np.full(5, 2.0), 2.001)
