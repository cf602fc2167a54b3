"""Config of experiments/fit.py (bring your own data).

``get_config()``: a 1x50 ReLU MLP, Gaussian prior of scale 1 on every weight
and bias, learned observation noise, standardised data, 200 epochs;
``get_config("quick")`` shrinks it for tests. Per-method settings live in
``config.<method>`` (``jaxbdl.bayes.registry.default_config``).
"""
from jaxbdl.bayes import registry


def get_config(arg=None):
  c = registry.default_config()
  c.hidden = (50,)            # hidden widths; () is a linear model
  c.activation = "relu"
  c.prior_scale = 1.0         # Gaussian prior std on every weight and bias
  c.noise_scale = 0.0         # > 0: fixed observation noise (data units)
  c.standardize = True        # False: the model sees the raw data
  c.seed = 0
  c.num_epochs = 200
  c.batch_size = 32
  c.learning_rate = 1e-3
  c.num_predict_samples = 100
  if arg == "quick":
    c.hidden = (16,)
    c.num_epochs = 20
    c.num_predict_samples = 10
    c.ensemble.num_members = 2
  elif arg not in (None, ""):
    raise ValueError(f"unknown config argument {arg!r}; valid: None, 'quick'")
  return c
