"""The registry of posterior approximations: ONE place that lists methods.

``METHODS[name]`` is a factory ``make(model, config) -> Posterior``
(``jaxbdl.bayes.posterior``); ``TUNABLE[name]`` names the hyper-parameters a
grid or Bayesian optimisation may vary for it (traced values in ``hp``).
``experiments.fit``, the UCI protocol and every study list methods from
here, so a new method is one module plus one line in each dict.

:func:`default_config` holds every method's static settings
(``config.<name>``) and the shared ones; :func:`method_config` merges them
for one method; :func:`default_hparams` gives the default ``hp``.
"""
from __future__ import annotations

import ml_collections

from jaxbdl.nn import networks

from jaxbdl.bayes import conv_layers
from jaxbdl.bayes import ensembles
from jaxbdl.bayes import gaussian_vi
from jaxbdl.bayes import hmc
from jaxbdl.bayes import map_estimate
from jaxbdl.bayes import mc_dropout
from jaxbdl.bayes import mfvi
from jaxbdl.bayes import sgmcmc
from jaxbdl.bayes import swag
from jaxbdl.bayes import temperature_scaling
from jaxbdl.bayes.laplace import method as laplace_method

__all__ = ["METHODS", "TUNABLE", "HPARAMS", "REQUIRES", "supports",
           "default_config",
           "method_config", "default_hparams", "check_names", "build"]

METHODS = {
    "map": map_estimate.make,
    "mfvi": mfvi.make,
    "mfvi_lrt": mfvi.make_lrt,
    "mfvi_flipout": mfvi.make_flipout,
    "mc_dropout": mc_dropout.make,
    "ensemble": ensembles.make,
    "hmc": hmc.make,
    "sgld": sgmcmc.make_sgld,
    "sghmc": sgmcmc.make_sghmc,
    "csgld": sgmcmc.make_csgld,
    "fullrank_vi": gaussian_vi.make_fullrank,
    "lowrank_vi": gaussian_vi.make_lowrank,
    "swag": swag.make,
    "map_ts": temperature_scaling.make_map,
    "mfvi_conv_lrt": conv_layers.make_lrt,
    "mfvi_conv_flipout": conv_layers.make_flipout,
    "laplace_full": laplace_method.make_full,
    "laplace_diag": laplace_method.make_diag,
    "laplace_kfac": laplace_method.make_kfac,
    "laplace_last_layer": laplace_method.make_last_layer,
}

_COMMON = ("learning_rate", "prior_scale", "noise_scale", "temperature")
TUNABLE = {
    "map": _COMMON,
    "mfvi": _COMMON + ("init_scale",),
    "mfvi_lrt": _COMMON,
    "mfvi_flipout": _COMMON,
    "mc_dropout": _COMMON + ("dropout_rate",),
    "ensemble": _COMMON,
    "hmc": _COMMON,
    "sgld": _COMMON,
    "sghmc": _COMMON,
    "csgld": _COMMON,
    "fullrank_vi": _COMMON,
    "lowrank_vi": _COMMON,
    "swag": _COMMON,
    "map_ts": _COMMON,
    "mfvi_conv_lrt": _COMMON,
    "mfvi_conv_flipout": _COMMON,
    "laplace_full": _COMMON,
    "laplace_diag": _COMMON,
    "laplace_kfac": _COMMON,
    "laplace_last_layer": _COMMON,
}

# Every hyper-parameter a method may read from ``hp`` and its default.
HPARAMS = {"learning_rate": 1e-3, "prior_scale": 1.0, "noise_scale": 0.5,
           "temperature": 1.0, "dropout_rate": 0.05, "init_scale": 1e-3}


def default_config() -> ml_collections.ConfigDict:
  """Shared static settings and one sub-config per method."""
  c = ml_collections.ConfigDict()
  c.num_epochs = 100
  c.batch_size = 32
  c.num_predict_samples = 100
  c.predict_batch_size = 1024
  c.patience = 0
  c.valid_fraction = 0.0
  c.map = ml_collections.ConfigDict(dict(valid_fraction=0.1, patience=20))
  c.mfvi = ml_collections.ConfigDict(dict(init_scale=1e-3,
                                          num_train_samples=1, kl="auto",
                                          flat=False))
  c.mfvi_lrt = ml_collections.ConfigDict(dict(init_scale=1e-3,
                                              num_train_samples=1))
  c.mfvi_flipout = ml_collections.ConfigDict(dict(init_scale=1e-3,
                                                  num_train_samples=1))
  c.mc_dropout = ml_collections.ConfigDict(dict(dropout_inputs=False))
  c.ensemble = ml_collections.ConfigDict(dict(num_members=5))
  c.hmc = ml_collections.ConfigDict(dict(hmc.DEFAULTS))
  c.sgld = ml_collections.ConfigDict(dict(sgmcmc.DEFAULTS, learning_rate=0.01))
  c.sghmc = ml_collections.ConfigDict(dict(sgmcmc.DEFAULTS, learning_rate=0.01))
  c.csgld = ml_collections.ConfigDict(dict(sgmcmc.DEFAULTS, learning_rate=0.05))
  c.fullrank_vi = ml_collections.ConfigDict(dict(gaussian_vi.DEFAULTS))
  c.lowrank_vi = ml_collections.ConfigDict(dict(gaussian_vi.DEFAULTS))
  c.swag = ml_collections.ConfigDict(dict(swag.DEFAULTS))
  c.map_ts = ml_collections.ConfigDict(dict(valid_fraction=0.1, patience=20))
  c.mfvi_conv_lrt = ml_collections.ConfigDict(dict(init_scale=1e-3,
                                                   num_train_samples=1))
  c.mfvi_conv_flipout = ml_collections.ConfigDict(dict(init_scale=1e-3,
                                                       num_train_samples=1))
  # Laplace: "posthoc" | "online" | "False" (shared by every Laplace method,
  # so `experiments.fit --config.marglik=False` reaches them all).
  c.marglik = "posthoc"
  for name in ("laplace_full", "laplace_diag", "laplace_kfac",
               "laplace_last_layer"):
    c[name] = ml_collections.ConfigDict(dict(
        valid_fraction=0.1, patience=20,
        prior_structure="scalar", marglik_steps=100, marglik_lr=0.1,
        marglik_frequency=1, marglik_burnin=0,
        curvature="ggn", link_approx="probit", pred_type="glm",
        curvature_batch_size=256))
  return c


