"""Config for experiments.bnn_gradient_variance; ``get_config("quick")`` shrinks it."""
import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data_dir = ""                # one UCI data-set folder; "" = built-in diabetes
  c.split = 0
  c.hidden = 50
  c.batch_size = 32
  c.init_scale = 1e-3            # initial posterior std (as the UCI runs)
  c.prior_scale = 1.0
  c.noise_scale = 0.5            # fixed observation noise (standardised units)
  c.estimators = ("pathwise", "lrt", "flipout", "score_function",
                  "score_function+delta_method")
  c.num_repeats = 500            # gradient draws (minibatch + noise) per stage
  c.train_epochs = (0, 10, 100)  # stages: variance measured after these epochs
  c.learning_rate = 1e-2
  if arg == "quick":
    c.hidden = 8
    c.num_repeats = 64
    c.estimators = ("pathwise", "lrt", "score_function",
                    "score_function+delta_method")
    c.train_epochs = (0, 3)
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; valid: 'quick'")
  return c
