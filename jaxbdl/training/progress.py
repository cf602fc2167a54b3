"""Progress of long compiled loops: epoch, rate and ETA on one stderr line.

A fit runs as ONE compiled program (``lax.scan`` over epochs, see
:mod:`jaxbdl.training.train`), so Python sees nothing until it ends. As NumPyro's and
BlackJAX's progress bars do, :func:`scan_callback` puts a
``jax.debug.callback`` into the scan body; the host side (:class:`_Bar`)
throttles the printing (at most every ``min_interval`` seconds, plus the last
epoch) and rewrites one line::

  fit: epoch 120/400 [30%] loss 0.4312 | 85.1 epoch/s | ETA 3s

and, when the loop ends, a one-line summary::

  fit: 400 epochs in 4.7s (85.1 epoch/s), last loss 0.3120

The callback only reads values (it returns nothing into the program), so the
numbers a fit computes do not change, and it works under ``jit``, ``vmap``
(the host then sees one call per vmapped run; the line shows their mean loss)
and ``scan``. Whether the callback is inserted is decided at TRACE time by
:func:`enabled`: on when stderr is a terminal (never under pytest, which
captures it) unless ``JAXBDL_PROGRESS=0``; ``JAXBDL_PROGRESS=1`` or
:func:`set_enabled` force it. When off, the traced program is exactly the one
without progress. :func:`phase` prints the one-line summary of a phase of
host-side work (e.g. one method of a benchmark) whatever the terminal.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["enabled", "set_enabled", "scan_callback", "phase",
           "format_seconds"]

_FORCED: Optional[bool] = None


def set_enabled(value: Optional[bool]) -> None:
  """Forces progress on (True) or off (False); None restores the default."""
  global _FORCED
  _FORCED = value


def enabled() -> bool:
  """Whether loops traced from now on report progress (see module doc)."""
  if _FORCED is not None:
    return _FORCED
  env = os.environ.get("JAXBDL_PROGRESS", "")
  if env in ("0", "1"):
    return env == "1"
  if "PYTEST_CURRENT_TEST" in os.environ:
    return False
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):
    return False


def format_seconds(s: float) -> str:
  """``42s``, ``3m05s``, ``1h02m``."""
  if not np.isfinite(s):
    return "?"
  s = int(round(s))
  if s < 60:
    return f"{s}s"
  if s < 3600:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class _Bar:
  """Host-side state of one progress line (one per traced loop)."""

  def __init__(self, label: str, total: int, min_interval: float, stream,
               unit: str = "epoch", value: str = "loss"):
    self.label, self.total = label, int(total)
    self.unit, self.value = unit, value
    self.min_interval, self.stream = min_interval, stream
    self.t0, self.last_print, self.last_i = 0.0, 0.0, -1
    self.final_printed, self.first_i = False, 0
    self.losses: list[float] = []

  def __call__(self, i, loss) -> None:
    i = int(np.max(np.asarray(i)))
    now = time.perf_counter()
    if i < self.last_i or self.last_i < 0:      # a new run of the loop
      self.t0, self.last_print, self.losses = now, 0.0, []
      self.final_printed, self.first_i = False, i
    if i != self.last_i:
      self.losses = []
    self.last_i = i
    self.losses.append(float(np.mean(np.asarray(loss, np.float64))))
    done = i + 1
    # The clock starts when the first epoch has ENDED (compilation is over
    # by then), so the rate counts the epochs after it.
    elapsed = now - self.t0
    rate = ((i - self.first_i) / elapsed if i > self.first_i and elapsed > 0
            else float("nan"))
    last = done == self.total
    if not last and (i == self.first_i
                     or now - self.last_print < self.min_interval):
      return
    if last and np.isfinite(rate):
      elapsed += (self.first_i + 1) / rate      # the epochs before the clock
    self.last_print = now
    loss_v = float(np.mean(self.losses))
    if last:
      if self.final_printed:     # under vmap: once, not once per run
        return
      self.final_printed = True
      self.stream.write(
          f"\r{self.label}: {self.total} {self.unit}s in "
          f"{format_seconds(elapsed)} ({rate:.1f} {self.unit}/s), last "
          f"{self.value} {loss_v:.4g}\x1b[K\n")
    else:
      eta = (self.total - done) / rate
      self.stream.write(
          f"\r{self.label}: {self.unit} {done}/{self.total} "
          f"[{100 * done // self.total}%] {self.value} {loss_v:.4g} | "
          f"{rate:.1f} {self.unit}/s | ETA {format_seconds(eta)}\x1b[K")
    self.stream.flush()


def scan_callback(label: str, total: int, *, min_interval: float = 0.5,
                  max_calls: int = 50, stream=None, unit: str = "epoch",
                  value: str = "loss"):
  """Returns ``report(i, loss)`` to call inside a scan body, or None if off.

  Args:
    label: names the loop on the progress line (e.g. ``"fit"``).
    total: number of iterations of the scan (Python int).
    min_interval: seconds between two updates of the line.
    max_calls: the callback runs on every ``total // max_calls``-th
      iteration (and the last), so its cost per loop is bounded.
    stream: where to write (default ``sys.stderr``).
    unit: what one iteration is called on the line (``"epoch"``, ``"draw"``).
    value: what the reported scalar is called (``"loss"``, ``"log density"``).

  Returns:
    None when :func:`enabled` is False (insert nothing); else a function of
    the 0-based iteration ``i`` (int32 scalar) and a scalar ``loss`` that adds
    an unordered ``jax.debug.callback`` to the traced program.
  """
  if not enabled():
    return None
  bar = _Bar(label, total, min_interval, stream or sys.stderr, unit, value)
  # A host round trip costs ~0.5-3 ms here; calling back on at most ~50
  # iterations (and the last) bounds the cost per loop whatever its length.
  stride = max(1, int(total) // max_calls)

  def call(i, loss):
    jax.debug.callback(bar, i, loss)

  def report(i, loss):
    if stride == 1:
      call(i, loss)
    else:
      due = jnp.logical_or(i % stride == 0, i == total - 1)
      jax.lax.cond(due, call, lambda *_: None, i, loss)

  return report


@contextlib.contextmanager
def phase(name: str, stream=None):
  """Prints ``name: done in 12.3s`` when the block ends (to stderr).

  Yields a dict; entries put into it are appended to the line
  (``{"rmse": 0.51}`` -> ``name: done in 12.3s (rmse 0.51)``).
  """
  stream = stream or sys.stderr
  extra: dict = {}
  t0 = time.perf_counter()
  yield extra
  parts = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in extra.items())
  stream.write(f"{name}: done in {format_seconds(time.perf_counter() - t0)}"
               + (f" ({parts})" if parts else "") + "\n")
  stream.flush()
