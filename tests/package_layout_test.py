"""The package layout: one-way dependencies, ``__all__``, old flat names.

WORKSPACE.md draws the dependency direction; this test is what keeps it true
(a module may import only from its own package and the packages before it).
"""
import ast
import pathlib
import subprocess
import sys

import pytest

import jaxbdl

ROOT = pathlib.Path(jaxbdl.__file__).parent
# Lower rank = more basic; a module imports only ranks <= its own.
RANK = {"_checks": 0, "_lazy": 0, "_gaussian": 0, "data": 0, "gradients": 1,
        "gaussian_processes": 1, "evaluation": 1, "training": 2, "nn": 3,
        "bayes": 4}
MODULES = sorted(p for p in ROOT.rglob("*.py"))


def _package(path: pathlib.Path) -> str:
  return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _jaxbdl_imports(tree):
  """Yields the jaxbdl package each import statement names."""
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      parts = node.module.split(".")
      if parts[0] != "jaxbdl":
        continue
      if len(parts) > 1:
        yield parts[1]
      else:  # from jaxbdl import x, y
        yield from (a.name for a in node.names)
    elif isinstance(node, ast.Import):
      for a in node.names:
        parts = a.name.split(".")
        if parts[0] == "jaxbdl" and len(parts) > 1:
          yield parts[1]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_layers(path):
  if path.name == "__init__.py" and path.parent == ROOT:
    return  # the top-level package names every package (lazily)
  own = _package(path)
  for dep in _jaxbdl_imports(ast.parse(path.read_text())):
    assert dep in RANK, f"{path}: imports jaxbdl.{dep}, not a package"
    assert RANK[dep] <= RANK[own], (
        f"{path} (package {own}) imports jaxbdl.{dep}: dependencies point"
        f" from {own} (rank {RANK[own]}) down, not up to rank {RANK[dep]}")


def _defined_names(tree):
  names = set()
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
      names.add(node.name)
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      names |= {t.id for t in targets if isinstance(t, ast.Name)}
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      names |= {(a.asname or a.name).split(".")[0] for a in node.names}
  return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_declares_all(path):
  tree = ast.parse(path.read_text())
  exported = None
  for node in tree.body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
        and getattr(node.targets[0], "id", None) == "__all__"):
      exported = ast.literal_eval(node.value) if not isinstance(
          node.value, ast.Call) else None
  assert exported is not None, f"{path}: no literal __all__"
  if path.name == "__init__.py":
    subs = {p.stem for p in path.parent.glob("*.py")} | {
        p.name for p in path.parent.iterdir() if (p / "__init__.py").exists()}
    missing = set(exported) - subs - _defined_names(tree)
  else:
    missing = set(exported) - _defined_names(tree)
  assert not missing, f"{path}: __all__ names undefined {sorted(missing)}"


@pytest.mark.parametrize("old", sorted(jaxbdl._MOVED))
def test_flat_names_are_the_moved_modules(old):
  import importlib
  new = importlib.import_module(f"jaxbdl.{jaxbdl._MOVED[old]}.{old}")
  assert importlib.import_module(f"jaxbdl.{old}") is new
  assert getattr(jaxbdl, old) is new


def test_importing_estimators_loads_no_heavy_dependency():
  code = ("import sys, jaxbdl\n"
          "from jaxbdl.gradients import estimators\n"
          "heavy = [m for m in ('flax', 'orbax', 'matplotlib', 'optax')"
          " if any(k == m or k.startswith(m + '.') for k in sys.modules)]\n"
          "print(','.join(heavy))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, cwd=ROOT.parent)
  assert out.stdout.strip() == "", f"loaded: {out.stdout.strip()}"


# Issue 12: "no library module over ~400 lines" (a few lines over is fine).
MAX_MODULE_LINES = 420


def _check_length(path: pathlib.Path) -> None:
  lines = len(path.read_text().splitlines())
  assert lines <= MAX_MODULE_LINES, (
      f"{path.relative_to(ROOT)} has {lines} lines, over {MAX_MODULE_LINES}:"
      " split it by concern into modules of its package (re-export the"
      " public names so callers do not change)")


@pytest.mark.parametrize("path", MODULES,
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_at_most_420_lines(path):
  _check_length(path)
