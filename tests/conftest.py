"""Test-wide settings.

* Rank promotion raises, so silent broadcasting bugs fail loudly.
* Compile speed is set in ONE place, ``O0_FLAGS`` (no per-jit
  ``compiler_options`` pins in tests): the tests are dominated by compile
  time (small shapes, many programs). XLA's CPU backend optimisation level 0
  cuts it several-fold, and the legacy (elemental) fusion emitter instead of
  the MLIR fusion emitters cuts a further ~38 % (elbo + gaussian_vi +
  laplace_curvature tests, one process: 110 s -> 69 s). Results are the same
  computations, only less optimised machine code. An XLA_FLAGS already in
  the environment wins.
* ``JAXBDL_TEST_XLA_DEFAULT=1`` runs at XLA's DEFAULT level instead (the
  level users run): ``make test``'s second lane runs the tests marked
  ``default_xla`` (bitwise resume, tight float tolerances) this way, with
  ``XLA_FLAGS`` unset. The lane refuses to start if ``XLA_FLAGS`` still sets
  an optimisation level, so it cannot silently run at O0.
"""
import os

O0_FLAGS = ("--xla_backend_optimization_level=0 "
            "--xla_cpu_use_fusion_emitters=false")
XLA_DEFAULT = os.environ.get("JAXBDL_TEST_XLA_DEFAULT", "") == "1"
if XLA_DEFAULT:
  if "optimization_level" in os.environ.get("XLA_FLAGS", ""):
    raise RuntimeError(
        "JAXBDL_TEST_XLA_DEFAULT=1 runs at XLA's default optimisation level, "
        f"but XLA_FLAGS={os.environ['XLA_FLAGS']!r} sets one; unset it")
else:
  os.environ.setdefault("XLA_FLAGS", O0_FLAGS)
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "default_xla: a guarantee that must hold at XLA's default "
      "optimisation level (bitwise resume, tight float tolerances); `make "
      "test` runs these in a second lane with JAXBDL_TEST_XLA_DEFAULT=1 and "
      "XLA_FLAGS unset, and leaves them out of the O0 lane")


# Files that hold the suite's longest tests (end-to-end experiment runs,
# multi-process training): scheduled first. With `make test`'s
# `--dist loadfile --no-loadscope-reorder`, xdist hands out whole files in
# collection order, so the long ones start first and the many short files
# fill in around them (longest first is the classic greedy for balancing two
# workers; the last file to finish is then a short one, not a 40 s run).
_HEAVY_PREFIXES = ("experiments_", "multihost_")


def pytest_collection_modifyitems(config, items):
  del config
  items.sort(key=lambda item: not os.path.basename(
      str(item.path)).startswith(_HEAVY_PREFIXES))
