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
* ``provenance=0``: leave out the provenance line (default: one line says
  commit, versions, device, load, date, from whatever of ``provenance`` /
  ``environment`` / ``meta`` / ``machine`` / load fields the file has, and
  names what it does not record).
* ``rows="a.b"``: a dotted path to the rows; a mapping of mappings becomes
  one row per key, the key in column ``index`` (``index="dataset"``).
* ``where="key=v1,v2;key2=v"``: keep the rows whose values match.
* ``pivot="row_key[:Header]|col_key[:Header {}]|value_key[:format]"``: one
  row per ``row_key``, one column per value of ``col_key``.

A column key ``a/b`` that is not itself a key is the ratio of the columns
``a`` and ``b``; a format containing ``{}`` is a template (``{:.3g}x``).

Two registered block kinds are one line each:

* ``text source=FILE template="... {path:fmt} ..."``: a sentence whose
  numbers come from the JSON. ``path`` is dotted (``*`` matches every key or
  item; several values are joined by " / "); ``min(path)``, ``max(path)``,
  ``count(path)`` reduce them; ``met(path>=2)`` is ``met`` when every value
  satisfies the comparison, else ``**not met**``.
* ``command source=FILE [script=bench/x.py] [omit="k1,k2"]``: the command
  line recorded in the JSON (``command`` or ``provenance.command``), else
  ``python SCRIPT --key value ...`` built from its ``args`` (``omit`` drops
  machine-local paths such as interpreters).

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
                    r"(?P<opts>.*?)\s*-->\s*$")
_END = re.compile(r"^<!-- END generated:(?P<name>[A-Za-z0-9_.\-/]+)\s*-->\s*$")

# name -> renderer(root, options) -> Markdown text (no trailing blank line).
RENDERERS: dict[str, Callable[[str, Mapping[str, str]], str]] = {}


_OPTIONS = ("columns", "precision", "provenance", "source", "rows", "index",
            "where", "pivot", "template", "script", "omit")


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
  unknown = sorted(set(out) - set(_OPTIONS))
  if unknown:
    raise ValueError(f"{where}: unknown option(s) {unknown}; valid: "
                     f"{', '.join(_OPTIONS)}")
  return out


_VERSION = re.compile(r"^\d+\.\d+")
_PACKAGE = re.compile(r"(^|_)(jax|jaxlib|flax|optax|numpyro|torch|laplace_torch|"
                      r"blackjax|neural_tangents)(_|$)")


def _versions(obj: Any, out: dict, depth: int = 0) -> dict:
  """Package versions anywhere in ``obj`` (key -> "v1/v2" when they differ)."""
  if depth > 4:
    return out
  items = (obj.items() if isinstance(obj, dict) else
           enumerate(obj) if isinstance(obj, list) and len(obj) < 50 else ())
  for key, value in items:
    if (isinstance(key, str) and isinstance(value, str)
        and _VERSION.match(value) and _PACKAGE.search(key)
        and not key.endswith(("numpy", "python"))):
      seen = out.setdefault(key, [])
      if value not in seen:
        seen.append(value)
    elif isinstance(value, (dict, list)):
      _versions(value, out, depth + 1)
  return out


def _load_items(key: str, value: Any) -> list[str]:
  label = re.sub(r"load_?(average|avg)?_?(1min_?)?", "", key).replace("_", " ").strip()
  if isinstance(value, dict):
    return [t for k, v in value.items() for t in _load_items(k, v)]
  if isinstance(value, (int, float)):
    return [f"{label} {value:.3g}".strip()]
  if isinstance(value, list) and value and all(
      isinstance(v, (int, float)) for v in value):
    if len(value) == 3:                      # (1, 5, 15) min: the 1-min one
      return [f"{label} {value[0]:.3g}".strip()]
    return [f"{label} {min(value):.3g}-{max(value):.3g}".strip()]
  return []


