"""jaxbdl: deep learning and Bayesian deep learning in JAX.

One module per concept; import the one you need, e.g.
``from jaxbdl import estimators`` or ``from jaxbdl.bayes import registry``
(see WORKSPACE.md for the map). Every module is pure functions of pytrees and
explicit PRNG keys. Submodules load on first use, so ``import jaxbdl`` and
``from jaxbdl import estimators`` do not pull in Flax, orbax or matplotlib.
"""
import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "backprop", "bayes", "bayesian_layers", "bo", "calibration", "checkpoint",
    "control_variates", "data", "diagnostics", "distributed", "distributions",
    "estimators", "gp", "kernels", "linear_models", "maml", "metrics",
    "multisample", "networks", "nngp", "objectives", "parallel", "quadrature",
    "relaxations", "results", "resume", "train", "transfer",
)
# The Bayesian core's concepts are also reachable at the top level.
_ALIASES = {"priors": "jaxbdl.bayes.priors",
            "likelihoods": "jaxbdl.bayes.likelihoods",
            "elbo": "jaxbdl.bayes.elbo", "registry": "jaxbdl.bayes.registry"}

__all__ = list(_SUBMODULES) + list(_ALIASES)


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  if name in _ALIASES:
    return importlib.import_module(_ALIASES[name])
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + __all__)
