"""Config for experiments.curve_fitting; ``get_config("quick")`` shrinks it."""
import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_train = 10               # Bishop (2006) section 1.1: N = 10
  c.num_test = 200
  c.noise_std = 0.3
  c.max_degree = 9
  c.gaussian_alpha = 1e-3        # Gaussian prior precision (ridge), beta = 1/noise^2
  c.laplace_scale = 1.0          # Laplace prior scale b for the polynomial (lasso)
  c.laplace_iters = 20000
  # MLP part: one tanh hidden layer of each width, trained by MAP with no
  # prior, a Gaussian prior and a Laplace prior (vmapped with the seeds).
  c.widths = (1, 2, 4, 8, 16, 32, 64, 128)
  c.num_seeds = 3
  c.mlp_prior_scale = 3.0        # Gaussian std and Laplace scale on MLP weights
  c.mlp_epochs = 4000            # full-batch Adam steps
  c.learning_rate = 0.01
  if arg == "quick":
    c.widths = (2, 64)
    c.num_seeds = 2
    c.mlp_epochs = 300
    c.laplace_iters = 2000
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; valid: 'quick'")
  return c
