"""Tests of jaxbdl.evaluation.calibration against scikit-learn, scipy and numpy loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from jaxbdl.evaluation import calibration as cal

_N, _C = 300, 4
# float32 sums of ~N terms: relative tolerance ~ sqrt(N) * eps(float32).
_TOL = 1e-5


def _data(seed=0, n=_N, c=_C, temp=1.0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, c)) * 2.0 / temp
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs = (probs / probs.sum(-1, keepdims=True)).astype(np.float32)
  # Labels correlated with the prediction so that accuracy is ~0.6.
  pred = probs.argmax(-1)
  labels = np.where(rng.uniform(size=n) < 0.5, pred,
                    rng.integers(0, c, size=n)).astype(np.int32)
  return labels, probs


def _ece_loop(labels, probs, num_bins, adaptive):
  """Direct numpy ECE / MCE: explicit bins, explicit loop."""
  conf = probs.max(-1).astype(np.float64)
  correct = (probs.argmax(-1) == labels).astype(np.float64)
  if adaptive:
    groups = np.array_split(np.argsort(conf, kind="stable"), num_bins)
  else:
    groups = []
    for b in range(num_bins):
      lo, hi = b / num_bins, (b + 1) / num_bins
      mask = (conf > lo) & (conf <= hi) if b > 0 else (conf <= hi)
      groups.append(np.nonzero(mask)[0])
  ece, mce = 0.0, 0.0
  for g in groups:
    if len(g):
      gap = abs(correct[g].mean() - conf[g].mean())
      ece += len(g) / len(conf) * gap
      mce = max(mce, gap)
  return ece, mce


@pytest.mark.parametrize("num_classes", [2, 4])
def test_brier_score_matches_sklearn(num_classes):
  labels, probs = _data(1, c=num_classes)
  want = skm.brier_score_loss(labels, probs, labels=list(range(num_classes)),
                              scale_by_half=False)
  got = float(cal.brier_score(labels, probs))
  assert abs(got - want) < _TOL * max(1.0, want)
  if num_classes == 2:  # Binary sklearn scores the positive class only: BS/2.
    assert abs(got / 2 - skm.brier_score_loss(labels, probs[:, 1])) < _TOL


def test_nll_is_metrics_nll():
  labels, probs = _data(2)
  want = -np.mean(np.log(probs[np.arange(_N), labels].astype(np.float64)))
  assert abs(float(cal.nll(labels, probs)) - want) < _TOL * want


def _decomposition_loop(labels, probs):
  n, c = probs.shape
  y = np.eye(c)[labels]
  pred = probs.argmax(-1)
  ybar = y.mean(0)
  rel = res = 0.0
  for k in range(c):
    g = pred == k
    if g.any():
      yk = y[g].mean(0)
      rel += np.sum((probs[g] - yk) ** 2)
      res += g.sum() * np.sum((yk - ybar) ** 2)
  return rel / n, res / n, np.sum(ybar * (1 - ybar))


def test_brier_decomposition_matches_loop():
  labels, probs = _data(3)
  rel, res, unc = _decomposition_loop(labels, probs.astype(np.float64))
  got = cal.brier_decomposition(labels, probs)
  for name, want in [("reliability", rel), ("resolution", res),
                     ("uncertainty", unc)]:
    assert abs(float(got[name]) - want) < _TOL, name


def test_brier_decomposition_is_exact_for_constant_forecasts_per_group():
  # Three distinct forecast vectors with distinct arg-maxes: constant per group.
  rng = np.random.default_rng(4)
  table = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]],
                   np.float32)
  which = rng.integers(0, 3, size=200)
  probs = table[which]
  labels = rng.integers(0, 3, size=200).astype(np.int32)
  d = cal.brier_decomposition(labels, probs)
  total = d["reliability"] - d["resolution"] + d["uncertainty"]
  assert abs(float(total) - float(cal.brier_score(labels, probs))) < _TOL


@pytest.mark.parametrize("adaptive", [False, True], ids=["equal_width",
                                                          "equal_mass"])
def test_ece_and_mce_match_numpy_loop(adaptive):
  labels, probs = _data(5, n=203)  # 203 = 13 * 15 + 8: unequal adaptive bins.
  ece, mce = _ece_loop(labels, probs, 15, adaptive)
  assert abs(float(cal.expected_calibration_error(
      labels, probs, 15, adaptive)) - ece) < _TOL
  assert abs(float(cal.maximum_calibration_error(
      labels, probs, 15, adaptive)) - mce) < _TOL
  diagram = cal.reliability_diagram(labels, probs, 15, adaptive)
  assert diagram["count"].sum() == 203
  assert abs(diagram["ece"] - ece) < _TOL
  assert diagram["edges"].shape == (16,)
  if adaptive:
    assert diagram["count"].max() - diagram["count"].min() == 1


def test_plot_reliability_diagram_draws_bars():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  labels, probs = _data(6)
  fig, ax = plt.subplots()
  diagram = cal.reliability_diagram(labels, probs, 10)
  cal.plot_reliability_diagram(ax, diagram, "model")
  assert len(ax.patches) == int(np.sum(diagram["count"] > 0))
  plt.close(fig)


def test_uncertainty_decomposition_matches_scipy_entropy():
  rng = np.random.default_rng(7)
  s = rng.dirichlet(np.ones(_C), size=(5, 20)).astype(np.float32)  # [S, N, C]
  d = cal.uncertainty_decomposition(s)
  total = stats.entropy(s.mean(0).astype(np.float64), axis=-1)
  alea = stats.entropy(s.astype(np.float64), axis=-1).mean(0)
  np.testing.assert_allclose(d["total"], total, atol=_TOL)
  np.testing.assert_allclose(d["aleatoric"], alea, atol=_TOL)
  np.testing.assert_allclose(d["epistemic"], total - alea, atol=_TOL)
  np.testing.assert_allclose(cal.predictive_entropy(s.mean(0)), total,
                             atol=_TOL)


def test_mutual_information_closed_form_and_single_sample():
  # Two confident members disagreeing: total log 2, aleatoric 0, MI log 2.
  s = np.array([[[1.0, 0.0]], [[0.0, 1.0]]], np.float32)
  d = cal.uncertainty_decomposition(s)
  assert abs(float(d["epistemic"][0]) - np.log(2.0)) < _TOL
  assert float(d["aleatoric"][0]) == 0.0
  one = cal.uncertainty_decomposition(_data(8)[1][None])
  assert float(jnp.max(one["epistemic"])) == 0.0


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_auroc_and_aupr_match_sklearn(ties):
  rng = np.random.default_rng(9)
  y = rng.uniform(size=400) < 0.3
  s = rng.normal(size=400) + 1.0 * y
  if ties:
    s = np.round(s, 0)
  s = s.astype(np.float32)
  assert abs(float(cal.auroc(y, s)) - skm.roc_auc_score(y, s)) < _TOL
  assert abs(float(cal.average_precision(y, s))
             - skm.average_precision_score(y, s)) < _TOL
  od = cal.ood_detection(s[~y], s[y])
  assert abs(float(od["auroc"]) - skm.roc_auc_score(y, s)) < _TOL


def test_accuracy_coverage_matches_loop():
  labels, probs = _data(10, n=50)
  conf = probs.max(-1)
  correct = probs.argmax(-1) == labels
  curve = cal.accuracy_coverage(labels, probs)
  order = np.argsort(-conf, kind="stable")
  for k in (1, 10, 25, 50):
    assert abs(float(curve["accuracy"][k - 1]) - correct[order[:k]].mean()) < (
        _TOL)
  assert abs(float(curve["coverage"][-1]) - 1.0) < _TOL
  assert abs(float(curve["accuracy"][-1]) - correct.mean()) < _TOL
  want_area = np.mean([correct[order[:k]].mean() for k in range(1, 51)])
  assert abs(float(curve["area"]) - want_area) < _TOL


def test_metrics_batch_under_jit_and_vmap():
  batch = [_data(20 + i) for i in range(3)]
  labels = jnp.stack([b[0] for b in batch])
  probs = jnp.stack([b[1] for b in batch])

  @jax.jit
  def all_metrics(y, p):
    return jax.vmap(lambda yy, pp: jnp.stack([
        cal.brier_score(yy, pp),
        cal.expected_calibration_error(yy, pp, 10, True),
        cal.auroc(jnp.argmax(pp, -1) == yy, jnp.max(pp, -1)),
        cal.accuracy_coverage(yy, pp)["area"]]))(y, p)

  got = np.asarray(all_metrics(labels, probs))
  for i, (y, p) in enumerate(batch):
    want = [cal.brier_score(y, p),
            cal.expected_calibration_error(y, p, 10, True),
            cal.auroc(p.argmax(-1) == y, p.max(-1)),
            cal.accuracy_coverage(y, p)["area"]]
    np.testing.assert_allclose(got[i], np.asarray(want, np.float32),
                               atol=_TOL)


@pytest.mark.parametrize("fn, args, match", [
    ("brier_score", (np.array([0, 1]), np.array([[0.6, 0.6], [0.5, 0.5]])),
     "must sum to 1"),
    ("expected_calibration_error", (np.array([0, 2]),
                                    np.array([[0.5, 0.5], [0.5, 0.5]])),
     r"labels must be in \[0, C=2\)"),
    ("nll", (np.array([0.0, 1.0]), np.array([[0.5, 0.5], [0.5, 0.5]])),
     "labels must be integers"),
    ("calibration_bins", (np.array([0]), np.array([[1.0, 0.0]]), 5, True),
     "adaptive bins need N >= num_bins"),
    ("auroc", (np.array([True, False]), np.array([0.1, np.nan])),
     "scores contain NaN"),
    ("auroc", (np.array([True, True]), np.array([0.1, 0.2])),
     "need both classes"),
    ("uncertainty_decomposition", (np.ones((2, 2)) / 2,), r"\[S, N, C\]"),
], ids=["probs_sum", "label_range", "label_dtype", "adaptive_small",
        "nan_score", "single_class", "sample_shape"])
def test_bad_input_raises(fn, args, match):
  with pytest.raises(ValueError, match=match):
    getattr(cal, fn)(*args)
