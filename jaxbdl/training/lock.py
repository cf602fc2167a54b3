"""The directory lock: one writer per checkpoint directory.

:func:`workdir_lock` holds an exclusive ``fcntl.flock`` on ``directory/LOCK``
for the duration of a resumable fit (:mod:`jaxbdl.training.resume`); a second
writer raises :class:`WorkdirLockedError` naming the holder's pid.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from typing import Iterator, Optional

import jax

__all__ = ["WorkdirLockedError", "workdir_lock"]

_LOCK = "LOCK"


class WorkdirLockedError(RuntimeError):
  """Another live process holds the directory's lock (``holder``: its pid)."""

  def __init__(self, message: str, *, holder: Optional[int]):
    super().__init__(message)
    self.holder = holder


def _lock_name() -> str:
  i = jax.process_index()
  return _LOCK if i == 0 else f"{_LOCK}.p{i}"


@contextlib.contextmanager
def workdir_lock(directory: str) -> Iterator[str]:
  """Holds an exclusive advisory lock (``fcntl.flock``) on ``directory``.

  The lock file is ``directory/LOCK`` (``LOCK.p<i>`` for process ``i > 0``
  of a multi-process run, so the processes of one run do not exclude each
  other) and holds the holder's pid. The kernel drops the lock when the
  holder exits, however it dies (SIGKILL included), so no stale lock needs
  cleaning. Locks are per open file: a second ``workdir_lock`` on the same
  directory fails even inside the same process.

  Yields:
    the lock file's path.

  Raises:
    WorkdirLockedError: another holder; the message names its pid.
  """
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, _lock_name())
  fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
      holder = int(text) if text.isdigit() else None
      raise WorkdirLockedError(
          f"{directory} is in use by another process (pid "
          f"{holder if holder is not None else 'unknown'}, lock file {path}); "
          "wait for it to finish or stop it, or use another directory",
          holder=holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield path
  finally:
    os.close(fd)  # Releases the flock.
