"""Tests of experiments.uci_protocol: vmapped splits, selection, summaries."""
import math

import jax
import numpy as np
import pytest

from jaxbdl import data as data_lib
from experiments import uci_protocol as ub
from experiments.configs import uci_regression as uci_config
from jaxbdl.bayes import registry
from tests.uci_layout import write_uci_folder


def tiny_config():
  c = uci_config.get_config()
  c.hidden = 8
  c.batch_size = 16
  c.num_steps = 30
  c.min_epochs = 2
  c.max_epochs = 10
  c.num_predict_samples = 4
  c.map.patience = 3
  return c


def test_vmapped_splits_equal_single_split(tmp_path):
  ds = data_lib.load_uci(str(write_uci_folder(tmp_path)))
  cfg = tiny_config()
  cfg.map.valid_fraction = 0.0  # no early stopping: a smaller program
  key = jax.random.key(0)
  both = ub.evaluate("map", data_lib.uci_stacked_splits(ds, [0, 2]), cfg, key,
                     np.array([0, 2]))
  alone = ub.evaluate("map", data_lib.uci_stacked_splits(ds, [2]), cfg, key,
                      np.array([2]))
  np.testing.assert_allclose(both["rmse"][1], alone["rmse"][0], rtol=1e-4)
  np.testing.assert_allclose(both["ll"][1], alone["ll"][0], rtol=1e-4,
                             atol=1e-4)
  assert np.all(np.isfinite(both["rmse"])) and both["rmse"][0] != both["rmse"][1]


def test_summarise_uses_ddof0_standard_error():
  res = {"rmse": np.array([1.0, 2.0, 4.0]), "ll": np.array([-1.0, -2.0, -3.0]),
         "num_epochs": 5, "seconds": 1.0}
  s = ub.summarise(res)
  assert s["rmse_mean"] == pytest.approx(7 / 3)
  assert s["rmse_se"] == pytest.approx(np.std([1.0, 2.0, 4.0]) / math.sqrt(3))
  assert s["ll_se"] == pytest.approx(math.sqrt(2 / 3) / math.sqrt(3))
  assert len(s["per_split"]) == 3


def test_num_epochs_for():
  assert ub.num_epochs_for(100, 10, 1000, 40, 500) == 100
  assert ub.num_epochs_for(100, 10, 10, 40, 500) == 40
  assert ub.num_epochs_for(100, 10, 10 ** 6, 40, 500) == 500


def test_method_names_are_validated():
  assert registry.check_names("all") == list(registry.METHODS)
  with pytest.raises(ValueError, match="unknown method.*valid"):
    registry.check_names(["mfvi", "nope"])
  with pytest.raises(ValueError, match="listed more than once"):
    registry.check_names("map,map")
  with pytest.raises(ValueError, match="'all' cannot be combined"):
    registry.check_names("all,mfvi")


def test_nan_training_data_raises():
  ds_split = data_lib.UCISplit(*[np.zeros((1, 4, 2), np.float32)] * 9)
  bad = ds_split._replace(x_train=np.full((1, 4, 2), np.nan, np.float32))
  with pytest.raises(ValueError, match="x_train"):
    ub.evaluate("map", bad, tiny_config(), jax.random.key(0))


def test_grid_points_is_the_cartesian_product():
  pts = ub.grid_points({"prior_scale": [1.0, 10.0], "dropout_rate": [0.1, 0.2,
                                                                      0.3]})
  assert list(pts) == ["dropout_rate", "prior_scale"]
  pairs = set(zip(pts["dropout_rate"].round(3), pts["prior_scale"]))
  assert len(pairs) == 6 and (np.float32(0.2).round(3), 10.0) in pairs
  with pytest.raises(ValueError, match="prior_scale"):
    ub.grid_points({"prior_scale": []})
  assert ub.grid_points({}) == {}  # one point: the fixed config


def test_unknown_grid_field_names_the_valid_ones():
  with pytest.raises(ValueError, match="dropout_rate.*valid.*prior_scale"):
    registry.default_hparams("map", tiny_config(), {"dropout_rate": 0.1})


