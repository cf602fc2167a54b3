"""Merges ``experiments.uci_regression`` workdirs into one results table.

bench/uci_grid_gpu.sh writes one workdir per data set; this joins their
``results.json`` files (every ``results.json`` under each given folder, data
sets in order of appearance, a method suffixed by ``LABEL`` when given as
``LABEL=DIR``) and recomputes the target checks over all rows:

  python bench/merge_uci_results.py OUT_PREFIX [LABEL=]DIR [[LABEL=]DIR ...]

Writes ``OUT_PREFIX.json`` and ``OUT_PREFIX.md`` (atomically).
"""
from __future__ import annotations

import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import uci_regression  # noqa: E402
from jaxbdl.evaluation import results as results_lib  # noqa: E402


def merge(dirs: list[str]) -> dict:
  merged = {"datasets": {}, "checks": {}, "sources": []}
  for arg in dirs:
    label, _, folder = arg.rpartition("=")
    files = sorted(glob.glob(os.path.join(folder, "**", "results.json"),
                             recursive=True))
    if not files:
      raise FileNotFoundError(f"no results.json under {folder!r}")
    for f in files:
      with open(f) as fh:
        r = json.load(fh)
      merged["sources"].append({"file": os.path.relpath(f, folder),
                                "label": label, "devices": r.get("devices"),
                                "config": r.get("config")})
      for name, by_method in r["datasets"].items():
        dst = merged["datasets"].setdefault(name, {})
        for method, s in by_method.items():
          dst[method + (f" [{label}]" if label else "")] = s
  for name, by_method in merged["datasets"].items():
    chk = uci_regression.compute_checks(name, by_method)
    if chk is not None:
      merged["checks"][name] = chk
  return merged


def main(argv: list[str]) -> None:
  if len(argv) < 3:
    raise SystemExit(__doc__)
  out, dirs = argv[1], argv[2:]
  merged = merge(dirs)
  table = uci_regression.make_table(merged)
  results_lib.atomic_write_json(out + ".json", merged)
  results_lib.atomic_write_text(out + ".md", table)
  print(table)


if __name__ == "__main__":
  main(sys.argv)