def provenance_fields(doc: Any) -> dict:
  """Commit, versions, device, load and date of a results file, whichever of
  the schemas used by the bench scripts it follows (missing ones: None)."""
  if not isinstance(doc, dict):
    return {}
  merged: dict = {k: v for k, v in doc.items() if not isinstance(v, dict)}
  for key in ("machine", "meta", "environment", "provenance"):
    if isinstance(doc.get(key), dict):
      merged.update(doc[key])
  plat = merged.get("platform")
  if isinstance(plat, dict) and plat.get("backend"):
    device = f"{plat['backend']} ({plat.get('device_kind') or '?'})"
  else:   # a peer-only parent process records no backend: use the workers'
    plat = plat.get("system") if isinstance(plat, dict) else plat
    device = merged.get("device") or next(iter(_find(doc, "device")), None)
    device = device or plat or merged.get("machine")
    cpus = merged.get("cpus") or merged.get("cpu_count")
    if device and cpus and "CPU" not in str(device):
      device = f"{device}, {cpus} CPUs"
  load = [t for k, v in merged.items() if re.match(r"load_?(average|avg)", k)
          for t in _load_items(k, v)]
  date = merged.get("date_utc") or merged.get("date") or merged.get(
      "started_utc")
  return {"commit": merged.get("git_commit") or merged.get("commit"),
          "dirty": merged.get("git_dirty", merged.get("dirty")),
          "versions": {k: "/".join(v) for k, v in
                       _versions(doc.get("provenance", doc), {}).items()}
                      or {k: "/".join(v) for k, v in _versions(doc, {}).items()},
          "device": device, "load": load, "date": date,
          "command": merged.get("command")}


def _find(obj: Any, key: str, depth: int = 0) -> list:
  """Values of ``key`` anywhere in ``obj`` (breadth-limited)."""
  if depth > 4:
    return []
  if isinstance(obj, dict):
    found = [obj[key]] if key in obj and not isinstance(obj[key], (dict,
                                                                     list)) else []
    return found + [v for x in obj.values() for v in _find(x, key, depth + 1)]
  if isinstance(obj, list) and len(obj) < 50:
    return [v for x in obj for v in _find(x, key, depth + 1)]
  return []


def _provenance_line(doc: Any) -> str:
  p = provenance_fields(doc)
  missing = [name for name in ("commit", "date") if not p.get(name)]
  parts = [f"commit {p['commit'][:10]}{' (dirty)' if p.get('dirty') else ''}"
           if p.get("commit") else "",
           ", ".join(f"{k} {v}" for k, v in p["versions"].items()),
           str(p["device"]) if p.get("device") else "",
           "load (1-min) " + ", ".join(p["load"]) if p["load"] else "",
           str(p["date"]) if p.get("date") else "",
           (" and ".join(missing) + " not recorded") if missing else ""]
  return "<sub>" + "; ".join(x for x in parts if x) + "</sub>"


def _path(obj: Any, path: str, where: str) -> tuple[Any, bool]:
  """The value at a dotted ``path``; ``*`` fans out (then a list, True)."""
  values, many = [obj], False
  parts, i = path.split("."), 0
  while i < len(parts):
    part, i = parts[i], i + 1
    while (i < len(parts) and values and isinstance(values[0], dict)
           and part not in values[0]             # a key with a dot in it
           and any(k.startswith(part + ".") for k in values[0])):
      part, i = part + "." + parts[i], i + 1
    nxt = []
    for v in values:
      if part == "*":
        many = True
        nxt.extend(v.values() if isinstance(v, dict) else v)
      elif isinstance(v, dict) and part in v:
        nxt.append(v[part])
      elif isinstance(v, list) and part.lstrip("-").isdigit():
        nxt.append(v[int(part)])
      else:
        raise ValueError(f"{where}: no {part!r} in path {path!r}")
    values = nxt
  return (values, True) if many else (values[0], False)


def _format(value: Any, fmt: Optional[str]) -> Any:
  if not fmt or isinstance(value, bool) or not isinstance(value, (int, float)):
    return value
  return fmt.format(value) if "{" in fmt else format(value, fmt)


def _load(root: str, opts: Mapping[str, str], name: str, where: str) -> Any:
  source = opts.get("source", os.path.join("bench", "results", f"{name}.json"))
  path = os.path.join(root, source)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{where}: no renderer named {name!r} and no "
                            f"results file {source}")
  return results_lib.read_json(path)


