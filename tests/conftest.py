"""Test-wide settings.

* Rank promotion raises, so silent broadcasting bugs fail loudly.
* XLA's CPU backend optimisation level 0: the tests are dominated by compile
  time (small shapes, many programs), which this cuts several-fold; results
  are the same computations, only less optimised machine code. An XLA_FLAGS
  already in the environment wins.
"""
import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
