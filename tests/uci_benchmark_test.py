"""Tests of jaxbdl.uci_benchmark: vmapped splits, summaries, validation."""
import math

import jax
import numpy as np
import pytest

from jaxbdl import data as data_lib
from jaxbdl import uci_benchmark as ub
from tests.uci_layout import write_uci_folder


def tiny_config():
  c = ub.default_config()
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
  assert ub.check_method_names("all") == list(ub.METHODS)
  with pytest.raises(ValueError, match="unknown method.*valid"):
    ub.check_method_names(["mfvi", "hmc"])


def test_nan_training_data_raises():
  ds_split = data_lib.UCISplit(*[np.zeros((1, 4, 2), np.float32)] * 9)
  bad = ds_split._replace(x_train=np.full((1, 4, 2), np.nan, np.float32))
  with pytest.raises(ValueError, match="x_train"):
    ub.evaluate("map", bad, tiny_config(), jax.random.key(0))
