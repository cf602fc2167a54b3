"""jaxbdl: deep learning and Bayesian deep learning in JAX.

Import the module for the concept you need, e.g. ``from jaxbdl import estimators``.
"""

__version__ = "0.1.0"
