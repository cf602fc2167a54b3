"""Writing experiment outputs: atomic files, Markdown tables, provenance.

Every experiment writes ``results.json``, a Markdown table and PNG plots to its
``--workdir``. Files are written to a temporary name in the same directory and
renamed into place (``os.replace`` is atomic on POSIX), so an interrupted run
never leaves a half-written result next to a good one. The new file gets the
permissions an ordinary ``open(path, "w")`` would give it: an existing file
keeps its mode, a new one gets ``0666 & ~umask``.

Numbers people read must say where they came from: :func:`provenance` records
the git commit (and whether the tree was dirty), the jax / jaxlib / flax /
optax versions, the platform and device, the command line, the load average
and the date; :func:`write_outputs` and :func:`write_results_json` add it to
every ``results.json``. :func:`merge_json` merges one entry (e.g. one data set
/ method / config fingerprint) into an existing results file, so that partial
runs accumulate instead of overwriting each other; an entry carries
``"complete": false`` until its run finished.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import math
import os
import platform
import shlex
import stat
import subprocess
import sys
import tempfile
from typing import Any, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "ensure_workdir", "atomic_write_bytes", "atomic_write_text",
    "atomic_write_json", "to_jsonable", "markdown_table", "save_figure",
    "write_outputs", "write_results_json", "pyplot", "provenance",
    "config_fingerprint", "merge_json", "read_json",
]

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _target_mode(path: str) -> int:
  """The mode an ordinary write would leave: the existing file's, else
  ``0666 & ~umask``."""
  try:
    return stat.S_IMODE(os.stat(path).st_mode)
  except FileNotFoundError:
    return 0o666 & ~_umask()


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` via a temporary file and an atomic rename.

  The result has the mode an ordinary write would give (see module doc):
  ``mkstemp``'s private ``0600`` is replaced before the rename.
  """
  directory = os.path.dirname(os.path.abspath(path)) or "."
  mode = _target_mode(path)
  fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                             suffix=".tmp", dir=directory)
  try:
    os.fchmod(fd, mode)
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


def write_results_json(path: str, results: Mapping[str, Any]) -> None:
  """Writes ``results`` plus a ``"provenance"`` entry (:func:`provenance`).

  An existing ``"provenance"`` key in ``results`` is kept (e.g. copied from
  the run that produced the numbers).
  """
  if not isinstance(results, Mapping):
    raise ValueError(f"results for {path} must be a mapping, got "
                     f"{type(results).__name__}")
  out = dict(results)
  out.setdefault("provenance", provenance())
  atomic_write_json(path, out)


def write_outputs(workdir: str, results: Mapping[str, Any], table: str,
                  table_name: str = "results.md") -> None:
  """Writes ``results.json`` (with provenance) and the Markdown ``table``."""
  write_results_json(os.path.join(workdir, "results.json"), results)
  atomic_write_text(os.path.join(workdir, table_name), table)


# --------------------------------------------------------------------------
# Provenance and merged results.


