"""Config for experiments.gap_uncertainty; ``get_config("quick")`` shrinks it."""
import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_seeds = 3  # Training seeds per method (same data set).
  c.num_points = 100
  c.noise_std = 0.1
  c.domain = (-1.0, 1.0)
  c.gap = (-0.3, 0.3)
  c.methods = ("map", "mfvi", "mc_dropout", "ensemble")
  # Shared network, likelihood and optimiser (standardised targets).
  c.model = ml_collections.ConfigDict()
  c.model.hidden = (50, 50)
  c.model.activation = "relu"
  c.model.bias_init_std = 1.0  # Spread the ReLU kinks over the inputs.
  # Observation-noise sd, fixed at the true value (data units); 0: learned.
  # MFVI with learned noise explains the data as noise (RMSE 0.68).
  c.model.noise_scale = 0.1
  c.model.noise_init_scale = 0.5  # Standardised units; used when learned.
  c.model.noise_min_scale = 1e-3
  c.model.learning_rate = 1e-2
  c.model.num_steps = 5000
  c.model.num_predict_samples = 100
  # Per-method priors N(0, prior_scale^2) on every weight (weight decay for
  # the point estimates). Weak for MAP / ensemble members: with 1.0 the
  # members agree in the gap (gap / data sd ~1.0, one seed, not 1.9).
  c.map = ml_collections.ConfigDict(dict(prior_scale=10.0))
  c.mc_dropout = ml_collections.ConfigDict(dict(prior_scale=10.0,
                                                dropout_rate=0.1))
  c.mfvi = ml_collections.ConfigDict(dict(prior_scale=1.0, init_scale=1e-2,
                                          num_train_samples=4))
  c.ensemble = ml_collections.ConfigDict(dict(prior_scale=10.0, num_members=10))
  if arg == "quick":
    c.num_seeds = 1
    c.model.hidden = (32, 32)
    c.model.num_steps = 800
    c.model.num_predict_samples = 10
    c.ensemble.num_members = 2
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; valid: 'quick'")
  return c