# The network a method needs (capability as data); methods not listed take any
# Flax module.
REQUIRES = {
    "mfvi_lrt": networks.MLP, "mfvi_flipout": networks.MLP,
    "mc_dropout": networks.MLP, "mfvi_conv_lrt": networks.CNN,
    "mfvi_conv_flipout": networks.CNN,
}


def supports(name: str, module) -> bool:
  """Whether method ``name`` can take ``module`` (see :data:`REQUIRES`)."""
  return name not in REQUIRES or isinstance(module, REQUIRES[name])


def check_names(names, module=None, *, valid=None, what: str = "method",
                all_word: str = "all") -> list[str]:
  """Validates a list of names: ``"a,b"``, ``("a", "b")`` or ``"all"``.

  The one parser of name lists (``experiments.validate.method_list`` calls
  it for any list of names, e.g. data sets).

  Args:
    names: comma-separated string or a sequence of names; ``all_word`` alone
      means every valid name (every method that :func:`supports` ``module``
      when one is given), in the order of ``valid``.
    module: optional Flax module; each named method must support it (only
      with the registry's method names).
    valid: the known names (default: the registry's :data:`METHODS`).
    what: the noun used in messages (``"method"``, ``"data set"``).
    all_word: the word meaning "every one".

  Returns:
    the names, in the given order.

  Raises:
    ValueError: not a string or sequence, empty list or empty name, unknown
      names (listed with the valid ones), ``all_word`` mixed with other
      names, repeated names, or methods that cannot take ``module``.
  """
  valid = list(METHODS) if valid is None else list(valid)
  spec = names
  if isinstance(spec, str):
    names = [n.strip() for n in spec.split(",")]
  elif isinstance(spec, (list, tuple)):
    names = [n.strip() if isinstance(n, str) else n for n in spec]
  else:
    raise ValueError(f"{what} list must be a string or a sequence of names, "
                     f"got {spec!r}")
  if not names or names == [""]:
    raise ValueError(f"empty {what} list; valid: {valid} or {all_word!r}")
  if any(not isinstance(n, str) or not n for n in names):
    raise ValueError(f"empty or non-string {what} name in {spec!r}")
  if all_word in names:
    if len(names) > 1:
      raise ValueError(f"{all_word!r} cannot be combined with other {what}s, "
                       f"got {spec!r}")
    return [n for n in valid if module is None or supports(n, module)]
  unknown = [n for n in names if n not in valid]
  if unknown:
    raise ValueError(f"unknown {what}(s) {unknown}; valid: {valid} or "
                     f"{all_word!r}")
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    raise ValueError(f"{what}(s) {dup} listed more than once in {spec!r}")
  bad = [n for n in names if module is not None and not supports(n, module)]
  if bad:
    raise ValueError(f"method(s) {bad} need a {REQUIRES[bad[0]].__name__} "
                     f"module, got {type(module).__name__}")
  return names


def method_config(name: str, config: ml_collections.ConfigDict
                  ) -> ml_collections.ConfigDict:
  """The shared fields of ``config`` overridden by ``config[name]``."""
  check_names([name])
  merged = ml_collections.ConfigDict()
  for k, v in config.items():
    if not isinstance(v, ml_collections.ConfigDict):
      merged[k] = v
  if name in config:
    for k, v in config[name].items():
      merged[k] = v
  return merged


def default_hparams(name: str, config: ml_collections.ConfigDict,
                    overrides: dict | None = None) -> dict:
  """``hp`` for ``name``: :data:`HPARAMS` defaults, then fields of the same
  name in ``method_config(name, config)``, then ``overrides`` (which may be
  traced and must be :data:`TUNABLE` for ``name``)."""
  mc = method_config(name, config)
  hp = {k: (mc[k] if k in mc else v) for k, v in HPARAMS.items()}
  for k, v in (overrides or {}).items():
    if k not in TUNABLE[name]:
      raise ValueError(f"{k!r} is not a tunable hyper-parameter of {name!r}; "
                       f"valid: {list(TUNABLE[name])}")
    hp[k] = v
  return hp


def build(name: str, model, config: ml_collections.ConfigDict):
  """``METHODS[name](model, method_config(name, config))``."""
  return METHODS[name](model, method_config(name, config))
