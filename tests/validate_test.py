"""Tests for experiments.validate and launch.parse (good inputs; the bad
ones are in tests/bad_input_test.py)."""
import importlib
import os
import re

from absl import flags
import pytest

from experiments import launch
from experiments import validate

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments", "configs")
NAMES = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
               if f.endswith(".py") and f != "__init__.py")


@pytest.mark.parametrize("variant", ["", "quick"])
@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_config_passes(name, variant):
  """No rule rejects a config the project ships (default and quick)."""
  module = importlib.import_module(f"experiments.configs.{name}")
  validate.check_config(name, module.get_config(variant or None))


@pytest.mark.parametrize("path, experiment, text", [
    ("learning_rate", None, "a finite number > 0"),
    ("adapt.learning_rate.finetune", None, "a finite number > 0"),
    ("adapt.num_steps.frozen", None, "an int >= 1"),
    ("model.num_predict_samples", None, "an int >= 1"),
    ("num_splits", None, "an int >= 0"),
    ("mc_dropout.dropout_rate", None, "a number in [0, 1)"),
    ("test_fraction", None, "a number in (0, 1)"),
    ("model.batch_size", None, "an int >= 1"),
    ("model.batch_size", "gap_uncertainty", "an int >= 0"),
    ("cnn.prior_scale", None, "a finite number > 0"),
    ("cnn.prior_scale", "cnn_rnn", "a finite number >= 0"),
])
def test_rule_for(path, experiment, text):
  assert validate.rule_for(path, experiment).text == text


def test_rule_for_unruled_field():
  assert validate.rule_for("activation") is None


@pytest.mark.parametrize("spec, expected", [
    ("map", ("map",)),
    ("map, mfvi", ("map", "mfvi")),
    (("mfvi", "map"), ("mfvi", "map")),
    ("all", ("map", "mfvi", "ensemble")),
])
def test_method_list(spec, expected):
  assert validate.method_list(spec, ("map", "mfvi", "ensemble")) == expected


@pytest.mark.parametrize("spec", ["map,map", "all,map", "", "map,,mfvi",
                                  "svgp", 3, ("mfvi", "mfvi"), "mfvi,map"])
def test_method_list_is_registry_check_names(spec):
  """One implementation: for the registry's own names, ``method_list`` gives
  ``check_names``'s result, or its exact message as a ConfigError."""
  from jaxbdl.bayes import registry
  try:
    expected = tuple(registry.check_names(spec))
  except ValueError as e:
    with pytest.raises(validate.ConfigError, match=f"^{re.escape(str(e))}$"):
      validate.method_list(spec, list(registry.METHODS))
  else:
    assert validate.method_list(spec, list(registry.METHODS)) == expected


def test_parse_applies_valid_overrides(tmp_path):
  fv = flags.FlagValues()
  argv = ["prog", f"--workdir={tmp_path}",
          f"--config={CONFIG_DIR}/curve_fitting.py:quick",
          "--config.learning_rate=0.05", "--config.widths=(2,4)"]
  launch.define_flags("curve_fitting", fv, argv)
  assert launch.parse("curve_fitting", argv, fv) == ["prog"]
  assert fv.config.learning_rate == 0.05 and fv.config.widths == (2, 4)
  assert fv.workdir == str(tmp_path)


@pytest.mark.parametrize("level,expected", [
    (None, None), (0, {"xla_backend_optimization_level": 0}),
    (2, {"xla_backend_optimization_level": 2})])
def test_compiler_options_from_the_config_field(level, expected):
  """The config field becomes jit's compiler_options on CPU (the test
  backend); None (XLA's default) and an absent field give None."""
  import ml_collections
  config = ml_collections.ConfigDict({"xla_backend_optimization_level": level})
  assert launch.compiler_options(config) == expected
  assert launch.compiler_options(ml_collections.ConfigDict()) is None
