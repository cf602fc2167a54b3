"""Config for experiments/discrete_variance.py (REBAR/RELAX toy and an SBN).

``get_config()`` is the study; ``get_config("quick")`` the smoke-test variant.
"""
import ml_collections


def get_config(arg=None):
  """Returns the study config; ``arg == "quick"`` gives the tiny variant."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.split_seed = 0
  c.test_fraction = 0.2
  # Part 1: E[(b - t)^2] (Tucker et al. 2017; Grathwohl et al. 2018).
  c.toy = ml_collections.ConfigDict()
  c.toy.targets = (0.45, 0.499)
  c.toy.estimators = ("reinforce", "gumbel_softmax", "straight_through",
                      "rebar", "rebar_tuned", "relax")
  c.toy.num_samples = 1          # one sample per step, as in both papers
  c.toy.num_steps = 2000
  c.toy.learning_rate = 0.01     # Adam on theta (Grathwohl et al. 2018)
  c.toy.control_learning_rate = 0.01  # Adam on the control's phi
  c.toy.eval_every = 100
  c.toy.variance_replicas = 2000
  c.toy.num_seeds = 3
  # Part 2: one-layer sigmoid belief network on binarised 8x8 digits.
  c.sbn = ml_collections.ConfigDict()
  c.sbn.estimators = ("reinforce_loo", "gumbel_softmax", "straight_through",
                      "rebar", "relax")
  c.sbn.num_latents = 32
  c.sbn.num_samples = 2          # per example (leave-one-out needs 2)
  c.sbn.batch_size = 64
  c.sbn.num_steps = 2000
  c.sbn.learning_rate = 3e-3
  c.sbn.control_learning_rate = 3e-3
  c.sbn.eval_every = 250
  c.sbn.elbo_samples = 10
  if arg == "quick":
    c.toy.targets = (0.45,)
    c.toy.estimators = ("reinforce", "relax")
    c.toy.num_steps = 200
    c.toy.eval_every = 50
    c.toy.variance_replicas = 200
    c.toy.num_seeds = 2
    c.toy.learning_rate = 0.05
    c.sbn.estimators = ("rebar",)
    c.sbn.num_latents = 8
    c.sbn.batch_size = 32
    c.sbn.num_steps = 60
    c.sbn.eval_every = 30
    c.sbn.elbo_samples = 2
    c.sbn.learning_rate = 1e-2
  elif arg not in (None, "", "default"):
    raise ValueError(f"unknown config variant {arg!r}; use 'quick' or nothing")
  return c
