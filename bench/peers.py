"""Runs one side of a side-by-side benchmark in its own interpreter.

A bench script compares jaxbdl with a peer library installed in a throw-away
environment (``bench/setup_*.sh``). Its driver runs ``PYTHON SCRIPT --worker
NAME ARGS...`` once per side and round (alternating sides, so a change in
machine load hits both), and each worker prints its measurements as ONE JSON
object on its last stdout line. Standard library only: the peers' environments
do not have jaxbdl installed (``PYTHONPATH`` points at the repository).
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Optional, Sequence

__all__ = ["REPO", "SETUP_HINTS", "run_worker"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP_HINTS = {"jaxbdl": "make setup",
               "numpyro": "bash bench/setup_numpyro.sh",
               "torch": "bash bench/setup_laplace_torch.sh",
               "optax": "bash bench/setup_optax026.sh"}


def run_worker(script: str, which: str, python: str, args: Sequence,
               *, cwd: Optional[str] = None) -> dict:
  """``python script --worker which *args`` -> the worker's JSON result.

  Raises ``FileNotFoundError`` (naming the set-up command) when ``python`` is
  a path that does not exist, and ``RuntimeError`` with the end of the
  worker's stderr when it fails.
  """
  if os.sep in python and not os.path.exists(python):
    hint = SETUP_HINTS.get(which, "the matching bench/setup_*.sh")
    raise FileNotFoundError(f"{python} not found; run `{hint}` first")
  cmd = [python, os.path.abspath(script), "--worker", which,
         *(str(a) for a in args)]
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                       env=dict(os.environ, PYTHONPATH=REPO))
  if out.returncode != 0:
    raise RuntimeError(f"{which} worker failed:\n{out.stderr[-4000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])
