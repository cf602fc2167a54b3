"""Config for experiments.hierarchical_bnn; ``get_config("quick")`` shrinks it.

The BlackJAX sampling book's "Hierarchical Bayesian neural networks" (after
T. Wiecki's PyMC3 notebook): 18 rotated two-moons tasks, 50 train / 50 test
points each, a 2x5 tanh MLP without biases, N(0, 1) weights, NUTS with 1000
warm-up and 500 kept draws.
"""
import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seeds = (0,)                # data draw + sampler seed per run
  c.num_tasks = 18
  c.points_per_task = 100       # first half train, second half test
  c.moons_noise = 0.3
  c.rotation_scale_deg = 90.0   # rotation ~ N(0, 90 deg) per task
  c.hidden = (5, 5)
  c.prior_scale = 1.0           # N(0, 1) weights (separate), mu and eps
  c.num_chains = 2              # >= 2 for split R-hat (the book ran 1)
  c.num_warmup = 1000
  c.num_samples = 500
  c.target_acceptance = 0.8
  c.max_num_doublings = 8
  c.grid_points = 60            # decision-surface plot, per axis
  c.plot_tasks = 6
  if arg == "medium":
    # The full data and model, a shorter chain (fits the shared 2-core
    # machine; the book's 1000 + 500 with tree depth 8 did not).
    c.num_warmup = 300
    c.num_samples = 200
    c.max_num_doublings = 6
  elif arg == "quick":
    c.num_tasks = 3
    c.num_warmup = 80
    c.num_samples = 20
    c.max_num_doublings = 4
    c.grid_points = 10
    c.plot_tasks = 2
  return c
