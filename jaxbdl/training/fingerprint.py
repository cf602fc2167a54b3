"""Run fingerprints: what defines a run, stored in every checkpoint manifest.

:func:`run_fingerprint` is a flat ``{field: value}`` record of a run (the
caller's config, digests of the data, the versions of
:data:`VERSION_PACKAGES`); :func:`check_fingerprint` compares a stored record
with the current one and raises :class:`RunMismatchError` naming every field
that differs, so a resumed run never mixes two runs
(:mod:`jaxbdl.training.resume`).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
from typing import Any, Mapping, Optional

import jax
import numpy as np

from jaxbdl.training import distributed
from jaxbdl.evaluation import results as results_lib

__all__ = ["VERSION_PACKAGES", "RunMismatchError", "run_fingerprint",
           "data_digests", "flatten_record", "check_fingerprint"]

PyTree = Any
# Distributions whose versions enter the fingerprint (numerics can change).
VERSION_PACKAGES = ("jax", "jaxlib", "flax", "optax")


class RunMismatchError(ValueError):
  """A checkpoint belongs to a different run (fingerprint differs).

  Attributes:
    fields: the differing fingerprint fields, e.g. ``["config.learning_rate",
      "data.train_data['x']"]``.
    checkpoint: the checkpoint's path.
  """

  def __init__(self, message: str, *, fields: list, checkpoint_path: str):
    super().__init__(message)
    self.fields = fields
    self.checkpoint = checkpoint_path


def flatten_record(prefix: str, obj: Any, out: dict) -> None:
  """Adds ``obj`` to ``out`` as ``{prefix.key: JSON value}`` (nested
  mappings dotted, keys sorted)."""
  if isinstance(obj, Mapping):
    for k in sorted(obj, key=str):
      flatten_record(f"{prefix}.{k}" if prefix else str(k), obj[k], out)
  else:
    # JSON round trip: tuples and lists compare equal, as they come back.
    out[prefix] = json.loads(json.dumps(results_lib.to_jsonable(obj)))


def data_digests(data: PyTree, name: str = "data") -> dict[str, str]:
  """``{name + leaf path: "dtype[shape] sha256:hex"}`` of every array.

  The identity of the data a run trains on: a different split, subset or
  preprocessing changes a digest. Arrays sharded across processes are
  gathered first (:func:`jaxbdl.training.distributed.to_host`, a collective).
  """
  out = {}
  for kp, leaf in jax.tree_util.tree_flatten_with_path(
      distributed.to_host(data))[0]:
    arr = np.asarray(leaf)
    digest = hashlib.sha256(arr.tobytes()).hexdigest()
    out[f"{name}{jax.tree_util.keystr(kp)}"] = (
        f"{arr.dtype.name}{list(arr.shape)} sha256:{digest}")
  return out


def _versions() -> dict[str, str]:
  out = {}
  for package in VERSION_PACKAGES:
    try:
      out[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      out[package] = "absent"
  return out


def run_fingerprint(config: Optional[Mapping] = None, **data: PyTree
                    ) -> dict[str, Any]:
  """A flat ``{field: value}`` record of everything that defines a run.

  Fields are ``config.<name>`` (every entry of ``config``, nested mappings
  dotted), ``data.<name>[...]`` (:func:`data_digests` of each keyword array
  tree) and ``versions.<package>`` (:data:`VERSION_PACKAGES`). Leave out of
  ``config`` what may change between a run and its resumption (the number of
  epochs, checkpoint cadence, device layout).
  """
  out = {}
  flatten_record("config", dict(config or {}), out)
  for name in sorted(data):
    for k, v in data_digests(data[name], name).items():
      out[f"data.{k}"] = v
  for k, v in _versions().items():
    out[f"versions.{k}"] = v
  return out


def _short(v: Any) -> str:
  text = json.dumps(v)
  return text if len(text) <= 48 else text[:44] + '..."'


def check_fingerprint(path: str, stored: Optional[Mapping],
                       current: Mapping) -> None:
  """Raises :class:`RunMismatchError` naming every differing field."""
  if stored is None:
    raise RunMismatchError(
        f"checkpoint {path} has no run fingerprint (written by an older "
        "jaxbdl); it cannot be told apart from another run. Start over with "
        "overwrite=True (--overwrite) or use a new workdir",
        fields=["<missing>"], checkpoint_path=path)
  fields = sorted(set(stored) | set(current))
  diff = [f for f in fields if stored.get(f, "<absent>") !=
          current.get(f, "<absent>")]
  if diff:
    shown = "; ".join(f"{f}: checkpoint {_short(stored.get(f, '<absent>'))}"
                      f", now {_short(current.get(f, '<absent>'))}"
                      for f in diff[:8])
    more = f" (and {len(diff) - 8} more)" if len(diff) > 8 else ""
    raise RunMismatchError(
        f"checkpoint {path} belongs to a different run; differing fields: "
        f"{shown}{more}. Resuming would mix two runs. Start over with "
        "overwrite=True (--overwrite) or use a new workdir",
        fields=diff, checkpoint_path=path)
