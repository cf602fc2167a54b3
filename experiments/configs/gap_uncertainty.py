"""Config for experiments.gap_uncertainty; ``get_config("quick")`` shrinks it."""
import ml_collections

from jaxbdl import uci_benchmark


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_points = 100
  c.noise_std = 0.1
  c.methods = ("map", "mfvi", "mc_dropout", "ensemble")
  # Per-method hyper-parameters: the UCI benchmark's, in standardised units.
  c.model = uci_benchmark.default_config()
  c.model.num_steps = 20000
  if arg == "quick":
    c.num_points = 40
    c.methods = ("map", "mfvi")
    c.model.hidden = 16
    c.model.num_steps = 600
    c.model.min_epochs = 1
    c.model.num_predict_samples = 20
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; valid: 'quick'")
  return c
