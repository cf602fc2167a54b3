"""Config for ``experiments/laplace_classification.py``: MAP vs last-layer and
KFAC Laplace (GLM predictive, probit) on scikit-learn's 8x8 digits.

``get_config()`` is the full study (a few minutes on 2 CPU cores);
``get_config("quick")`` the tiny variant used by the smoke test.
"""
import ml_collections

from jaxbdl.bayes import registry


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg == "quick"`` shrinks everything."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_seeds = 3               # MAP initialisations / minibatch orders
  c.split_seed = 0              # fixed train / test split
  c.test_fraction = 0.2
  c.valid_fraction = 0.1        # carved from training: MAP early stopping
  # Networks: "cnn" (networks.CNN) and "mlp" (networks.MLP on 64 pixels).
  c.networks = ("cnn", "mlp")
  # Laplace variants per network (``laplace``): "last_layer" (full GGN of
  # the head) and "kfac" (KFAC GGN of every layer).
  c.cnn = ml_collections.ConfigDict(dict(features=(8, 16), hidden=32,
                                         pool="avg",
                                         laplace=("last_layer", "kfac")))
  c.mlp = ml_collections.ConfigDict(dict(hidden=(64, 64), activation="relu",
                                         laplace=("last_layer", "kfac")))
  c.learning_rate = 3e-3
  c.prior_scale = 1.0           # MAP prior N(0, 1): weight decay 1 / N
  # MAP training (the core's MAP; early stopping on validation NLL).
  core = registry.default_config()
  core.num_epochs = 60
  core.batch_size = 32
  core.map.patience = 10
  for name in [k for k, v in core.items()
               if isinstance(v, ml_collections.ConfigDict) and k != "map"]:
    del core[name]
  c.core = core
  # Post-hoc prior precision by the Laplace evidence (laplace-torch's
  # optimize_prior_precision(method="marglik"): Adam(0.1), 100 steps).
  c.prior_structure = "scalar"
  c.marglik_steps = 100
  c.marglik_lr = 0.1
  # Also the alternative: the scalar prior precision of this grid with the
  # lowest validation NLL (rows "<variant>_valgrid"); () turns it off.
  c.prior_grid = (1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0,
                  1e3, 3e3, 1e4)
  c.link_approx = "probit"
  c.curvature_batch_size = 128
  c.ece_bins = 15
  if arg == "quick":
    c.num_seeds = 1
    c.networks = ("mlp",)
    c.mlp.hidden = (16,)
    c.mlp.laplace = ("kfac",)
    c.prior_grid = ()
    c.core.num_epochs = 6
    c.marglik_steps = 30
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; use 'quick' or nothing")
  return c
