"""Training curves as TensorBoard event files, beside ``results.json``.

``results.json`` holds the numbers a study reports; the curves behind them
(loss per epoch, ELBO terms, validation metrics, gradient variances) go to
TensorBoard event files in the same ``--workdir``, so ``tensorboard --logdir
W`` shows every run of every study. Each run is a sub-folder (``W/<run>``,
e.g. one per method), which TensorBoard lists as a separate run.

The writer is tensorboardX's ``SummaryWriter``: maintained, pure Python
(numpy + protobuf, which orbax already needs), and it writes the standard
event format without TensorFlow or PyTorch. (CLU's ``metric_writers``, used
by the flax examples, needs TensorFlow for its summary writer.)

  with metric_writers.open_run(workdir, "mfvi") as w:
    w.write_history(history)                 # {"loss": [E], ...}
    w.write_scalars(0, {"test/rmse": 0.52})

:func:`read_scalars` parses an event file back (TFRecord framing + the
``Event`` protobuf), e.g. for tests, without TensorBoard or TensorFlow.
"""
from __future__ import annotations

import contextlib
import glob
import os
import struct
from typing import Mapping, Optional

import numpy as np

__all__ = ["RunWriter", "open_run", "read_scalars", "event_files"]


class RunWriter:
  """Writes scalars of one run to ``logdir`` (a TensorBoard run folder)."""

  def __init__(self, logdir: str):
    from tensorboardX import SummaryWriter  # imported on use: optional cost
    os.makedirs(logdir, exist_ok=True)
    self.logdir = logdir
    self._writer = SummaryWriter(logdir=logdir, flush_secs=30)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """One point per tag at ``step``; non-finite values are skipped."""
    for tag, value in scalars.items():
      v = float(np.asarray(value, np.float64).mean())
      if np.isfinite(v):
        self._writer.add_scalar(tag, v, int(step))

  def write_history(self, history: Mapping[str, object], prefix: str = "",
                    first_step: int = 1) -> int:
    """Writes per-epoch curves ``{name: [E]}`` (or ``[K, E]``: mean over K).

    Epoch ``e`` (0-based) is written at step ``first_step + e`` (1-based
    epochs by default, as tables print them). Scalars (e.g. ``best_epoch``)
    and NaN entries (epochs after early stopping) are skipped.

    Returns:
      the number of points written.
    """
    count = 0
    for name, values in history.items():
      a = np.asarray(values, np.float64)
      if a.ndim == 0:
        continue
      curve = a.reshape(-1, a.shape[-1]).mean(axis=0)
      for e, v in enumerate(curve):
        if np.isfinite(v):
          self._writer.add_scalar(prefix + name, float(v), first_step + e)
          count += 1
    return count

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


@contextlib.contextmanager
def open_run(workdir: str, run: Optional[str] = None):
  """``RunWriter`` for ``workdir/run`` (or ``workdir``), closed on exit."""
  writer = RunWriter(os.path.join(workdir, run) if run else workdir)
  try:
    yield writer
  finally:
    writer.close()


def event_files(logdir: str) -> list[str]:
  """The event files directly in ``logdir``, oldest first."""
  return sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """``{tag: [(step, value), ...]}`` from every event file in ``logdir``.

  Raises:
    FileNotFoundError: no event file in ``logdir``.
    ValueError: a truncated record.
  """
  from tensorboardX.proto import event_pb2
  files = event_files(logdir)
  if not files:
    raise FileNotFoundError(f"no events.out.tfevents.* file in {logdir}")
  out: dict[str, list[tuple[int, float]]] = {}
  for path in files:
    with open(path, "rb") as f:
      buf = f.read()
    pos = 0
    while pos < len(buf):
      # TFRecord: uint64 length, uint32 crc(length), data, uint32 crc(data).
      if pos + 12 > len(buf):
        raise ValueError(f"{path}: truncated record header at byte {pos}")
      (length,) = struct.unpack("<Q", buf[pos:pos + 8])
      start, end = pos + 12, pos + 12 + length
      if end + 4 > len(buf):
        raise ValueError(f"{path}: truncated record at byte {pos}")
      event = event_pb2.Event.FromString(buf[start:end])
      pos = end + 4
      for value in event.summary.value:
        if value.HasField("simple_value"):
          out.setdefault(value.tag, []).append(
              (int(event.step), float(value.simple_value)))
  return out
