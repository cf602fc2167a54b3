"""Config for ``experiments/map_regression.py``: a MAP ensemble on 1-D gap data.

``get_config()`` is the full study (a few seconds on a CPU);
``get_config("quick")`` is the tiny variant used by the smoke test.
"""
import ml_collections


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg == "quick"`` shrinks everything."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Data: jaxbdl.data.gap_regression (x in [-1, -0.3] U [0.3, 1],
  # y = sin(2 pi x) + noise_std * eps).
  c.data = ml_collections.ConfigDict()
  c.data.num_train = 100
  c.data.num_test = 500        # fresh points from the training distribution
  c.data.num_gap_test = 200    # points inside the gap ("in-between" inputs)
  c.data.noise_std = 0.1
  c.data.gap = (-0.3, 0.3)
  c.data.domain = (-1.0, 1.0)
  c.data.grid_range = (-1.5, 1.5)
  c.data.num_grid = 200

  # Model: jaxbdl.nn.networks.MLP hidden layers; the output layer is added per
  # noise model (1 mean + shared learned scale, or 2 outputs mean/raw scale).
  c.model = ml_collections.ConfigDict()
  c.model.hidden = (50, 50)
  c.model.activation = "tanh"

  # Noise models to compare, each an ensemble: "homoscedastic" (one learned
  # noise scale per member) or "heteroscedastic" (input-dependent scale).
  c.noise_models = ("homoscedastic", "heteroscedastic")
  c.init_noise_scale = 0.3     # initial homoscedastic noise std
  c.min_noise_scale = 1e-3     # floor on the predicted std
  c.prior_scale = 1.0          # Gaussian prior std on the network weights

  # Ensemble and optimisation (one vmapped program over members).
  c.num_members = 5
  c.num_epochs = 1500
  c.batch_size = 25
  c.learning_rate = 3e-3

  if arg == "quick":
    c.data.num_train = 64
    c.data.num_test = 64
    c.data.num_gap_test = 32
    c.data.num_grid = 50
    c.model.hidden = (16, 16)
    # One noise model: each costs one XLA compilation (~10 s of CPU here);
    # the smoke test checks the other's init/apply separately.
    c.noise_models = ("homoscedastic",)
    c.num_members = 2
    c.num_epochs = 600
    c.batch_size = 16
    c.learning_rate = 1e-2
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; use 'quick' or nothing")
  return c
