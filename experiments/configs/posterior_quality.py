"""Config for experiments.posterior_quality; ``get_config("quick")`` shrinks it.

``c.methods`` names methods of ``jaxbdl.bayes.registry`` (``"all"`` = every
registered one); ``c.registry`` is the registry's config (shared fields then
one sub-config per method), overridden here for these small networks.
"""
import ml_collections

from jaxbdl.bayes import registry


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.tasks = ("gap", "breast_cancer")
  c.methods = "all"  # or "a,b,c"
  # The reference posterior: long multi-chain NUTS (Izmailov et al. 2021).
  c.reference = ml_collections.ConfigDict(dict(
      num_chains=4, num_warmup=1000, num_samples=250, thin=2,
      target_acceptance=0.8, max_num_doublings=8))
  c.gap = ml_collections.ConfigDict(dict(
      num_points=100, noise_std=0.1, hidden=(50,), activation="tanh",
      prior_scale=1.0))
  c.breast_cancer = ml_collections.ConfigDict(dict(
      test_fraction=0.2, hidden=(20,), activation="tanh", prior_scale=1.0))
  r = registry.default_config()
  r.num_epochs = 500
  r.batch_size = 32
  r.num_predict_samples = 200
  r.predict_batch_size = 1024
  r.learning_rate = 1e-2
  r.map.valid_fraction = 0.0      # same data for every method
  r.hmc.num_warmup = 300
  r.hmc.num_samples = 100
  r.mfvi.num_train_samples = 4
  r.mfvi.init_scale = 1e-2
  r.ensemble.num_members = 5
  # Per-datum SGD lr 1e-2 (momentum 0.9) diverged on the gap data (noise sd
  # 0.1) in the first small run; 1e-3.
  r.swag.swa_learning_rate = 1e-3
  # SG-MCMC: per-datum step 1e-3 (the largest of {1e-3, 3e-3} that stayed
  # finite on the gap TRAINING data; 3e-3 diverged), chains started at MAP
  # fits, 3x the epochs of the optimisers (their steps are cheap).
  for name in ("sgld", "sghmc", "csgld"):
    r[name].learning_rate = 1e-3
    r[name].num_samples = 100
    r[name].num_epochs = 1500
    r[name].map_init_epochs = 300
  r.csgld.num_cycles = 10
  c.registry = r
  if arg == "quick":
    c.tasks = ("gap",)
    c.methods = "map,swag"
    c.gap.num_points = 40
    c.gap.hidden = (10,)
    c.reference.num_chains = 2
    c.reference.num_warmup = 150
    c.reference.num_samples = 50
    c.reference.max_num_doublings = 6
    r.num_epochs = 100
    r.num_predict_samples = 20
    r.csgld.num_samples = 20
    r.csgld.num_cycles = 4
    r.csgld.num_chains = 2
    r.csgld.num_epochs = 300
    r.csgld.map_init_epochs = 100
    r.swag.num_snapshots = 10
    r.swag.rank = 5
  elif arg == "small":
    # Every method on the gap data, sized for a shared 2-core machine.
    c.tasks = ("gap",)
    c.reference.num_warmup = 300
    c.reference.num_samples = 150
    c.reference.thin = 1
    c.reference.max_num_doublings = 7
    r.num_epochs = 200
    r.num_predict_samples = 100
    r.hmc.num_chains = 2
    r.hmc.num_warmup = 200
    r.hmc.num_samples = 50
    r.hmc.max_num_doublings = 7
    for name in ("sgld", "sghmc", "csgld"):
      r[name].num_epochs = 600
      r[name].map_init_epochs = 100
      r[name].num_samples = 40
    r.csgld.num_cycles = 4
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; valid: 'quick', "
                     f"'small'")
  return c