def _git(*args: str) -> Optional[str]:
  try:
    out = subprocess.run(["git", "-C", _REPO_ROOT, *args], capture_output=True,
                         text=True, timeout=10, check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip()


def _version(package: str) -> Optional[str]:
  from importlib import metadata
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def _device() -> dict:
  """Backend, device kind and count, from the jax already imported (if any).

  jax is not imported here when the caller has not imported it (bench
  scripts of peer libraries), so provenance never initialises a backend on
  its own.
  """
  jax = sys.modules.get("jax")
  if jax is None:
    return {"backend": None, "device_kind": None, "device_count": None}
  try:
    devices = jax.devices()
    return {"backend": jax.default_backend(),
            "device_kind": devices[0].device_kind,
            "device_count": len(devices)}
  except Exception as e:  # noqa: BLE001 - recorded, never fatal
    return {"backend": None, "device_kind": f"unavailable: {e}",
            "device_count": 0}


def provenance() -> dict:
  """Where a number came from: commit, versions, platform, command, load, date.

  Returns a JSON-able dict: ``git_commit`` (None outside a git checkout),
  ``git_dirty`` (tracked files modified), ``versions`` (python, jax, jaxlib,
  flax, optax, numpy), ``platform`` (machine, processor, system, cpu_count,
  backend, device_kind, device_count), ``command`` (``sys.argv`` as a shell
  line), ``cwd``, ``load_average`` (1, 5, 15 min), ``date_utc`` (ISO 8601).
  """
  commit = _git("rev-parse", "HEAD")
  status = _git("status", "--porcelain", "--untracked-files=no")
  try:
    load = [round(v, 2) for v in os.getloadavg()]
  except OSError:
    load = None
  return {
      "git_commit": commit or None,
      "git_dirty": None if status is None else bool(status),
      "versions": {"python": platform.python_version(),
                   **{p: _version(p) for p in ("jax", "jaxlib", "flax",
                                               "optax", "numpy")}},
      "platform": {"machine": platform.machine(),
                   "processor": platform.processor() or None,
                   "system": platform.platform(),
                   "cpu_count": os.cpu_count(), **_device()},
      "command": shlex.join(sys.argv),
      "cwd": os.getcwd(),
      "load_average": load,
      "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
  }


def config_fingerprint(config: Any) -> str:
  """12 hex digits of SHA-256 of the config as canonical JSON.

  Accepts a ``ConfigDict`` (``to_dict()``) or any JSON-able mapping; equal
  configs give equal fingerprints whatever their key order.
  """
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  text = json.dumps(to_jsonable(config), sort_keys=True, allow_nan=False)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def read_json(path: str) -> Any:
  """Reads a JSON file; a broken one raises ValueError naming the file."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: not a valid JSON results file ({e})") from e


@contextlib.contextmanager
def _locked(path: str):
  """An exclusive ``flock`` on ``path + ".lock"`` (serialises merges)."""
  with open(path + ".lock", "a") as lock:
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def merge_json(path: str, key_path: Sequence[str], entry: Mapping[str, Any],
               complete: bool = True) -> dict:
  """Merges ``entry`` into the results file ``path`` at ``key_path``.

  ``results[k1][k2]...[kn] = entry + {"complete": complete, "provenance":
  provenance()}``; other keys of the file are kept, so runs of different
  data sets / methods / configs accumulate in one file. A partial run is
  written with ``complete=False`` and replaced when a complete one lands.
  The read-modify-write is serialised with a lock file and the write is
  atomic.

  Example::

    merge_json("w/results.json", ["yacht", "mfvi", config_fingerprint(c)],
               {"rmse": 0.86, "splits_done": 20}, complete=True)

  Args:
    path: the JSON file (created when missing).
    key_path: non-empty sequence of non-empty string keys.
    entry: a JSON-able mapping.
    complete: whether the run behind ``entry`` finished.

  Returns:
    the whole merged document.

  Raises:
    ValueError: an empty/non-string key, an entry that is not a mapping, an
      unreadable file, or a key on the path that holds a non-mapping.
  """
  key_path = list(key_path) if not isinstance(key_path, str) else [key_path]
  if not key_path or not all(isinstance(k, str) and k for k in key_path):
    raise ValueError(f"merge_json: key_path must be non-empty strings, got "
                     f"{key_path!r}")
  if not isinstance(entry, Mapping):
    raise ValueError(f"merge_json: entry must be a mapping, got "
                     f"{type(entry).__name__}")
  if not isinstance(complete, bool):
    raise ValueError(f"merge_json: complete must be a bool, got {complete!r}")
  with _locked(path):
    doc = read_json(path) if os.path.exists(path) else {}
    if not isinstance(doc, dict):
      raise ValueError(f"{path}: top level is {type(doc).__name__}, not an "
                       "object; cannot merge")
    node = doc
    for i, k in enumerate(key_path[:-1]):
      child = node.setdefault(k, {})
      if not isinstance(child, dict):
        raise ValueError(f"{path}: {'/'.join(key_path[:i + 1])} holds a "
                         f"{type(child).__name__}, not an object; cannot merge")
      node = child
    node[key_path[-1]] = {**to_jsonable(dict(entry)), "complete": complete,
                          "provenance": provenance()}
    atomic_write_json(path, doc)
  return doc


def pyplot():
  """Returns ``matplotlib.pyplot`` on the non-interactive Agg backend."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt
