"""jaxbdl: deep learning and Bayesian deep learning in JAX.

The packages follow the lecture's arc, each depending only on those above it
(see WORKSPACE.md for the map):

- ``data``: data sets (UCI 20-split, scikit-learn, toys); ``_checks``.
- ``gradients``: distributions, Monte Carlo gradient estimators, control
  variates, relaxations, multi-sample bounds, quadrature references.
- ``gaussian_processes``: kernels, exact GPs, NNGP kernels, Bayesian
  optimisation.
- ``evaluation``: metrics, calibration, results files, TensorBoard writers.
- ``training``: the training loop, checkpoints, resumable fits, progress,
  multi-device and multi-host.
- ``nn``: networks, backprop, diagnostics, MAP objectives, linear models,
  transfer learning, MAML.
- ``bayes``: priors, likelihoods, the ELBO, Bayesian layers, the posterior
  approximations and their registry.

Import a module from its package, e.g. ``from jaxbdl.gradients import
estimators``. Packages and modules load on first use, so ``import jaxbdl``
pulls in no Flax, orbax or matplotlib. The flat names of earlier releases
still work (``from jaxbdl import estimators``, ``import jaxbdl.train``) and
give the same module objects.
"""
import sys

from jaxbdl import _lazy

__version__ = "0.1.0"

__all__ = ["data", "gradients", "gaussian_processes", "evaluation",
           "training", "nn", "bayes"]
# Old flat name -> its package (a module object is shared, not copied).
_MOVED = {
    "distributions": "gradients", "estimators": "gradients",
    "control_variates": "gradients", "quadrature": "gradients",
    "relaxations": "gradients", "multisample": "gradients",
    "kernels": "gaussian_processes", "gp": "gaussian_processes",
    "nngp": "gaussian_processes", "bo": "gaussian_processes",
    "metrics": "evaluation", "calibration": "evaluation",
    "results": "evaluation", "metric_writers": "evaluation",
    "train": "training", "progress": "training", "checkpoint": "training",
    "distributed": "training", "parallel": "training", "resume": "training",
    "networks": "nn", "backprop": "nn", "diagnostics": "nn",
    "objectives": "nn", "linear_models": "nn", "transfer": "nn",
    "maml": "nn",
    "bayesian_layers": "bayes", "priors": "bayes", "likelihoods": "bayes",
    "elbo": "bayes", "registry": "bayes",
}
_ALIASES = {old: f"{__name__}.{pkg}.{old}" for old, pkg in _MOVED.items()}

__getattr__, __dir__ = _lazy.attach(__name__, __all__, _ALIASES)

if not any(isinstance(f, _lazy.AliasFinder) for f in sys.meta_path):
  sys.meta_path.insert(0, _lazy.AliasFinder(
      {f"{__name__}.{old}": new for old, new in _ALIASES.items()}))
