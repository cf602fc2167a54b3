"""Config for experiments/bayes_logreg.py (Mohamed et al. 2020, Sec. 8).

``get_config()`` is the full study; ``get_config("quick")`` is the smoke-test
variant (few steps, two estimators).
"""
import ml_collections


def get_config(arg=None):
  """Returns the study config; ``arg == "quick"`` gives the tiny variant."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_seeds = 3            # vmapped independent runs per estimator
  # Data: scikit-learn breast cancer, split fixed by `split_seed`.
  c.split_seed = 0
  c.test_fraction = 0.2
  # Model: logistic regression, prior N(0, prior_scale^2) on the 31 weights
  # (30 standardised features + bias); mean-field Gaussian q.
  c.prior_scale = 1.0
  c.init_scale = 0.1         # initial std of q (loc starts at 0)
  # Estimators (names in experiments.bayes_logreg.ESTIMATORS).
  c.estimators = ("pathwise", "score_function", "score_function_delta",
                  "measure_valued", "measure_valued_delta")
  c.num_samples = 8          # samples per gradient estimate (every estimator)
  c.num_steps = 1000         # Adam steps (full batch)
  c.learning_rate = 0.01
  c.batch_size = 0           # 0 = full batch (no data subsampling noise)
  # Diagnostics every `eval_every` steps.
  c.eval_every = 100
  c.elbo_samples = 1000      # MC samples for the reported ELBO / predictive
  c.variance_replicas = 32   # repeated keys for the gradient variance
  # LLVM optimisation level of the XLA CPU backend (None = XLA default).
  c.xla_backend_optimization_level = None
  if arg == "quick":
    c.num_seeds = 2
    c.estimators = ("pathwise", "score_function_delta")
    c.num_samples = 4
    c.num_steps = 100
    c.learning_rate = 0.05
    c.eval_every = 25
    c.elbo_samples = 200
    c.variance_replicas = 8
    c.xla_backend_optimization_level = 0  # compile-bound: compile fast
  elif arg not in (None, "", "default"):
    raise ValueError(f"unknown config variant {arg!r}; use 'quick' or nothing")
  return c
