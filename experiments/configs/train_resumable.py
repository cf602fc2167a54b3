"""Config for ``experiments/train_resumable.py``: a checkpointed MAP MLP fit.

``get_config()`` trains ``num_runs`` MAP networks (one vmapped program) for a
few hundred epochs; ``get_config("quick")`` is the tiny variant used by the
smoke and SIGKILL tests. Override fields on the command line, e.g.
``--config.parallel=data``.
"""
import ml_collections


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg == "quick"`` shrinks everything."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Data: a UCI folder given by --data_dir (split `split`), else the
  # scikit-learn diabetes data split by `split_seed`.
  c.split = 0
  c.split_seed = 0
  c.test_fraction = 0.2
  # Model: jaxbdl.nn.networks.MLP(hidden + (1,)); Gaussian likelihood with a
  # fixed noise scale (standardised targets) and a Gaussian prior.
  c.hidden = (50,)
  c.activation = "relu"
  c.noise_scale = 0.5
  c.prior_scale = 1.0
  # Optimisation: `num_runs` seeds as one vmapped fit; per-datum loss.
  c.num_runs = 4
  c.num_epochs = 200
  c.batch_size = 32
  c.learning_rate = 1e-3
  # Checkpoints (jaxbdl.training.resume) and numerics.
  c.checkpoint_every_epochs = 20
  c.keep = 3
  c.on_nonfinite = "stop"      # or "skip"
  # Devices (jaxbdl.training.parallel): "none", "data" (batch sharded) or "runs".
  c.parallel = "none"
  if arg == "quick":
    c.hidden = (16,)
    c.num_runs = 2
    c.num_epochs = 6
    c.learning_rate = 1e-2
    c.checkpoint_every_epochs = 1
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; use 'quick' or nothing")
  return c
