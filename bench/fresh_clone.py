"""Times the quick start on a fresh clone: set-up, `make demo`, `make test`.

Clones the committed HEAD of this repository into a temporary directory (no
`.venv`, no caches, no `../shared` beside it: the tests must not need it)
and runs, one after another, timing each with the wall clock:

1. ``make setup``: a new ``.venv`` from ``requirements.lock`` (pip's own
   download cache is the machine's, as on a CI runner with a warm cache);
2. ``make demo``: the main job on built-in data (set-up already done);
3. ``make test``: ruff, then the two pytest lanes; ``PYTEST_ADDOPTS`` adds
   ``--durations=15`` so each lane's slowest tests are recorded.

The README's two commands each include step 1 on a truly fresh machine, so
``make demo`` there = setup + demo and ``make test`` = setup + test.
Writes ``bench/results/fresh_clone.json`` (steps, pytest summary lines,
slowest tests, provenance with the load average before and after) for
``python -m scripts.regen_docs``.

Usage (repository root, a quiet machine; ~15 minutes on 2 cores):
  .venv/bin/python bench/fresh_clone.py [--keep]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = (("setup", ["make", "setup"]), ("demo", ["make", "demo"]),
         ("test", ["make", "test"]))
_SUMMARY = re.compile(r"=+ (.*(?:passed|failed|error).*) in ([\d.]+)s")
_DURATION = re.compile(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)")


def parse_pytest(log: str) -> dict:
  """Per pytest lane (in order): its summary line, seconds and the slowest
  tests it printed (``--durations``)."""
  lanes, slowest = [], []
  for line in log.splitlines():
    d = _DURATION.match(line)
    if d:
      slowest.append({"seconds": float(d.group(1)), "phase": d.group(2),
                      "test": d.group(3)})
      continue
    m = _SUMMARY.search(line)
    if m:
      lanes.append({"summary": m.group(1).strip(),
                    "seconds": float(m.group(2)), "slowest": slowest})
      slowest = []
  return {"lanes": lanes}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--keep", action="store_true",
                 help="keep the clone (its path is printed)")
  p.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                               "fresh_clone.json"))
  args = p.parse_args()
  sys.path.insert(0, REPO)
  from jaxbdl.evaluation import results as results_lib
  prov = results_lib.provenance()
  root = tempfile.mkdtemp(prefix="jaxbdl_fresh_")
  clone = os.path.join(root, "jaxbdl")
  subprocess.run(["git", "clone", "-q", REPO, clone], check=True)
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "PYTHONPATH", "VIRTUAL_ENV")}
  env["PYTEST_ADDOPTS"] = "--durations=15"
  steps = []
  try:
    for name, cmd in STEPS:
      load = os.getloadavg()[0]
      t0 = time.perf_counter()
      proc = subprocess.run(cmd, cwd=clone, env=env, capture_output=True,
                            text=True)
      seconds = time.perf_counter() - t0
      step = {"step": name, "command": " ".join(cmd),
              "seconds": round(seconds, 1), "returncode": proc.returncode,
              "load_before": round(load, 2),
              "load_after": round(os.getloadavg()[0], 2)}
      if name == "test":
        step.update(parse_pytest(proc.stdout))
      steps.append(step)
      print(f"{name}: {seconds:.1f} s, rc {proc.returncode}", flush=True)
      if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        break
  finally:
    if args.keep:
      print(f"clone kept at {clone}")
    else:
      shutil.rmtree(root, ignore_errors=True)
  rows = [{"step": s["step"], "command": s["command"],
           "seconds": s["seconds"], "ok": s["returncode"] == 0,
           "load_before": s["load_before"]} for s in steps]
  by = {s["step"]: s["seconds"] for s in steps}
  if {"setup", "demo", "test"} <= set(by):
    rows += [{"step": "README `make demo` (setup + demo)",
              "command": "make demo", "seconds": round(by["setup"] +
                                                       by["demo"], 1),
              "ok": True, "load_before": steps[0]["load_before"]},
             {"step": "README `make test` (setup + test)",
              "command": "make test", "seconds": round(by["setup"] +
                                                       by["test"], 1),
              "ok": True, "load_before": steps[0]["load_before"]}]
  results_lib.write_results_json(args.out, {
      "rows": rows, "steps": steps, "clone_commit": prov["git_commit"],
      "provenance": {**prov, "load_average_after": [
          round(v, 2) for v in os.getloadavg()]}})
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
