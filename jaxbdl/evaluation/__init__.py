"""Evaluation and reporting: metrics, calibration and OOD scores, results
files with provenance, TensorBoard metric writers.

Submodules load on first use (see jaxbdl/_lazy.py)."""
from jaxbdl import _lazy

__all__ = ["metrics", "calibration", "ranking", "probability_checks",
           "results", "metric_writers"]
__getattr__, __dir__ = _lazy.attach(__name__, __all__)
