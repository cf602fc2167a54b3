"""Config for experiments.dataset_shift: uncertainty under shift on digits."""
import ml_collections

from jaxbdl.bayes import registry


def get_config(arg=None):
  """Default config (a few minutes on 2 CPU cores); ``arg="quick"`` shrinks it."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_seeds = 3            # vmapped fits; > 1 gives mean +- std.
  config.split_seed = 0           # fixed train / test split of classes 0..7.
  config.test_fraction = 0.2
  config.valid_fraction = 0.1     # carved from training; T, early stopping.
  config.ood_classes = (8, 9)     # held out of training: OOD digits.
  config.num_noise_images = 300   # OOD: uniform-noise images.

  config.cnn = ml_collections.ConfigDict(dict(features=(8, 16), hidden=32,
                                              pool="avg"))
  config.methods = ("map", "map_ts", "mc_dropout", "ensemble", "mfvi",
                    "mfvi_conv_lrt", "mfvi_conv_flipout", "sgld", "sghmc")
  config.mc_dropout_rate = 0.25   # CNN dropout before the head (fixed).

  # The registry's static settings, shared by every method (config.core.NAME
  # overrides per method, as registry.method_config merges them).
  core = registry.default_config()
  core.num_epochs = 40
  core.batch_size = 32
  core.num_predict_samples = 30
  core.predict_batch_size = 2048
  core.map.patience = 10
  core.map_ts.patience = 10
  core.ensemble.num_members = 5
  for name in ("sgld", "sghmc"):  # 2 chains x 15 draws: S = 30 as the others.
    core[name].num_chains = 2
    core[name].num_samples = 15
  config.core = core
  config.hp = ml_collections.ConfigDict(dict(learning_rate=3e-3,
                                             prior_scale=1.0))
  # Per-method hp overrides (TUNABLE names), chosen a priori, not on test.
  config.hp_overrides = ml_collections.ConfigDict(dict(
      mfvi=dict(learning_rate=1e-2), mfvi_conv_lrt=dict(learning_rate=1e-2),
      mfvi_conv_flipout=dict(learning_rate=1e-2),
      # SG-MCMC: the registry's default per-datum step (not tuned here).
      sgld=dict(learning_rate=1e-2), sghmc=dict(learning_rate=1e-2)))

  config.shifts = ml_collections.ConfigDict(dict(
      rotation=(0.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 150.0, 180.0),
      noise=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
      translation=(0.0, 1.0, 2.0, 3.0, 4.0)))
  config.selective_rotation = 45.0  # a shifted level for selective curves.
  config.ece_bins = 15

  if arg == "quick":
    config.num_seeds = 1
    config.num_noise_images = 50
    config.cnn = ml_collections.ConfigDict(dict(features=(4, 8), hidden=16,
                                                pool="avg"))
    config.methods = ("map_ts", "mfvi_conv_flipout")
    config.core.num_epochs = 4
    config.core.num_predict_samples = 4
    config.shifts = ml_collections.ConfigDict(dict(
        rotation=(0.0, 90.0), noise=(0.0, 0.5), translation=(0.0, 2.0)))
    config.selective_rotation = 90.0
  elif arg not in (None, ""):
    raise ValueError(f"unknown config argument {arg!r}; use 'quick' or nothing")
  # Keep only the sub-configs of the methods studied (registry.method_config
  # merges the shared fields with these).
  for name in [k for k, v in config.core.items()
               if isinstance(v, ml_collections.ConfigDict)]:
    if name not in config.methods:
      del config.core[name]
  return config
