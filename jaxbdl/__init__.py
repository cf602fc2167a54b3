"""jaxbdl: deep learning and Bayesian deep learning in JAX.

One module per concept; import the one you need, e.g.
``from jaxbdl import estimators`` (see WORKSPACE.md for the map). Every module
is pure functions of pytrees and explicit PRNG keys.
"""

from jaxbdl import backprop
from jaxbdl import bayesian_layers
from jaxbdl import checkpoint
from jaxbdl import control_variates
from jaxbdl import data
from jaxbdl import diagnostics
from jaxbdl import distributed
from jaxbdl import distributions
from jaxbdl import ensembles
from jaxbdl import estimators
from jaxbdl import gp
from jaxbdl import kernels
from jaxbdl import likelihoods
from jaxbdl import linear_models
from jaxbdl import maml
from jaxbdl import mc_dropout
from jaxbdl import metrics
from jaxbdl import networks
from jaxbdl import nngp
from jaxbdl import objectives
from jaxbdl import parallel
from jaxbdl import priors
from jaxbdl import quadrature
from jaxbdl import results
from jaxbdl import resume
from jaxbdl import train
from jaxbdl import transfer
from jaxbdl import uci_benchmark
from jaxbdl import vi

__version__ = "0.1.0"

__all__ = [
    "backprop", "bayesian_layers", "checkpoint", "control_variates", "data",
    "diagnostics", "distributed", "distributions", "ensembles", "estimators",
    "gp", "kernels", "likelihoods", "linear_models", "maml", "mc_dropout",
    "metrics", "networks", "nngp", "objectives", "parallel", "priors",
    "quadrature", "results", "resume", "train", "transfer", "uci_benchmark",
    "vi",
]
