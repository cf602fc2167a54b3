"""Small shared checks and transforms used across jaxbdl (no heavy imports)."""
from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

__all__ = ["check_positive", "check_positive_int", "softplus_inverse"]


def check_positive(name: str, value: Any) -> None:
  """Raises ``ValueError`` if a concrete Python/NumPy number is not ``> 0``.

  Traced values (inside jit/vmap) pass through unchecked, so hyper-parameters
  can be vmapped; validate them at the boundary.
  """
  if isinstance(value, jax.core.Tracer) or np.ndim(value) != 0:
    return  # traced or an array: checked at the boundary
  v = float(value)
  if not (v > 0 and math.isfinite(v)):
    raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def check_positive_int(name: str, value: Any) -> int:
  """Returns ``int(value)``; raises unless it is an integer ``>= 1``."""
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")
  return int(value)


def softplus_inverse(x: float) -> float:
  """``rho`` with ``softplus(rho) = x`` for a Python float ``x > 0``."""
  x = float(x)
  return x + math.log(-math.expm1(-x))