def _rows(doc: Any, opts: Mapping[str, str], where: str) -> list[dict]:
  key = opts.get("rows")
  if key is not None:
    rows = _path(doc, key, where)[0] if isinstance(doc, dict) else None
  elif isinstance(doc, list):
    rows = doc
  else:
    rows = next((doc[k] for k in ("rows", "results") if k in doc), None)
  if isinstance(rows, dict) and rows and all(isinstance(v, dict)
                                             for v in rows.values()):
    index = opts.get("index", "key")
    rows = [{index: k, **v} for k, v in rows.items()]
  if not isinstance(rows, list) or not rows or not all(
      isinstance(r, dict) for r in rows):
    raise ValueError(f"{where}: {opts.get('source', 'the results file')} has "
                     f"no list of row objects under {key or 'rows/results'!r}")
  for cond in filter(None, opts.get("where", "").split(";")):
    k, _, allowed = cond.partition("=")
    rows = [r for r in rows if str(r.get(k)) in allowed.split(",")]
    if not rows:
      raise ValueError(f"{where}: no row has {cond!r}")
  return rows


def _cell(row: Mapping[str, Any], key: str, where: str) -> Any:
  if key in row:
    return row[key]
  num, sep, den = key.partition("/")
  if sep:
    return _cell(row, num, where) / _cell(row, den, where)
  if "." in key:
    return _path(row, key, where)[0]
  raise ValueError(f"{where}: column {key!r} is not in every row "
                   f"(keys: {sorted(row)})")


def _pivot(rows: list[dict], spec: str, where: str) -> tuple[list, list]:
  parts = [(p.split(":", 1) + [None])[:2] for p in spec.split("|")]
  if len(parts) != 3:
    raise ValueError(f"{where}: pivot needs row|column|value, got {spec!r}")
  (rkey, rhead), (ckey, chead), (vkey, vfmt) = parts
  headers = [rhead or rkey]
  table: dict[Any, dict] = {}
  for row in rows:
    col = (chead or f"{ckey} = {{}}").format(row[ckey])
    if col not in headers:
      headers.append(col)
    table.setdefault(row[rkey], {headers[0]: row[rkey]})[col] = _format(
        _cell(row, vkey, where), vfmt)
  return headers, list(table.values())


def _json_table(root: str, name: str, opts: Mapping[str, str],
                where: str) -> str:
  doc = _load(root, opts, name, where)
  rows = _rows(doc, opts, where)
  try:
    precision = int(opts.get("precision", "4"))
  except ValueError:
    raise ValueError(f"{where}: precision must be an int, got "
                     f"{opts['precision']!r}") from None
  if "pivot" in opts:
    headers, table_rows = _pivot(rows, opts["pivot"], where)
  else:
    specs = ([c.split(":", 2) for c in opts["columns"].split("|")]
             if "columns" in opts else [[k] for k in rows[0]])
    headers, table_rows = [], [{} for _ in rows]
    for spec in specs:
      key_, header, fmt = (spec + [None, None])[:3]
      header = header or key_
      headers.append(header)
      for out, row in zip(table_rows, rows):
        value = _format(_cell(row, key_, where), fmt)
        out[header] = "" if value is None else value
  text = results_lib.markdown_table(table_rows, headers,
                                    precision=precision).rstrip("\n")
  if opts.get("provenance", "1") != "0":
    text += "\n\n" + _provenance_line(doc)
  return text


