"""Preemption: SIGTERM/SIGINT stop a resumable fit after its current chunk.

While :func:`catch_signals` is active a signal only records itself; the fit
(:mod:`jaxbdl.training.resume`) finishes the chunk in flight, checkpoints it
and raises ``resume.Preempted`` (exit code :data:`PREEMPTED_EXIT_CODE`); the
same command then resumes bitwise. With several processes a signal to any
one stops all of them after the same chunk.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

from absl import logging

__all__ = ["PREEMPTED_EXIT_CODE", "catch_signals"]

# os.EX_TEMPFAIL: "temporary failure, the user is invited to retry" -- a
# preempted run exits with it; the same command resumes.
PREEMPTED_EXIT_CODE = 75


@contextlib.contextmanager
def catch_signals(enabled: bool) -> Iterator[dict]:
  """While active, SIGTERM/SIGINT only set ``caught["signum"]`` (a second
  one gets the previous handler: the default kill / KeyboardInterrupt)."""
  caught = {"signum": None}
  if not enabled or threading.current_thread() is not threading.main_thread():
    yield caught
    return
  previous = {}

  def handler(signum, frame):
    del frame
    if caught["signum"] is not None:
      signal.signal(signum, previous.get(signum, signal.SIG_DFL))
      os.kill(os.getpid(), signum)
      return
    caught["signum"] = signum
    logging.warning("Received %s: finishing the current chunk, then "
                    "checkpointing and stopping", signal.Signals(signum).name)

  for signum in (signal.SIGTERM, signal.SIGINT):
    previous[signum] = signal.signal(signum, handler)
  try:
    yield caught
  finally:
    for signum, old in previous.items():
      signal.signal(signum, old)
