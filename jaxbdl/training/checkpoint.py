"""Saving and restoring pytrees (train states, parameters) with orbax.

``save(path, tree, step)`` writes one checkpoint directory with orbax's
``StandardCheckpointer``. Orbax writes into a temporary directory next to
``path`` and renames it when complete, so a crash never leaves a half-written
checkpoint under ``path``. ``restore(path, target)`` reads it back; with a
``target`` (an example or abstract pytree, e.g. ``jax.eval_shape`` of the
initialiser) the stored tree structure and leaf shapes are checked against the
target first and the result has the target's pytree types (NamedTuples such as
``TrainState`` come back as NamedTuples). Without a target the result is plain
nested dicts and lists.

The optional ``step`` is stored in the checkpoint's metadata
(:func:`read_step`). A resuming manager can be built on these two functions:
one directory per step under a root, e.g. ``save(f"{root}/{step}", state,
step)``, and fall back to the previous directory if the newest fails to
restore. Typed PRNG keys (``jax.random.key``) are supported as leaves.
"""
from __future__ import annotations

import operator
import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["save", "restore", "read_step", "exists"]

PyTree = Any


def _abspath(path: str) -> str:
  if not path:
    raise ValueError("checkpoint path must be a non-empty string")
  return os.path.abspath(os.path.expanduser(os.fspath(path)))


def exists(path: str) -> bool:
  """True if ``path`` holds a finished checkpoint."""
  path = _abspath(path)
  return os.path.isdir(path) and os.path.exists(
      os.path.join(path, "_CHECKPOINT_METADATA"))


def save(path: str, pytree: PyTree, step: Optional[int] = None, *,
         overwrite: bool = False) -> str:
  """Writes ``pytree`` to the checkpoint directory ``path`` (atomic rename).

  Args:
    path: directory to create; its parent is created if needed.
    pytree: arrays (jax or numpy), Python scalars, typed PRNG keys, nested in
      dicts, lists, tuples, NamedTuples and other registered pytrees.
    step: optional int stored in the metadata (see :func:`read_step`).
    overwrite: replace an existing checkpoint at ``path`` (orbax removes
      the old one before writing, so this replacement is not atomic; a
      resuming manager should write a new directory per step instead).

  Returns:
    the absolute path written.

  Raises:
    FileExistsError: ``path`` exists and ``overwrite`` is False.
    ValueError: ``pytree`` has no array leaves, or ``step`` is not an int.
  """
  path = _abspath(path)
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"checkpoint path already exists: {path} (pass "
                          "overwrite=True to replace it)")
  if not jax.tree_util.tree_leaves(pytree):
    raise ValueError("cannot checkpoint a pytree without leaves")
  metadata = None
  if step is not None:
    try:
      if isinstance(step, bool):
        raise TypeError
      step = operator.index(step)  # ints, numpy/JAX integer scalars.
    except TypeError:
      raise ValueError(f"step must be an int, got {step!r}") from None
    metadata = {"step": step}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, pytree, custom_metadata=metadata, force=overwrite)
    ckptr.wait_until_finished()
  return path


def _require(path: str) -> str:
  path = _abspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint not found: {path}")
  if not exists(path):
    raise FileNotFoundError(f"{path} is not a finished checkpoint (no "
                            "_CHECKPOINT_METADATA)")
  return path


def read_step(path: str) -> Optional[int]:
  """The ``step`` given to :func:`save`, or None if none was stored."""
  path = _require(path)
  with ocp.StandardCheckpointer() as ckptr:
    meta = ckptr.metadata(path).custom_metadata or {}
  step = meta.get("step")
  return None if step is None else int(step)


def _key_name(entry: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _flat_shapes(tree: PyTree) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Maps each leaf's path (as strings) to its shape.

  A typed PRNG key leaf maps to the shape of its key data (``[..., 2]`` for
  threefry), which is how orbax stores it.
  """
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
      shape = jax.eval_shape(jax.random.key_data, leaf).shape
    else:
      shape = getattr(leaf, "shape", None)
      shape = np.shape(leaf) if shape is None else shape
    out[tuple(_key_name(e) for e in path)] = tuple(shape)
  return out


def _check_against(path: str, stored: PyTree, target: PyTree) -> None:
  """Raises ValueError naming the first structural or shape mismatch."""
  have = _flat_shapes(stored)
  want = _flat_shapes(target)
  fmt = lambda k: "/".join(k) if k else "<root>"
  for k in want:
    if k not in have:
      raise ValueError(f"checkpoint {path} does not match target: key "
                       f"'{fmt(k)}' is in the target but not in the checkpoint"
                       f" (checkpoint keys: {[fmt(h) for h in list(have)[:8]]}"
                       f"{'...' if len(have) > 8 else ''})")
  for k in have:
    if k not in want:
      raise ValueError(f"checkpoint {path} does not match target: key "
                       f"'{fmt(k)}' is in the checkpoint but not in the target")
  for k, shape in want.items():
    if have[k] != shape:
      raise ValueError(f"checkpoint {path} does not match target at key "
                       f"'{fmt(k)}': checkpoint shape {list(have[k])}, target "
                       f"shape {list(shape)}")


def restore(path: str, target: Optional[PyTree] = None) -> PyTree:
  """Reads the checkpoint at ``path``.

  Args:
    path: a directory written by :func:`save`.
    target: optional example pytree (concrete arrays or
      ``jax.ShapeDtypeStruct`` leaves) with the expected structure, shapes and
      dtypes; the result then has the target's pytree types and dtypes.

  Returns:
    the restored pytree (nested dicts/lists when ``target`` is None).

  Raises:
    FileNotFoundError: ``path`` does not exist or is not a checkpoint.
    ValueError: the stored tree has a different structure (a missing or extra
      key, named) or a leaf shape differs (key and both shapes named).
  """
  path = _require(path)
  with ocp.StandardCheckpointer() as ckptr:
    if target is None:
      return ckptr.restore(path)
    stored = ckptr.metadata(path).item_metadata
    stored = getattr(stored, "tree", stored)
    _check_against(path, stored, target)
    return ckptr.restore(path, target)
