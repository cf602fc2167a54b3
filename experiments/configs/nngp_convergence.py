"""Config for ``experiments/nngp_convergence.py``: finite random nets -> NNGP.

``get_config()`` is the full study (about 1-2 minutes on 2 CPU cores);
``get_config("quick")`` is the tiny variant used by the smoke test.
"""
import ml_collections


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg == "quick"`` shrinks everything."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # PRNG implementation for jax.random.key ("rbg" compiles much faster on CPU
  # than the default "threefry2x32"; both give independent Gaussian weights).
  c.prng_impl = "threefry2x32"
  # Inputs: num_points Gaussian points in input_dim dimensions.
  c.num_points = 12
  c.input_dim = 4
  # Networks: `depth` hidden layers of each width, NNGP parameterisation
  # W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2) (jaxbdl.gaussian_processes.nngp.RandomMLP).
  c.depth = 2
  c.activations = ("relu", "erf")
  c.sigma_w2 = 2.0
  c.sigma_b2 = 0.1
  c.widths = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
  # Initialisations per width: min(num_inits, max(min_inits,
  # max_weight_draws // width^2)), so the widest nets (width^2 weights per
  # hidden-to-hidden layer) do not dominate the run time.
  c.num_inits = 256
  c.min_inits = 16
  c.max_weight_draws = 2 ** 29
  # Memory bound: inits are vmapped in chunks of ~chunk_weights / width^2.
  c.chunk_weights = 2 ** 27
  if arg == "quick":
    c.num_points = 8
    c.activations = ("relu",)
    c.widths = (16, 64, 256)
    c.prng_impl = "rbg"
    c.num_inits = 64
    c.max_weight_draws = 2 ** 26
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; use 'quick' or nothing")
  return c
