"""Writing experiment outputs: atomic files, Markdown tables, a checked workdir.

Every experiment writes ``results.json``, a Markdown table and PNG plots to its
``--workdir``. Files are written to a temporary name in the same directory and
renamed into place (``os.replace`` is atomic on POSIX), so an interrupted run
never leaves a half-written result next to a good one.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np


def ensure_workdir(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks it is writable; returns its path.

  Raises:
    ValueError: if ``workdir`` is empty.
    PermissionError / NotADirectoryError: with the offending path, if it
      cannot be used.
  """
  if not workdir:
    raise ValueError("--workdir must be a non-empty path")
  path = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise NotADirectoryError(f"workdir {path!r} exists and is not a directory")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise PermissionError(f"cannot create workdir {path!r}: {e}") from e
  if not os.access(path, os.W_OK | os.X_OK):
    raise PermissionError(f"workdir {path!r} is not writable")
  return path


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` via a temporary file and an atomic rename."""
  directory = os.path.dirname(os.path.abspath(path)) or "."
  fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                             suffix=".tmp", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
  """Converts numpy/JAX scalars and arrays to JSON types; NaN/inf become None."""
  if isinstance(obj, Mapping):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
    arr = np.asarray(obj)
    if arr.ndim == 0:
      return to_jsonable(arr.item())
    return [to_jsonable(v) for v in arr.tolist()]
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, (np.floating,)):
    return to_jsonable(float(obj))
  if isinstance(obj, (np.integer,)):
    return int(obj)
  if isinstance(obj, (np.bool_,)):
    return bool(obj)
  return obj


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as indented JSON (strict: non-finite numbers become null)."""
  text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False)
  atomic_write_text(path, text + "\n")


def _fmt(v: Any, precision: int) -> str:
  if isinstance(v, (float, np.floating)):
    if not math.isfinite(float(v)):
      return "nan" if math.isnan(float(v)) else ("inf" if v > 0 else "-inf")
    av = abs(float(v))
    if av != 0.0 and (av < 10 ** (-precision) or av >= 1e6):
      return f"{float(v):.{precision}e}"
    return f"{float(v):.{precision}f}"
  return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]],
                   columns: Sequence[str] | None = None,
                   precision: int = 4) -> str:
  """Renders a list of dict rows as a GitHub Markdown table.

  Args:
    rows: one mapping per row.
    columns: column order; defaults to the keys of the first row.
    precision: digits after the decimal point for floats (scientific notation
      for very small or large magnitudes).
  """
  if not rows:
    raise ValueError("markdown_table needs at least one row")
  columns = list(columns or rows[0].keys())
  lines = ["| " + " | ".join(columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(_fmt(row.get(c, ""), precision)
                                  for c in columns) + " |")
  return "\n".join(lines) + "\n"


def save_figure(fig, path: str, dpi: int = 120) -> None:
  """Saves a matplotlib figure atomically as PNG and closes it."""
  import io
  import matplotlib.pyplot as plt
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
  plt.close(fig)
  atomic_write_bytes(path, buf.getvalue())


def write_outputs(workdir: str, results: Mapping[str, Any], table: str,
                  table_name: str = "results.md") -> None:
  """Writes ``results.json`` and the Markdown ``table`` atomically to workdir."""
  atomic_write_json(os.path.join(workdir, "results.json"), results)
  atomic_write_text(os.path.join(workdir, table_name), table)


def pyplot():
  """Returns ``matplotlib.pyplot`` on the non-interactive Agg backend."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt
