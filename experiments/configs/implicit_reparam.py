"""Config for experiments/implicit_reparam.py (Figurnov et al. 2018).

``get_config()`` is the study; ``get_config("quick")`` shrinks it for the
smoke test (two concentrations, few keys and steps).
"""
import ml_collections


def get_config(arg=None):
  """Returns the study config; ``arg == "quick"`` gives the tiny variant."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Part 1: single-sample gradient variance vs concentration alpha.
  c.concentrations = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
  c.num_keys = 20_000         # single-sample estimates per (family, alpha)
  c.bound_k = 4.0             # |mean - exact| <= bound_k * SE flags bias
  # Part 2: LDA-style topic proportions, q(theta_d) = Dirichlet(gamma_d).
  c.num_topics = 3
  c.vocab_size = 24
  c.num_docs = 40
  c.words_per_doc = 50
  c.prior_concentration = 0.5   # Dirichlet prior on theta_d
  c.topic_concentration = 0.2   # sparsity of the generating topics
  c.estimators = ("pathwise", "score_function", "score_function_ma")
  c.num_samples = 4           # samples per gradient estimate
  c.num_steps = 400
  c.learning_rate = 0.05      # Adam on the softplus-inverse of gamma
  c.eval_every = 25
  c.eval_samples = 256        # MC samples of the reported ELBO (fixed key)
  c.ma_decay = 0.9            # moving-average baseline (with early decay)
  # Many tiny compile-bound programs: XLA CPU level 0 (None: the default).
  c.xla_backend_optimization_level = 0
  if arg == "quick":
    c.concentrations = (0.3, 3.0)
    c.num_keys = 2_000
    c.num_docs = 10
    c.estimators = ("pathwise", "score_function_ma")
    c.num_steps = 40
    c.eval_every = 20
    c.eval_samples = 32
  elif arg not in (None, "", "default"):
    raise ValueError(f"unknown config variant {arg!r}; use 'quick' or nothing")
  return c
