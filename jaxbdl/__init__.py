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
    "backprop", "bayes", "bayesian_layers", "checkpoint", "control_variates",
    "data", "diagnostics", "distributed", "distributions", "ensembles",
    "estimators", "gp", "kernels", "likelihoods", "linear_models", "maml",
    "mc_dropout", "metrics", "networks", "nngp", "objectives", "parallel",
    "priors", "quadrature", "results", "resume", "train", "transfer",
    "vi",
)

__all__ = list(_SUBMODULES)


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_SUBMODULES))
