"""End-to-end smoke test of experiments/backprop_check.py on its quick config."""
import json
import math
import os


from experiments import backprop_check
from experiments.configs import backprop_check as config_lib


def test_quick_run_writes_outputs_and_checks_pass(tmp_path):
  res = backprop_check.run(config_lib.get_config("quick"), str(tmp_path))
  for name in ("results.json", "results.md", "lecture_function.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  with open(tmp_path / "results.json") as f:
    saved = json.load(f)
  assert len(saved["backward"]) == 2  # one row per activation, one shape
  assert saved["provenance"]["versions"]["jaxlib"]
  # Both float32 gradients agree with the float64 oracle within the
  # worst-case rounding bound relative to the condition sum_n |g_n|.
  shape = config_lib.get_config("quick").shapes[0]
  bound = backprop_check.condition_bound(shape)
  assert bound == sum(shape) + 16
  assert res["summary"]["backward_within_condition_bound"] is True
  for row in saved["backward"]:
    assert 0 < row["cond_rel_error / eps32"] <= bound
    assert 0 <= row["autodiff cond_rel_error / eps32"] <= bound
    assert row["bound / eps32"] == bound
  # In-domain points: FD agrees to O(eps64^(2/3)) ~ 4e-11 (times |f'''|).
  assert res["summary"]["max_abs_error_fd_in_domain"] < 1e-6
  # (0.5, 1.0) is outside the domain: flagged, NaN gradient (null in JSON).
  out = [r for r in saved["lecture_function"] if not r["in_domain"]]
  assert [(r["x1"], r["x2"]) for r in out] == [(0.5, 1.0)]
  assert out[0]["autodiff df/dx1"] is None and "OUT OF DOMAIN" in out[0]["flag"]
  assert res["summary"]["num_out_of_domain"] == 1
  assert "OUT OF DOMAIN" in (tmp_path / "results.md").read_text()
  assert not math.isnan(res["summary"]["max_abs_error_fd_in_domain"])
