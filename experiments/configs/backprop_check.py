"""Config for experiments/backprop_check.py (``:quick`` shrinks it for tests)."""
import ml_collections


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg == "quick"`` gives the tiny smoke-test variant."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Part 1: hand-written backward pass versus jax.grad.
  c.activations = ("relu", "tanh", "sigmoid", "erf", "identity")
  c.shapes = ((32, 4, 16, 2), (128, 10, 64, 3))  # (N, D, H, K)
  c.num_seeds = 16  # random networks/data per (activation, shape), vmapped
  # Part 2: autodiff versus central differences on f = x1 sqrt(log(x1/sin(x2^2))).
  c.points = ((2.0, 1.0), (1.5, 0.5), (3.0, -1.2), (-1.0, 2.0), (0.9, 0.6),
              (1.1, 1.2), (0.5, 1.0), (-1.0, 1.0), (-0.5, 2.0), (0.2, 1.5))
  c.fd_eps_factor = 1.0  # eps_h = factor * eps64^(1/3) * max(1, |x|_inf)
  c.plot_grid = 300  # grid points per axis for the contour plot
  c.plot_range = ((-3.0, 3.0), (-2.5, 2.5))  # (x1 range, x2 range)
  if arg == "quick":
    c.activations = ("relu", "tanh")
    c.shapes = ((8, 3, 5, 2),)
    c.num_seeds = 2
    c.points = ((2.0, 1.0), (-1.0, 2.0), (0.5, 1.0))
    c.plot_grid = 40
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; valid: 'quick'")
  return c