def test_traced_hparams_match_config_values(tmp_path):
  """A per-split hparams array gives the same numbers as the same value set
  in the config (the traced path is the config path).

  MC dropout: the traced rate draws its masks from another rng stream, so
  the two paths agree exactly only where the masks cannot differ -- rate 0
  (every mask is ones) -- while a traced rate of 0.2 on the other split must
  change the result (the traced rate is used). MAP: deterministic, so a
  traced prior scale equals the configured one. Tolerance: the same float32
  program up to where the prior's weight decay is computed (Python float64
  vs traced float32: one rounding), so 1e-5 relative."""
  ds = data_lib.load_uci(str(write_uci_folder(tmp_path)))
  splits = data_lib.uci_stacked_splits(ds, [0, 1])
  cfg = tiny_config()
  cfg.mc_dropout.dropout_rate = 0.0
  cfg.mc_dropout.prior_scale = 3.0
  key = jax.random.key(1)
  ref = ub.evaluate("mc_dropout", splits, cfg, key)
  traced = ub.evaluate("mc_dropout", splits, tiny_config(), key,
                       hparams={"dropout_rate": [0.0, 0.2],
                                "prior_scale": [3.0, 3.0]})
  np.testing.assert_allclose(traced["rmse"][0], ref["rmse"][0], rtol=1e-5)
  np.testing.assert_allclose(traced["ll"][0], ref["ll"][0], rtol=1e-5,
                             atol=1e-5)
  assert abs(traced["rmse"][1] - ref["rmse"][1]) > 1e-3 * ref["rmse"][1]
  cfg_map = tiny_config()
  cfg_map.map.valid_fraction = 0.0
  cfg_map.map.prior_scale = 0.3
  a = ub.evaluate("map", splits, cfg_map, key)
  cfg_map.map.prior_scale = 1.0
  b = ub.evaluate("map", splits, cfg_map, key, hparams={"prior_scale": 0.3})
  np.testing.assert_allclose(a["rmse"], b["rmse"], rtol=1e-5)
  np.testing.assert_allclose(a["ll"], b["ll"], rtol=1e-5, atol=1e-5)


def test_grid_search_selects_on_validation_and_refits(tmp_path):
  ds = data_lib.load_uci(str(write_uci_folder(tmp_path, rows=120)))
  splits = data_lib.uci_stacked_splits(ds, [0, 1])
  cfg = tiny_config()
  cfg.map.valid_fraction = 0.0
  cfg.num_steps = 300
  cfg.max_epochs = 100
  cfg.learning_rate = 1e-2
  key = jax.random.key(0)
  # prior_scale 1e-3 pins every weight at ~0 (predicts the mean: validation
  # LL near that of N(0, 1), ~ -1.4); 1.0 fits y = x0 - 0.5 x1^2 (noise sd
  # ~0.1 / 3 in standardised units), so the grid must pick index 1 on both.
  res = ub.select_and_evaluate("map", splits, cfg, key,
                               {"prior_scale": [1e-3, 1.0]},
                               valid_fraction=0.25)
  assert res["valid_ll"].shape == (2, 2) and res["valid_rmse"].shape == (2, 2)
  assert np.all(res["valid_ll"][1] > res["valid_ll"][0] + 0.5)
  np.testing.assert_array_equal(res["chosen"], [1, 1])
  np.testing.assert_allclose(res["hparams"]["prior_scale"], [1.0, 1.0])
  # The refit is evaluate() with the chosen values.
  again = ub.evaluate("map", splits, cfg, key, hparams=res["hparams"])
  np.testing.assert_allclose(res["rmse"], again["rmse"], rtol=1e-5)
  np.testing.assert_allclose(res["valid_ll_chosen"], res["valid_ll"][1])
  with pytest.raises(ValueError, match="valid_fraction"):
    ub.select_and_evaluate("map", splits, cfg, key, {"prior_scale": [1.0]},
                           valid_fraction=1.5)


def test_fixed_noise_is_the_predictive_variance_of_map(tmp_path):
  """noise='fixed': MAP's predictive variance is exactly noise_scale^2, the
  traced (vmapped) value or a Python float."""
  ds = data_lib.load_uci(str(write_uci_folder(tmp_path)))
  splits = data_lib.uci_stacked_splits(ds, [0])
  cfg = tiny_config()
  cfg.map.valid_fraction = 0.0
  cfg.map.noise = "fixed"
  method, _ = ub.method_for("map", cfg, splits.x_train.shape[1])
  data = {"x": splits.x_train[0], "y": splits.y_train[0]}
  for scale in (0.3, jax.numpy.float32(0.3)):
    hp = registry.default_hparams("map", cfg, {"noise_scale": scale})
    state, _ = jax.jit(method.fit)(jax.random.key(0), data, hp, None)
    pred = method.predict(state, splits.x_test[0], jax.random.key(1), hp)
    np.testing.assert_allclose(pred["variance"], 0.09, rtol=1e-5)
  cfg.map.noise = "student"
  with pytest.raises(ValueError, match="noise must be one of"):
    ub.uci_model(cfg, "map")