_EXPR = re.compile(r"^(?P<fn>min|max|count|met)\((?P<arg>.*)\)$")
_CMP = re.compile(r"^(?P<path>.+?)\s*(?P<op>>=|<=|>|<)\s*(?P<num>[-+0-9.e]+)$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, "<": lambda a, b: a < b}


def _field(doc: Any, expr: str, fmt: Optional[str], where: str) -> str:
  m = _EXPR.match(expr)
  if m is None:
    value, many = _path(doc, expr, where)
    return " / ".join(str(_format(v, fmt)) for v in (value if many else
                                                      [value]))
  fn, arg = m["fn"], m["arg"].strip()
  c = _CMP.match(arg) if fn == "met" else None
  if fn == "met" and c is None:
    raise ValueError(f"{where}: met() needs path OP number, got {arg!r}")
  value, many = _path(doc, c["path"] if c else arg, where)
  values = value if many else [value]
  if fn == "met":
    return ("met" if all(_OPS[c["op"]](v, float(c["num"])) for v in values)
            else "**not met**")
  if fn == "count":
    return str(len(values))
  return str(_format((min if fn == "min" else max)(values), fmt))


_FIELD = re.compile(r"\{(?P<e>(?:min|max|count|met)\([^{}]*\)|[^{}:]+)"
                    r"(?::(?P<f>[^{}:()]*))?\}")


def render_text(root: str, opts: Mapping[str, str]) -> str:
  """``text``: one line, ``template`` with ``{path:fmt}`` fields filled in."""
  where = opts.get("_where", "text")
  if "template" not in opts or "source" not in opts:
    raise ValueError(f"{where}: text needs source= and template=")
  doc = _load(root, opts, "text", where)
  return _FIELD.sub(lambda m: _field(doc, m["e"].strip(), m["f"], where),
                    opts["template"])


def render_command(root: str, opts: Mapping[str, str]) -> str:
  """``command``: the recorded command line, as a code span."""
  where = opts.get("_where", "command")
  doc = _load(root, opts, "command", where)
  command = provenance_fields(doc).get("command")
  if not command:
    args = doc.get("args") if isinstance(doc, dict) else None
    if not isinstance(args, dict) or "script" not in opts:
      raise ValueError(f"{where}: {opts.get('source')} records neither a "
                       "command nor args (+ script= option)")
    omit = set(filter(None, opts.get("omit", "").split(",")))
    command = shlex.join(["python", opts["script"]] + [
        t for k, v in args.items() if k not in omit and v is not None
        for t in (f"--{k}", str(v))])
  elif command.split()[0].endswith(".py"):
    command = "python " + command
  return f"`{command.strip()}`"


RENDERERS["text"] = render_text
RENDERERS["command"] = render_command


def _met(ok: bool) -> str:
  return "yes" if ok else "**no**"


_UCI_BEFORE = "bench/results/uci_regression_mfvi_idle.json"
_UCI_AFTER = "bench/results/uci_regression_mfvi_core_full.json"


def render_uci_mfvi_change(root: str, opts: Mapping[str, str]) -> str:
  """MFVI per data set before / after the move to the core, in SEs."""
  where = opts.get("_where", "uci_mfvi_change")
  before = _load(root, {"source": _UCI_BEFORE}, "", where)
  after = _load(root, {"source": _UCI_AFTER}, "", where)
  rows, worst = [], 0.0
  for name, now in after["datasets"].items():
    now, old = now["mfvi"], before["datasets"][name]["mfvi"]
    z = [abs(now[f"{m}_mean"] - old[f"{m}_mean"]) / now[f"{m}_se"]
         for m in ("rmse", "ll")]
    worst = max(worst, *z)
    rows.append({"dataset": name,
                 "RMSE before": f"{old['rmse_mean']:.3f} ± {old['rmse_se']:.3f}",
                 "RMSE core": f"{now['rmse_mean']:.3f} ± {now['rmse_se']:.3f}",
                 "LL before": f"{old['ll_mean']:.3f} ± {old['ll_se']:.3f}",
                 "LL core": f"{now['ll_mean']:.3f} ± {now['ll_se']:.3f}",
                 "change / SE (RMSE, LL)": f"{z[0]:.2f}, {z[1]:.2f}"})
  return (results_lib.markdown_table(rows).rstrip("\n")
          + f"\n\nWithin one SE on every data set: {_met(worst <= 1)} "
          f"(largest change {worst:.2f} SE).\n\n"
          f"before: {_provenance_line(before)}; core: "
          f"{_provenance_line(after)}")


def render_core_vs_numpyro(root: str, opts: Mapping[str, str]) -> str:
  """Issue 12's targets against bench/results/core_vs_numpyro.json."""
  where = opts.get("_where", "core_vs_numpyro_targets")
  doc = _load(root, {"source": "bench/results/core_vs_numpyro.json"}, "",
              where)
  res, s = doc["results"], doc["summary"]
  rows = []
  for name, j in res["protocol"]["jaxbdl"]["protocol"].items():
    n = res["protocol"]["numpyro"]["protocol"][name]
    ratio = n["seconds"] / j["seconds"]
    rows.append({
        "target": f"{j['splits']}-split protocol, MFVI, {name}: jaxbdl "
                  "(splits vmapped) vs NumPyro (loop of `SVI.run`, "
                  f"{n['steps']} steps), >= 5x",
        "measured": f"{j['seconds']:.1f} s vs {n['seconds']:.1f} s: "
                    f"{ratio:.1f}x; test RMSE {j['rmse']:.3g} vs "
                    f"{n['rmse']:.3g}",
        "met?": _met(ratio >= 5)})
  step = res["step"]
  flat = step["jaxbdl"]["step"]["jaxbdl flat"]["median"]
  tree = step["jaxbdl"]["step"]["jaxbdl pytree"]["median"]
  peer = step["numpyro"]["step"]["numpyro AutoNormal"]["median"]
  speed = s["step_speedup_jaxbdl flat"]
  frac = s["step_matmul_fraction_jaxbdl flat"]
  first = [v["first_call_s"] for v in res["predict"]["predict"].values()]
  rows += [
      {"target": "ELBO step, 2 x 400 ReLU, vs NumPyro AutoNormal, >= 1.5x",
       "measured": f"{1e3 * flat:.1f} ms (flat) / {1e3 * tree:.1f} ms "
                   f"(pytree) vs {1e3 * peer:.1f} ms: {speed:.2f}x",
       "met?": _met(speed >= 1.5)},
      {"target": "same step as a fraction of this machine's f32 matmul "
                 f"throughput ({step['jaxbdl']['step']['matmul_gflops']:.0f}"
                 " GFLOP/s), >= 50 %",
       "measured": f"{100 * frac:.0f} %", "met?": _met(frac >= 0.5)},
      {"target": "first call of `predict`, < 3 s",
       "measured": f"{min(first):.2f}-{max(first):.2f} s over "
                   + ", ".join(res["predict"]["predict"]),
       "met?": _met(max(first) < 3)}]
  return (results_lib.markdown_table(rows).rstrip("\n") + "\n\n"
          + _provenance_line(doc))


_GPU_LOG = "docs/results_gpu/runtimes.txt"


def render_gpu_run(root: str, opts: Mapping[str, str]) -> str:
  """Device, versions and experiment count of the GPU run's log."""
  where = opts.get("_where", "gpu_run")
  path = os.path.join(root, _GPU_LOG)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{where}: no {_GPU_LOG}")
  with open(path, encoding="utf-8") as f:
    lines = f.read().split("\n")
  gpu = next((m[1] for ln in lines if (m := re.match(r"GPU \d+: (.+?) \(",
                                                       ln))), "not recorded")
  versions = next((ln.split(" [")[0] for ln in lines
                   if ln.startswith("jax ")), "not recorded")
  runs = sum(bool(re.match(r"\S+ rc=\d+ seconds=", ln)) for ln in lines)
  versions = re.sub(r"(\S+) (\S+)", r"\1 \2,", versions).rstrip(",")
  return (f"{gpu}; {versions}; {runs} experiments started together "
          f"(`{_GPU_LOG}`; commit and date not recorded).")


RENDERERS["gpu_run"] = render_gpu_run
RENDERERS["uci_mfvi_change"] = render_uci_mfvi_change
RENDERERS["core_vs_numpyro_targets"] = render_core_vs_numpyro


def render_block(root: str, name: str, opts: Mapping[str, str],
                 where: str = "") -> str:
  """The Markdown text of the generated block ``name``."""
  if name in RENDERERS:
    return RENDERERS[name](root, {**opts, "_where": where or name}).rstrip(
        "\n")
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
