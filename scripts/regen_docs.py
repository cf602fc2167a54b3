"""Regenerates the tables of README.md / BENCHMARKS.md from results files.

A generated block in a Markdown file looks like::

  <!-- BEGIN generated:nngp_kernel columns="implementation|median_s:median s:.3g" -->
  ...anything; replaced by the script...
  <!-- END generated:nngp_kernel -->

``NAME`` picks the data: a renderer registered in :data:`RENDERERS`, else the
JSON file ``bench/results/NAME.json`` (or ``source="path/relative/to/repo"``),
whose list of row objects under ``rows="key"`` (default: the first of
``rows`` / ``results`` / the document itself when it is a list) is rendered
with :func:`jaxbdl.evaluation.results.markdown_table`. Options on the BEGIN line:

* ``columns="key[:Header[:format]]|..."``: the columns, their headers and a
  Python format spec (``.3g``); default every key of the first row.
* ``precision=N``: digits for floats without a format (default 4).
* ``provenance=0``: leave out the provenance line (default: when the JSON
  has ``provenance``, one line says commit, versions, device, load, date).

Usage::

  python -m scripts.regen_docs            # rewrite README.md, BENCHMARKS.md
  python -m scripts.regen_docs --check    # exit 1 and name stale blocks
  python -m scripts.regen_docs --check docs/x.md

``tests/regen_docs_test.py`` runs the check on the committed docs, so a table
edited by hand or a results file updated without regenerating fails CI.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

from jaxbdl.evaluation import results as results_lib

__all__ = ["RENDERERS", "DEFAULT_DOCS", "render_block", "regenerate",
           "check_files", "main"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DOCS = ("README.md", "BENCHMARKS.md")

_BEGIN = re.compile(r"^<!-- BEGIN generated:(?P<name>[A-Za-z0-9_.\-/]+)"
                    r"(?P<opts>[^>]*?)\s*-->\s*$")
_END = re.compile(r"^<!-- END generated:(?P<name>[A-Za-z0-9_.\-/]+)\s*-->\s*$")

# name -> renderer(root, options) -> Markdown text (no trailing blank line).
RENDERERS: dict[str, Callable[[str, Mapping[str, str]], str]] = {}


def _options(text: str, where: str) -> dict[str, str]:
  out = {}
  try:
    tokens = shlex.split(text)
  except ValueError as e:
    raise ValueError(f"{where}: cannot parse options {text.strip()!r}: {e}") \
        from None
  for token in tokens:
    if "=" not in token:
      raise ValueError(f"{where}: option {token!r} is not key=value")
    key, value = token.split("=", 1)
    out[key] = value
  unknown = sorted(set(out) - {"columns", "precision", "provenance", "source",
                               "rows"})
  if unknown:
    raise ValueError(f"{where}: unknown option(s) {unknown}; valid: columns, "
                     "precision, provenance, source, rows")
  return out


def _provenance_line(prov: Mapping[str, Any]) -> str:
  versions = prov.get("versions") or {}
  plat = prov.get("platform") or {}
  commit = prov.get("git_commit") or "unknown"
  parts = [f"commit {commit[:10]}{' (dirty)' if prov.get('git_dirty') else ''}",
           ", ".join(f"{k} {v}" for k, v in versions.items()
                     if k in ("jax", "jaxlib", "flax", "optax") and v),
           f"{plat.get('backend') or '?'} ({plat.get('device_kind') or '?'})",
           f"load {prov.get('load_average')}", str(prov.get("date_utc"))]
  return "<sub>" + "; ".join(p for p in parts if p) + "</sub>"


def _json_table(root: str, name: str, opts: Mapping[str, str],
                where: str) -> str:
  source = opts.get("source", os.path.join("bench", "results", f"{name}.json"))
  path = os.path.join(root, source)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{where}: no renderer named {name!r} and no "
                            f"results file {source}")
  doc = results_lib.read_json(path)
  key = opts.get("rows")
  if key is not None:
    rows = doc.get(key) if isinstance(doc, dict) else None
  elif isinstance(doc, list):
    rows = doc
  else:
    rows = next((doc[k] for k in ("rows", "results") if k in doc), None)
  if not isinstance(rows, list) or not rows or not all(
      isinstance(r, dict) for r in rows):
    raise ValueError(f"{where}: {source} has no list of row objects under "
                     f"{key or 'rows/results'!r}")
  try:
    precision = int(opts.get("precision", "4"))
  except ValueError:
    raise ValueError(f"{where}: precision must be an int, got "
                     f"{opts['precision']!r}") from None
  if "columns" in opts:
    specs = [c.split(":", 2) for c in opts["columns"].split("|")]
  else:
    specs = [[k] for k in rows[0]]
  headers, table_rows = [], [{} for _ in rows]
  for spec in specs:
    key_, header, fmt = (spec + [None, None])[:3]
    header = header or key_
    headers.append(header)
    for out, row in zip(table_rows, rows):
      if key_ not in row:
        raise ValueError(f"{where}: column {key_!r} is not in every row of "
                         f"{source} (keys: {sorted(row)})")
      value = row[key_]
      if fmt and isinstance(value, (int, float)) and not isinstance(value,
                                                                     bool):
        value = format(value, fmt)
      out[header] = "" if value is None else value
  text = results_lib.markdown_table(table_rows, headers,
                                    precision=precision).rstrip("\n")
  prov = doc.get("provenance") if isinstance(doc, dict) else None
  if prov and opts.get("provenance", "1") != "0":
    text += "\n\n" + _provenance_line(prov)
  return text


def render_block(root: str, name: str, opts: Mapping[str, str],
                 where: str = "") -> str:
  """The Markdown text of the generated block ``name``."""
  if name in RENDERERS:
    return RENDERERS[name](root, opts).rstrip("\n")
  return _json_table(root, name, opts, where or name)


def regenerate(text: str, root: str = ROOT, doc_name: str = "doc") -> str:
  """Returns ``text`` with every generated block re-rendered.

  Raises:
    ValueError: a BEGIN without its END (or the reverse), nested blocks, a
      mismatched END name, bad options; FileNotFoundError: no data for a
      name. Messages name the document and line.
  """
  lines = text.split("\n")
  out, i = [], 0
  while i < len(lines):
    line = lines[i]
    end = _END.match(line)
    if end:
      raise ValueError(f"{doc_name}:{i + 1}: END generated:{end['name']} "
                       "without a BEGIN")
    begin = _BEGIN.match(line)
    if not begin:
      out.append(line)
      i += 1
      continue
    name, where = begin["name"], f"{doc_name}:{i + 1}"
    opts = _options(begin["opts"], where)
    j = i + 1
    while j < len(lines) and not _END.match(lines[j]):
      if _BEGIN.match(lines[j]):
        raise ValueError(f"{doc_name}:{j + 1}: BEGIN inside the block opened "
                         f"at line {i + 1}")
      j += 1
    if j == len(lines):
      raise ValueError(f"{where}: BEGIN generated:{name} has no END")
    if _END.match(lines[j])["name"] != name:
      raise ValueError(f"{doc_name}:{j + 1}: END generated:"
                       f"{_END.match(lines[j])['name']} closes BEGIN "
                       f"generated:{name} (line {i + 1})")
    out.append(line)
    out.extend(render_block(root, name, opts, where).split("\n"))
    out.append(lines[j])
    i = j + 1
  return "\n".join(out)


def check_files(paths: Sequence[str], root: str = ROOT,
                write: bool = False) -> list[str]:
  """Regenerates ``paths`` (relative to root); returns those that differed.

  With ``write`` the differing files are rewritten atomically.
  """
  stale = []
  for rel in paths:
    path = os.path.join(root, rel)
    with open(path, encoding="utf-8") as f:
      text = f.read()
    new = regenerate(text, root, rel)
    if new != text:
      stale.append(rel)
      if write:
        results_lib.atomic_write_text(path, new)
  return stale


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("files", nargs="*", default=list(DEFAULT_DOCS))
  parser.add_argument("--check", action="store_true",
                      help="do not write; exit 1 if a file is stale")
  args = parser.parse_args(argv)
  try:
    stale = check_files(args.files, ROOT, write=not args.check)
  except (ValueError, FileNotFoundError) as e:
    print(f"regen_docs: {e}", file=sys.stderr)
    return 2
  for rel in stale:
    print(f"{'stale' if args.check else 'rewrote'}: {rel}")
  return 1 if (args.check and stale) else 0


if __name__ == "__main__":
  sys.exit(main())
