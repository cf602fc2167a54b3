"""The shared absl entry point of the experiments.

An experiment module defines ``run(config, workdir) -> dict`` (the work,
writing ``results.json``, ``results.md`` and plots) and ends with::

  if __name__ == "__main__":
    launch.main("NAME", run)

Flags are defined only then, so several experiments can be imported in one
process (the tests) without absl's DuplicateFlagError.
"""
from __future__ import annotations

import os
from typing import Callable

from absl import app, flags
from ml_collections import config_flags

from jaxbdl import results as results_lib

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def define_flags(name: str) -> None:
  """Defines ``--workdir`` and ``--config`` (default ``configs/NAME.py``)."""
  flags.DEFINE_string("workdir", None, "Output directory.", required=True)
  config_flags.DEFINE_config_file(
      "config", os.path.join(_CONFIG_DIR, f"{name}.py"),
      "Config file (append :quick for the tiny variant).", lock_config=True)


def default_report(res: dict, workdir: str) -> str:
  """The workdir's ``results.md``, plus the run time when ``res`` has one."""
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  if "seconds" in res:
    text += f"\nwrote {workdir} in {res['seconds']:.1f}s"
  return text


def main(name: str, run: Callable[..., dict],
         report: Callable[[dict, str], str] = default_report) -> None:
  """Defines the flags, runs ``run(config, workdir)``, prints ``report``."""
  define_flags(name)

  def _main(argv):
    del argv
    workdir = results_lib.ensure_workdir(flags.FLAGS.workdir)
    res = run(flags.FLAGS.config, workdir)
    print(report(res, workdir))

  app.run(_main)
