"""Config validation shared by every experiment, run before any work.

:func:`check_config` walks a ``ConfigDict`` and applies rules chosen by the
FIELD NAME (the last path component, or the parent's for ``a.b.c`` under a
node such as ``learning_rate.finetune``), plus explicit per-experiment
exceptions and additions in :data:`EXPERIMENT_RULES`. Every numeric value,
also inside tuples, must be finite. The first violation raises
:class:`ConfigError` (a ``ValueError``) with one line naming the field, the
rule and the value, e.g.::

  config.model.num_predict_samples must be an int >= 1, got 0

:func:`check_overrides` checks ``--config.X=...`` command-line overrides
against the loaded config (an unknown field is one line listing the valid
ones instead of three chained tracebacks from ``ml_collections``), and
:func:`method_list` parses ``"map,mfvi"`` / ``"all"`` method lists.
``experiments/launch.py`` calls both for every ``launch.main`` experiment;
experiments with their own ``main`` call :func:`check_config` themselves.

Adding a rule: a name pattern goes in :data:`NAME_RULES` (first match wins);
an experiment whose field means something else (``batch_size = 0`` for full
batch) gets an entry in :data:`EXPERIMENT_RULES` keyed by its dotted path.
"""
from __future__ import annotations

import fnmatch
import math
import numbers
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence

__all__ = [
    "ConfigError", "Rule", "NAME_RULES", "EXPERIMENT_RULES", "check_config",
    "check_overrides", "config_fields", "method_list", "rule_for",
]


class ConfigError(ValueError):
  """A config value or command-line override is invalid (one-line message)."""


class Rule(NamedTuple):
  """A check on one scalar value: ``ok(value)``; ``text`` completes "must be"."""
  text: str
  ok: Callable[[Any], bool]


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


POSITIVE = Rule("a finite number > 0", lambda v: _is_num(v) and v > 0)
NONNEGATIVE = Rule("a finite number >= 0", lambda v: _is_num(v) and v >= 0)
POSITIVE_INT = Rule("an int >= 1", lambda v: _is_int(v) and v >= 1)
NONNEGATIVE_INT = Rule("an int >= 0", lambda v: _is_int(v) and v >= 0)
PROBABILITY_OPEN = Rule("a number in (0, 1)",
                        lambda v: _is_num(v) and 0 < v < 1)
PROBABILITY_HALF_OPEN = Rule("a number in [0, 1)",
                             lambda v: _is_num(v) and 0 <= v < 1)
UNIT_INTERVAL = Rule("a number in [0, 1]", lambda v: _is_num(v) and 0 <= v <= 1)
ANY = Rule("anything", lambda v: True)

# (glob on the field name, rule); the first matching pattern wins. The field
# name is the last path component; for a leaf under a node whose name matches
# (``adapt.learning_rate.finetune``) the node's name is used as well.
NAME_RULES: tuple[tuple[str, Rule], ...] = (
    ("seed", NONNEGATIVE_INT),
    ("*_seed", NONNEGATIVE_INT),
    ("*learning_rate*", POSITIVE),
    ("lr", POSITIVE),
    ("*_lr", POSITIVE),
    ("*_lr_scale", POSITIVE),
    ("*dropout_rate*", PROBABILITY_HALF_OPEN),
    ("test_fraction", PROBABILITY_OPEN),
    ("grid_valid_fraction", PROBABILITY_OPEN),
    ("*valid_fraction", PROBABILITY_HALF_OPEN),
    ("*_fraction", PROBABILITY_HALF_OPEN),
    ("*_scale", POSITIVE),
    ("scale", POSITIVE),
    ("*_std", NONNEGATIVE),
    ("*lengthscale*", POSITIVE),
    ("*variance", POSITIVE),
    ("jitter", NONNEGATIVE),
    ("sigma_w2", POSITIVE),
    ("sigma_b2", NONNEGATIVE),
    ("patience", NONNEGATIVE_INT),
    ("num_splits", NONNEGATIVE_INT),      # 0 = all splits
    ("*_num_splits", NONNEGATIVE_INT),
    ("num_*", POSITIVE_INT),
    ("*_num_*", POSITIVE_INT),
    ("*batch_size", POSITIVE_INT),
    ("*_init_epochs", NONNEGATIVE_INT),   # 0 = no pre-training
    ("*epochs", POSITIVE_INT),
    ("*_steps", POSITIVE_INT),
    ("num_iterations", POSITIVE_INT),
    ("*_iters", POSITIVE_INT),
    ("max_*", POSITIVE_INT),
    ("min_*", NONNEGATIVE_INT),
    ("width", POSITIVE_INT),
    ("widths", POSITIVE_INT),
    ("hidden", POSITIVE_INT),
    ("hidden_size", POSITIVE_INT),
    ("features", POSITIVE_INT),
    ("num_bins", POSITIVE_INT),
)

