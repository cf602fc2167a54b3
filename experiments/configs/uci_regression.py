"""Config of experiments/uci_regression.py (the UCI 20-split benchmark).

``get_config()`` is the full protocol; ``get_config("quick")`` shrinks it for
the smoke test (2 splits, a few hundred steps, 10 predictive samples).
Per-method hyper-parameters live in ``config.<method>`` (see
``jaxbdl.uci_benchmark.default_config``).
"""
from jaxbdl import uci_benchmark


def get_config(arg=None):
  config = uci_benchmark.default_config()
  config.dataset = "all"        # a folder name under data_dir, or "all"
  config.method = "mfvi"        # a method name, comma-separated names, or "all"
  config.data_dir = "/work/shared/data/uci"
  config.num_splits = 0         # 0: all splits in the folder
  config.seed = 0
  config.num_steps = 20000
  if arg == "quick":
    config.num_steps = 200
    config.learning_rate = 1e-2
    config.min_epochs = 2
    config.max_epochs = 50
    config.num_predict_samples = 10
    config.num_splits = 2
    config.hidden = 16
    config.ensemble.num_members = 2
    config.map.patience = 5
  elif arg not in (None, ""):
    raise ValueError(f"unknown config argument {arg!r}; valid: None, 'quick'")
  return config
