"""Config for ``experiments/laplace_regression.py``: laplace-torch's
regression example (sinusoid, 1 x 50 tanh, post-hoc Laplace with the evidence).

``get_config()`` is the full study; ``get_config("quick")`` the tiny variant
used by the smoke test.
"""
import ml_collections


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg == "quick"`` shrinks everything."""
  c = ml_collections.ConfigDict()
  c.seeds = (0, 1, 2, 3, 4)       # data + initialisation seeds
  # Data (laplace-torch docs/regression_example.md): x ~ U(0, 8),
  # y = sin(x) + noise_std * eps; predictive grid [-5, 13] (500 points).
  c.num_train = 150
  c.num_test = 500                # fresh points from U(0, 8) (test LL)
  c.noise_std = 0.3
  c.hidden = 50
  c.activation = "tanh"
  # MAP: Adam(1e-2) on the mean squared error, 1000 full-batch epochs.
  c.learning_rate = 1e-2
  c.num_epochs = 1000
  # Evidence: log prior precision = log sigma = 1 at the start, Adam(0.1).
  c.marglik_steps = 1000
  c.marglik_lr = 0.1
  c.structures = ("full", "diag", "kron", "last_layer")
  if arg == "quick":
    c.seeds = (0,)
    c.num_test = 100
    c.num_epochs = 300
    c.marglik_steps = 200
    c.structures = ("full", "kron")
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; use 'quick' or nothing")
  return c
