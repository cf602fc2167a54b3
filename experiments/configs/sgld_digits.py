"""Config for experiments.sgld_digits; ``get_config("quick")`` shrinks it.

SGLD (the registry's ``sgld``) on scikit-learn's 8x8 digits with an MLP, as
BlackJAX's SGLD MNIST example (posterior-averaged vs last-sample accuracy).
"""
import ml_collections

from jaxbdl.bayes import registry


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.data_seed = 0
  c.test_fraction = 0.2
  c.valid_fraction = 0.2         # of the training part, for the lr choice
  c.hidden = (100,)
  c.activation = "relu"
  c.prior_scale = 1.0
  c.num_seeds = 5                # independent chains (init + noise)
  c.learning_rates = (0.03, 0.1, 0.3)  # per-datum eta; chosen on validation
  r = registry.default_config()
  r.batch_size = 64
  r.num_epochs = 200
  r.predict_batch_size = None
  r.sgld.num_samples = 50        # kept draws per chain (second half)
  r.sgld.burnin_fraction = 0.5
  r.sgld.decay_steps = 1000
  c.registry = r
  if arg == "medium":
    c.num_seeds = 3
    c.learning_rates = (0.03, 0.1)
    r.num_epochs = 100
  elif arg == "quick":
    c.num_seeds = 2
    c.learning_rates = (0.1,)
    r.num_epochs = 15
    r.sgld.num_samples = 8
  return c
