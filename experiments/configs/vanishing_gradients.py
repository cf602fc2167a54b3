"""Config for experiments.vanishing_gradients; ``get_config("quick")`` shrinks it."""
import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_seeds = 3                # vmapped initialisations per configuration
  c.depth = 10                   # hidden layers
  c.width = 64
  c.activations = ("sigmoid", "tanh", "relu")
  # (initialiser name, scale): "normal" scale is the weight std.
  c.inits = (("normal", 0.01), ("normal", 0.1), ("normal", 1.0),
             ("glorot", 1.0), ("he", 1.0))
  c.num_stat_examples = 256      # examples for the per-example gradient norms
  c.train_epochs = 2             # "a few steps" of SGD before the second look
  c.batch_size = 64
  c.learning_rate = 0.05
  if arg == "quick":
    c.num_seeds = 2
    c.depth = 5
    c.width = 16
    c.activations = ("sigmoid", "relu")
    c.inits = (("normal", 0.01), ("he", 1.0))
    c.num_stat_examples = 32
    c.train_epochs = 1
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; valid: 'quick'")
  return c
