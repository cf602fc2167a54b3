"""Provenance for benchmark results: commit, versions, platform, command, load.

Bench scripts write their JSON with :func:`write_json` (or add
``stamp(doc)``), so every number in ``bench/results/*.json`` says where it came
from; ``python -m scripts.regen_docs`` prints it under the generated tables.
See :func:`jaxbdl.evaluation.results.provenance` for the fields.
"""
from __future__ import annotations

from typing import Any, Mapping

from jaxbdl.evaluation import results as results_lib

__all__ = ["stamp", "write_json"]


def stamp(doc: Mapping[str, Any]) -> dict:
  """``doc`` plus ``"provenance"`` (an existing one is kept)."""
  out = dict(doc)
  out.setdefault("provenance", results_lib.provenance())
  return out


def write_json(path: str, doc: Mapping[str, Any]) -> None:
  """Writes ``stamp(doc)`` atomically as JSON (mode as an ordinary write)."""
  results_lib.write_results_json(path, doc)
