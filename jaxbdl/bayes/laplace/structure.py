"""The curvature-structure protocol: a NamedTuple of pure functions.

A structure (``full``, ``diag``, ``kron``, ``lowrank``) fits the curvature
``H`` of the data term once, at unit scale, and answers log determinants,
solves and samples of the posterior precision ``P = s * H + diag(delta)``.
Adding one is a new factory plus one line in ``curvature.STRUCTURES``.

References:
  Daxberger et al. (2021), *Laplace Redux*, Sec. 2 and Table 1 (structures).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

__all__ = ["Structure"]


class Structure(NamedTuple):
  """A curvature structure: pure functions of the fitted curvature ``curv``.

  ``prec`` below is the posterior precision ``s * H + diag(delta)`` with the
  curvature factor ``s`` (scalar) and the prior precision ``delta [P_s]``.

  Attributes:
    name: e.g. ``"full"``.
    fit: ``(apply_fn, subset, flat_map, theta_s, x, y, likelihood, curvature,
      chunk_size) -> curv`` (a pytree).
    logdet: ``(curv, s, delta [P_s]) -> log det prec``.
    quad: ``(curv, s, delta, V [K, P_s]) -> V prec^-1 V^T [K, K]``.
    sample: ``(curv, s, delta, z [P_s]) -> prec^-1/2 z [P_s]`` (a draw of
      ``N(0, prec^-1)`` for ``z ~ N(0, I)``), or None if unsupported.
    dense: ``(curv) -> H [P_s, P_s]`` (tests and small problems).
    min_eig: ``(curv) -> scalar``, a lower bound of the smallest eigenvalue
      of ``H`` (exact for full, diag, kron; 0 for a rank-deficient lowrank).
    diagonal_prior: whether a per-weight prior precision is supported.
    logdet_iso: ``(curv, s, delta_scalar) -> log det prec`` for a prior
      precision shared by all weights (cheaper), or None to use ``logdet``.
  """
  name: str
  fit: Callable
  logdet: Callable
  quad: Callable
  sample: Callable | None
  dense: Callable
  min_eig: Callable
  diagonal_prior: bool
  logdet_iso: Callable | None = None
