"""Config of experiments/bo_tuning.py: Bayesian optimisation vs random search
vs grid search for UCI hyper-parameters, plus Branin / Hartmann-6.

``get_config()``: the study (yacht, 3 seeds, budget = the 16-point grid of
``experiments/configs/uci_regression.py`` for MC dropout; Branin 30 and
Hartmann-6 80 evaluations). ``get_config("quick")``: the smoke test (tiny
networks, budget 8, Branin 20 evaluations, one seed).
"""
import ml_collections

from experiments.configs import uci_regression


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  # Relative to the repository root (where experiments run): a clean clone
  # with ``shared/`` beside it. Elsewhere pass --config.data_dir.
  c.data_dir = "../shared/data/uci"
  c.dataset = "yacht"
  c.split = 0                     # the UCI split whose training rows are used
  c.seeds = (0, 1, 2)             # validation carve, training keys, searches
  c.method = "mc_dropout"
  c.valid_fraction = 0.2          # of the TRAINING rows, for selection
  # Search space: (low, high) per tunable field, searched on the log scale.
  c.space = ml_collections.ConfigDict({
      "learning_rate": (1e-4, 3e-2),
      "prior_scale": (0.3, 30.0),
      "dropout_rate": (0.003, 0.3)})
  # The existing grid (uci_regression's mc_dropout grid; learning_rate fixed
  # at uci.learning_rate): the budget of every strategy is its size.
  c.grid = ml_collections.ConfigDict({
      "dropout_rate": (0.005, 0.01, 0.05, 0.1),
      "prior_scale": (1.0, 3.0, 10.0, 30.0)})
  c.batch_size = 2                # configurations trained at once (vmapped)
  c.nll_cap = 5.0                 # validation NLL (std. units) cap: diverged runs
  c.uci = uci_regression.get_config()
  c.uci.num_steps = 4000
  c.uci.num_predict_samples = 20
  c.benchmarks = ml_collections.ConfigDict({
      "branin": {"num_evaluations": 30, "batch_size": 1},
      "hartmann6": {"num_evaluations": 80, "batch_size": 4}})
  c.benchmark_seeds = (0, 1, 2)
  if arg == "quick":
    c.seeds = (0,)
    c.uci.num_steps = 60
    c.uci.min_epochs = 2
    c.uci.max_epochs = 20
    c.uci.hidden = 8
    c.uci.num_predict_samples = 4
    c.grid = ml_collections.ConfigDict({
        "dropout_rate": (0.01, 0.1), "prior_scale": (1.0, 3.0, 10.0, 30.0)})
    c.benchmarks = ml_collections.ConfigDict({
        "branin": {"num_evaluations": 20, "batch_size": 1}})
    c.benchmark_seeds = (0,)
  elif arg not in (None, ""):
    raise ValueError(f"unknown config argument {arg!r}; valid: None, 'quick'")
  return c
