"""Lazy submodules for jaxbdl's packages, and the old flat module names.

A package's ``__init__`` lists its submodules and calls :func:`attach`; a
submodule is imported on first attribute access, so ``import jaxbdl`` and
``from jaxbdl.gradients import estimators`` load no Flax, orbax or
matplotlib (the pattern of scientific-python's ``lazy_loader``, PEP 562).

:class:`AliasFinder` keeps the flat layout's names importable
(``import jaxbdl.estimators``, ``from jaxbdl.train import fit``): the old
name resolves to the SAME module object as its new home, so patching one
patches the other.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["attach", "AliasFinder"]


def attach(package: str, submodules, aliases=None):
  """``(__getattr__, __dir__)`` for ``package`` with lazy ``submodules``.

  ``aliases`` maps an extra attribute name to a full module path.
  """
  submodules = tuple(submodules)
  aliases = dict(aliases or {})

  def __getattr__(name):  # noqa: N807
    if name in submodules:
      return importlib.import_module(f"{package}.{name}")
    if name in aliases:
      return importlib.import_module(aliases[name])
    raise AttributeError(f"module {package!r} has no attribute {name!r}")

  def __dir__():  # noqa: N807
    return sorted(set(sys.modules[package].__dict__) | set(submodules)
                  | set(aliases))

  return __getattr__, __dir__


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Import ``old`` names as their new modules (``{old_full: new_full}``)."""

  def __init__(self, moved: dict[str, str]):
    self._moved = dict(moved)

  def find_spec(self, fullname, path=None, target=None):
    if fullname in self._moved:
      return importlib.util.spec_from_loader(fullname, self)
    return None

  def create_module(self, spec):
    return importlib.import_module(self._moved[spec.name])

  def exec_module(self, module):
    pass  # the real module is already executed
