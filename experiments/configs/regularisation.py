"""Config for experiments.regularisation; ``get_config("quick")`` shrinks it."""
import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_seeds = 5                # vmapped seeds per variant
  c.variants = ("plain", "early_stopping", "dropout", "batch_norm")
  c.hidden = (256, 256)
  c.activation = "relu"
  c.dropout_rate = 0.5
  c.patience = 5                 # epochs without validation-NLL improvement
  c.num_epochs = 60
  c.batch_size = 32
  c.learning_rate = 1e-3
  c.valid_fraction = 0.2         # of the non-test data
  c.test_fraction = 0.2
  c.target_accuracy = 0.95       # validation accuracy for "steps to target"
  if arg == "quick":
    c.num_seeds = 2
    c.hidden = (32,)
    c.num_epochs = 6
    c.patience = 2
    c.target_accuracy = 0.8
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; valid: 'quick'")
  return c
