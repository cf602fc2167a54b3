"""Test-wide settings: rank promotion raises, so silent broadcasting bugs fail loudly."""
import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