# Per experiment: dotted field path -> rule, overriding NAME_RULES.
EXPERIMENT_RULES: dict[str, dict[str, Rule]] = {
    # batch_size = 0 means full batch in these experiments.
    "bayes_logreg": {"batch_size": NONNEGATIVE_INT},
    "gap_uncertainty": {"model.batch_size": NONNEGATIVE_INT},
    # cnn.prior_scale = 0 means no weight decay.
    "cnn_rnn": {"cnn.prior_scale": NONNEGATIVE},
    # epoch 0 = the network at initialisation.
    "bnn_gradient_variance": {"train_epochs": NONNEGATIVE_INT},
    "curve_fitting": {"num_train": Rule("an int >= 2",
                                        lambda v: _is_int(v) and v >= 2),
                      "max_degree": NONNEGATIVE_INT},
    "nngp_convergence": {"depth": NONNEGATIVE_INT},
    "vanishing_gradients": {"depth": POSITIVE_INT},
    "meta_learning": {"alpha": POSITIVE, "inner_steps": POSITIVE_INT,
                      "warmup_iterations": NONNEGATIVE_INT,
                      "test_steps": NONNEGATIVE_INT},
    "regularisation": {"target_accuracy": UNIT_INTERVAL},
    # noise_scale = 0 means a learned observation noise.
    "fit": {"noise_scale": NONNEGATIVE},
    "bo_tuning": {"core.noise_scale": NONNEGATIVE},
}


def rule_for(path: str, experiment: Optional[str] = None) -> Optional[Rule]:
  """The rule for dotted ``path`` (``"model.batch_size"``), or None."""
  explicit = EXPERIMENT_RULES.get(experiment or "", {})
  if path in explicit:
    return explicit[path]
  parts = path.split(".")
  for name in (parts[-1], *reversed(parts[:-1])):
    for pattern, rule in NAME_RULES:
      if fnmatch.fnmatchcase(name, pattern):
        return rule
  return None


def _leaves(node: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
  items = node.items() if hasattr(node, "items") else ()
  for k, v in items:
    path = f"{prefix}{k}"
    if hasattr(v, "items"):
      yield from _leaves(v, path + ".")
    else:
      yield path, v


def config_fields(config: Any) -> list[str]:
  """Sorted dotted paths of every leaf and node of ``config``."""
  out = []
  for path, _ in _leaves(config):
    parts = path.split(".")
    out.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
  return sorted(set(out))


def _scalars(value: Any) -> Iterable[Any]:
  if isinstance(value, (list, tuple)):
    for v in value:
      yield from _scalars(v)
  else:
    yield value


def check_config(name: str, config: Any) -> None:
  """Validates ``config`` of experiment ``name``; raises on the first problem.

  Args:
    name: the experiment (key of :data:`EXPERIMENT_RULES`).
    config: a ``ConfigDict`` or nested mapping.

  Raises:
    ConfigError: ``config.<field> must be <rule>, got <value>`` for the first
      non-finite number or rule violation (for tuples, the offending element).
  """
  for path, value in _leaves(config):
    rule = rule_for(path, name)
    for v in _scalars(value):
      if _is_num(v) and not math.isfinite(v):
        text = rule.text if rule is not None else "a finite number"
        raise ConfigError(f"config.{path} must be {text}, got {v!r}")
      if rule is None or v is None or isinstance(v, str):
        continue
      if not rule.ok(v):
        shown = (f"{v!r} in {tuple(value)!r}" if isinstance(value, (list, tuple))
                 else repr(v))
        raise ConfigError(f"config.{path} must be {rule.text}, got {shown}")


def _has_path(config: Any, path: str) -> bool:
  node = config
  for part in path.split("."):
    if not hasattr(node, "keys") or part not in node.keys():
      return False
    node = node[part]
  return True


def check_overrides(config: Any, argv: Sequence[str],
                    flag: str = "config") -> None:
  """Checks every ``--config.X[=v]`` in ``argv`` names a field of ``config``.

  Raises:
    ConfigError: ``unknown config field 'X' in --config.X=1; valid fields:
      ...`` (one line).
  """
  prefixes = (f"--{flag}.", f"-{flag}.", f"--no{flag}.", f"-no{flag}.")
  for arg in argv:
    for prefix in prefixes:
      if arg.startswith(prefix):
        field = arg[len(prefix):].split("=", 1)[0]
        if not _has_path(config, field):
          raise ConfigError(
              f"unknown config field {field!r} in {arg}; valid fields: "
              + ", ".join(config_fields(config)))
        break


def method_list(spec: Any, valid: Sequence[str], what: str = "method",
                all_word: str = "all") -> tuple[str, ...]:
  """Parses a method list: ``"map,mfvi"``, ``("map", "mfvi")`` or ``"all"``.

  One implementation: :func:`jaxbdl.bayes.registry.check_names` with
  ``valid``; its ``ValueError`` is re-raised as :class:`ConfigError`.

  Args:
    spec: comma-separated string or a sequence of names; ``all_word`` alone
      means every name in ``valid`` (in that order).
    valid: the known names.
    what: the noun used in messages (``"method"``, ``"data set"``).
    all_word: the word meaning "every one".

  Returns:
    the names, in the given order.

  Raises:
    ConfigError: empty list or empty name, unknown names (listed with the
      valid ones), duplicates, or ``all`` mixed with other names.
  """
  from jaxbdl.bayes import registry
  try:
    return tuple(registry.check_names(spec, valid=valid, what=what,
                                      all_word=all_word))
  except ValueError as e:
    raise ConfigError(str(e)) from None
