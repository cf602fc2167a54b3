"""The shared absl entry point of the experiments.

An experiment module defines ``run(config, workdir) -> dict`` (the work,
writing ``results.json``, ``results.md`` and plots) and ends with::

  if __name__ == "__main__":
    launch.main("NAME", run)

Flags are defined only then, so several experiments can be imported in one
process (the tests) without absl's DuplicateFlagError.

Before ``run`` starts, :func:`parse` checks every ``--config.X`` override
names a field of the config and :func:`experiments.validate.check_config`
checks the values; a problem ends the program with ONE line on stderr
(``NAME: config.learning_rate must be a finite number > 0, got nan``) and
exit status 2, and nothing is written.
"""
from __future__ import annotations

import logging as pylogging
import os
import sys
from typing import Callable, Optional, Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import validate
from jaxbdl.evaluation import results as results_lib

__all__ = ["define_flags", "parse", "default_report", "quiet_logs",
           "check_input", "compiler_options", "main"]

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
EXIT_BAD_CONFIG = 2


def define_flags(name: str, flag_values: flags.FlagValues = flags.FLAGS,
                 argv: Optional[Sequence[str]] = None) -> None:
  """Defines ``--workdir`` and ``--config`` (default ``configs/NAME.py``).

  ``argv`` is what config_flags scans for ``--config.X`` overrides
  (``sys.argv`` when None).
  """
  flags.DEFINE_string("workdir", None, "Output directory.", required=True,
                      flag_values=flag_values)
  config_flags.DEFINE_config_file(
      "config", os.path.join(_CONFIG_DIR, f"{name}.py"),
      "Config file (append :quick for the tiny variant).",
      flag_values=flag_values, lock_config=True,
      sys_argv=None if argv is None else list(argv))


def _config_spec(name: str, argv: Sequence[str]) -> str:
  spec = os.path.join(_CONFIG_DIR, f"{name}.py")
  args = list(argv)
  for i, arg in enumerate(args):
    if arg in ("--config", "-config") and i + 1 < len(args):
      spec = args[i + 1]
    elif arg.startswith(("--config=", "-config=")):
      spec = arg.split("=", 1)[1]
  return spec


def _load_config(spec: str):
  """``get_config(arg)`` of ``path[:arg]`` (as config_flags loads it)."""
  import importlib.util
  path, *arg = spec.split(":", 1)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no config file {path}")
  module_spec = importlib.util.spec_from_file_location("_launch_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(*arg)


def parse(name: str, argv: Sequence[str],
          flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """Parses ``argv`` into ``flag_values`` (flags defined by define_flags).

  The config file is loaded once up front so that an unknown ``--config.X``
  is reported by :func:`validate.check_overrides`; then the values are
  checked by :func:`validate.check_config`.

  Returns:
    the remaining (positional) arguments, as absl's parser does.

  Raises:
    validate.ConfigError: an unknown override, an invalid value, or any flag
      parsing error (one line).
  """
  spec = _config_spec(name, argv)
  try:
    loaded = _load_config(spec)
  except Exception as e:  # noqa: BLE001 - reported as one line
    first = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
    raise validate.ConfigError(f"cannot load config {spec!r}: {first}") from e
  validate.check_overrides(loaded, argv)
  try:
    rest = flag_values(list(argv))
  except flags.Error as e:
    raise validate.ConfigError(str(e).splitlines()[0]) from e
  validate.check_config(name, flag_values.config)
  return rest


def default_report(res: dict, workdir: str) -> str:
  """The workdir's ``results.md``, plus the run time when ``res`` has one."""
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  if "seconds" in res:
    text += f"\nwrote {workdir} in {res['seconds']:.1f}s"
  return text


class _OwnInfoOnly(pylogging.Filter):
  """Keeps warnings and errors, and INFO from jaxbdl / experiments code."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    if record.levelno >= pylogging.WARNING:
      return True
    path = record.pathname.replace(os.sep, "/")
    return "/jaxbdl/" in path or "/experiments/" in path


def quiet_logs(argv: Sequence[str]) -> None:
  """Hides other libraries' INFO lines unless ``argv`` sets ``--verbosity``.

  absl's ``app.run`` shows INFO, which floods a run with orbax's
  per-checkpoint chatter and jax's ``Unable to initialize backend 'tpu'``.
  Our own INFO lines (one summary per phase of a study) and every warning
  stay; ``--verbosity=0`` (INFO) or ``1`` (DEBUG) shows everything.
  """
  for arg in argv[1:]:
    if arg.split("=", 1)[0] in ("--verbosity", "-verbosity", "-v", "--v"):
      return
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _OwnInfoOnly) for f in handler.filters):
    handler.addFilter(_OwnInfoOnly())


def compiler_options(config) -> Optional[dict]:
  """``jax.jit(..., compiler_options=...)`` from the config field
  ``xla_backend_optimization_level`` (None or absent: XLA's default).

  For compile-bound studies of many tiny programs (level 0 compiles several
  times faster). Applied on the CPU backend only; other backends keep their
  defaults.
  """
  import jax
  level = config.get("xla_backend_optimization_level", None)
  if level is None or jax.default_backend() != "cpu":
    return None
  return {"xla_backend_optimization_level": int(level)}


def check_input(name: str, check: Callable[..., object], *args):
  """Runs ``check(*args)``, the checks an entry point makes BEFORE any long
  work (data paths, data-set and method names), and returns its result.

  A ``ValueError`` or ``OSError`` it raises ends the program with ONE line on
  stderr (``uci_regression: unknown dataset 'x' under ...; valid: [...]``)
  and exit status 2, as a bad config does, instead of a traceback.
  """
  try:
    return check(*args)
  except (ValueError, OSError) as e:
    msg = str(e).strip().splitlines()
    sys.stderr.write(f"{name}: {msg[0] if msg else repr(e)}\n")
    sys.exit(EXIT_BAD_CONFIG)


def main(name: str, run: Callable[..., dict],
         report: Callable[[dict, str], str] = default_report) -> None:
  """Defines the flags, validates them, runs ``run(config, workdir)``, prints
  ``report``; a bad config or flag exits with status 2 and one line."""
  define_flags(name)

  def _parser(argv):
    try:
      return parse(name, argv)
    except validate.ConfigError as e:
      sys.stderr.write(f"{name}: {e}\n")
      sys.exit(EXIT_BAD_CONFIG)

  def _main(argv):
    del argv
    quiet_logs(sys.argv)
    workdir = results_lib.ensure_workdir(flags.FLAGS.workdir)
    res = run(flags.FLAGS.config, workdir)
    print(report(res, workdir))

  app.run(_main, flags_parser=_parser)
