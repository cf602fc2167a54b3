"""Config for experiments/estimator_variance.py (Mohamed et al. 2020, Sec. 3).

``get_config()`` is the default study (the ``make demo`` job, under two
minutes on 2 CPU cores); ``get_config("quick")`` shrinks it for the smoke test.
"""
import ml_collections


def get_config(arg=None):
  """Returns the study config; ``arg == "quick"`` gives the tiny variant."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Costs f(x; k) and their k grids (Figure 2 of the paper uses mu = sigma = 1).
  c.costs = ("quadratic", "exp", "cos")
  c.k_values = ml_collections.ConfigDict({
      "quadratic": (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0),
      "exp": (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0),
      "cos": (0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0),
  })
  # (mu, sigma) settings of the Gaussian measure N(mu, sigma^2).
  c.settings = ((1.0, 1.0), (0.5, 2.0))
  # Estimators (names in experiments.estimator_variance.ESTIMATORS).
  c.estimators = ("pathwise", "score_function", "score_function_loo",
                  "score_function_delta", "measure_valued")
  # Each MC variance is over `num_replicas` independent estimates, each the
  # average of `num_samples` single-sample estimates.
  c.num_samples = 4
  c.num_replicas = 20_000
  # An MC variance is "within bound" if |MC - reference| <= bound_k * SE with
  # SE = sqrt((m4 - var^2) / R) from the sample fourth central moment.
  c.bound_k = 4.0
  # LLVM optimisation level of the XLA CPU backend for this study's jits
  # (None = XLA's default, the level users run; `make demo` runs it). The
  # programs are compile-bound: 0 compiles 4-12x faster and runs ~3x slower
  # (measured: measure-valued 1.3 s + 9 s vs 15.7 s + 3 s CPU); pass
  # --config.xla_backend_optimization_level=0 to trade speed for compile time.
  c.xla_backend_optimization_level = None
  if arg == "quick":
    c.costs = ("quadratic",)
    c.k_values = ml_collections.ConfigDict({
        "quadratic": (0.0, 3.0), "exp": (1.0,), "cos": (1.0, 3.0)})
    c.settings = ((1.0, 1.0),)
    c.num_replicas = 4_000
  elif arg not in (None, "", "default"):
    raise ValueError(f"unknown config variant {arg!r}; use 'quick' or nothing")
  return c
