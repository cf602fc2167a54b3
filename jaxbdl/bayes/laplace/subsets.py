"""Subsets of weights for the Laplace approximation: all, last layer, a mask.

The Laplace approximation is then over the selected weights only, the others
fixed at their MAP values. A :class:`Subset` holds the selection as index
data into ``ravel_pytree(params) [P]`` plus per-leaf segments of the selected
vector ``theta_s [P_s]`` (the curvature structures read the segments; ``kron``
needs whole leaves).

References:
  Daxberger et al. (2021), *Laplace Redux*, Sec. 2 (last-layer and
  subnetwork Laplace).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["Subset", "make_subset", "last_layer_mask"]

PyTree = Any


class Subset(NamedTuple):
  """The selected weights as a flat vector ``theta_s [P_s]`` (static data).

  Attributes:
    idx: ``[P_s]`` int indices into ``ravel_pytree(params)``.
    unravel: flat ``[P]`` -> params pytree.
    num_params: ``P`` (all weights).
    segments: per selected leaf ``(name, start, size, shape, full)``: its
      slice ``[start, start + size)`` of ``theta_s``; ``full`` is True when the
      whole leaf is selected (needed by ``kron``).
  """
  idx: np.ndarray
  unravel: Callable
  num_params: int
  segments: tuple

  def expand(self, flat_map: jax.Array, theta_s: jax.Array) -> PyTree:
    """Params pytree with ``theta_s`` written into the MAP vector ``flat_map``."""
    return self.unravel(flat_map.at[self.idx].set(theta_s))


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def last_layer_mask(params: PyTree) -> PyTree:
  """Boolean mask selecting the last top-level submodule's weights.

  "Last" is the last key in the insertion order of the (nested) dict, which
  for Flax is the order modules were created (the output layer of
  ``jaxbdl.nn.networks.MLP`` and ``CNN``). Nested dicts are followed while the
  last entry is itself a dict whose values are dicts.
  """
  if not isinstance(params, dict) or not params:
    raise ValueError("last_layer_mask needs a non-empty dict of params, got "
                     f"{type(params).__name__}")
  node = params
  chain = []
  while isinstance(node, dict) and node:
    key = list(node.keys())[-1]
    chain.append(key)
    node = node[key]
    if not (isinstance(node, dict) and node and
            all(isinstance(v, dict) for v in node.values())):
      break

  def mark(tree, depth):
    out = {}
    for k, v in tree.items():
      if depth < len(chain) and k == chain[depth]:
        out[k] = (jax.tree.map(lambda _: True, v) if depth == len(chain) - 1
                  else mark(v, depth + 1))
      else:
        out[k] = jax.tree.map(lambda _: False, v)
    return out
  return mark(params, 0)


def make_subset(params: PyTree, subset_of_weights: Any = "all") -> Subset:
  """Builds the :class:`Subset` for ``"all"``, ``"last_layer"`` or a mask.

  Args:
    params: the parameter pytree (only shapes and structure are read).
    subset_of_weights: ``"all"``, ``"last_layer"``, or a pytree of booleans
      (one per leaf, or an array per leaf of the leaf's shape) with the
      structure of ``params``.

  Raises:
    ValueError: unknown string, mask structure/shape mismatch, or an empty
      selection.
  """
  # Only shapes and dtypes are read (params may be traced or abstract).
  flat, unravel = ravel_pytree(jax.tree.map(
      lambda a: np.zeros(np.shape(a), a.dtype), params))
  if isinstance(subset_of_weights, str):
    if subset_of_weights == "all":
      mask = jax.tree.map(lambda _: True, params)
    elif subset_of_weights == "last_layer":
      mask = last_layer_mask(params)
    else:
      raise ValueError("subset_of_weights must be 'all', 'last_layer' or a "
                       f"boolean mask pytree, got {subset_of_weights!r}")
  else:
    mask = subset_of_weights
  leaves_p, treedef = jax.tree_util.tree_flatten_with_path(params)
  try:
    leaves_m = treedef.flatten_up_to(mask)
  except (ValueError, TypeError) as e:
    raise ValueError("subset_of_weights mask must have the structure of "
                     f"params: {e}") from None
  sel, segments, start, offset = [], [], 0, 0
  for (path, leaf), m in zip(leaves_p, leaves_m):
    shape = tuple(np.shape(leaf))
    size = int(np.prod(shape, dtype=int))
    m = np.broadcast_to(np.asarray(m, dtype=bool), shape) if np.ndim(m) == 0 \
        else np.asarray(m, dtype=bool)
    if m.shape != shape:
      raise ValueError(f"subset_of_weights mask for {_path_name(path)} has "
                       f"shape {m.shape}, the leaf has {shape}")
    local = np.nonzero(m.reshape(-1))[0]
    if local.size:
      sel.append(offset + local)
      segments.append((_path_name(path), start, int(local.size), shape,
                       bool(local.size == size)))
      start += int(local.size)
    offset += size
  if not sel:
    raise ValueError("subset_of_weights selects no weights")
  return Subset(np.concatenate(sel), unravel, int(flat.size), tuple(segments))
