"""Multi-host (multi-process) JAX: initialisation from flags and per-host data.

One process runs per host (or per GPU); every process runs the same program.
After :func:`initialize`, ``jax.devices()`` lists the devices of ALL processes,
so the meshes of :mod:`jaxbdl.training.parallel` span the whole cluster, while
``jax.local_devices()`` lists this process's devices. Each process reads only
its share of the data (:func:`host_shard`) and :func:`global_array` stitches
the per-process shards into one global ``jax.Array`` sharded along the mesh's
first axis.

Launch (two hosts, one process each; the same command on both, only
``--process_id`` differs)::

  python -m experiments.train_resumable --workdir /shared/run \\
      --coordinator_address host0:12345 --num_processes 2 --process_id 0
  python -m experiments.train_resumable --workdir /shared/run \\
      --coordinator_address host0:12345 --num_processes 2 --process_id 1

On CPUs the processes talk through gloo (:func:`initialize` sets
``jax_cpu_collectives_implementation``), so two processes on one machine
(``--coordinator_address 127.0.0.1:PORT``) run the same program as two hosts
would; ``tests/multihost_test.py`` does exactly that. Every process must make
the same JAX calls in the same order: :func:`to_host` (a global array as
numpy on every process), :func:`barrier` and :func:`any_process` are
collectives when there are several processes.

With ``--num_processes 1`` (the default) nothing is initialised and the
program is the ordinary single-process one. On managed clusters (SLURM,
Cloud TPU, Kubernetes) ``jax.distributed.initialize()`` can detect all three
values itself; pass ``coordinator_address=None`` and ``num_processes=None``
for that.

References:
  JAX documentation, "Multi-process environments" and "Distributed data
  loading".
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["initialize", "host_shard", "global_array", "is_chief", "to_host",
           "barrier", "any_process"]

PyTree = Any


def _check_process(num_processes: Optional[int],
                   process_id: Optional[int]) -> None:
  if num_processes is None:
    return
  if isinstance(num_processes, bool) or int(num_processes) != num_processes \
      or num_processes < 1:
    raise ValueError(
        f"num_processes must be an int >= 1, got {num_processes!r}")
  if num_processes > 1:
    if process_id is None:
      raise ValueError("process_id is required when num_processes > 1")
    if not 0 <= int(process_id) < num_processes:
      raise ValueError(f"process_id must be in [0, {num_processes}), got "
                       f"{process_id!r}")


def initialize(coordinator_address: Optional[str],
               num_processes: Optional[int] = 1,
               process_id: Optional[int] = 0, *,
               cpu_collectives: Optional[str] = "gloo", **kwargs) -> bool:
  """Initialises multi-process JAX; a no-op for a single process.

  Call once, at the start of ``main()``, before any other JAX call. Arguments
  map one-to-one to absl flags (``--coordinator_address``,
  ``--num_processes``, ``--process_id``).

  Args:
    coordinator_address: ``"host:port"`` of process 0; ``None`` (with
      ``num_processes=None``) lets JAX detect the cluster (SLURM, TPU, ...).
    num_processes: total number of processes; 1 means single-process (nothing
      happens); ``None`` means auto-detect.
    process_id: this process's index in ``[0, num_processes)``.
    cpu_collectives: ``jax_cpu_collectives_implementation`` set before the
      initialisation (``"gloo"``: cross-process collectives between CPU
      devices, needed to train on CPUs of several processes; ``None`` keeps
      JAX's default, under which a CPU computation spanning processes fails).
      Only the CPU backend reads it.
    **kwargs: passed on to ``jax.distributed.initialize`` (e.g.
      ``local_device_ids``, ``initialization_timeout``).

  Returns:
    True if ``jax.distributed.initialize`` was called.

  Raises:
    ValueError: inconsistent arguments (e.g. ``num_processes > 1`` without a
      ``coordinator_address`` or with ``process_id`` out of range).
  """
  _check_process(num_processes, process_id)
  if num_processes == 1:
    return False
  if num_processes is not None and not coordinator_address:
    raise ValueError("coordinator_address ('host:port' of process 0) is "
                     f"required when num_processes = {num_processes}")
  if cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(coordinator_address=coordinator_address or None,
                             num_processes=num_processes,
                             process_id=process_id, **kwargs)
  return True


def host_shard(data: PyTree, process_index: Optional[int] = None,
               process_count: Optional[int] = None) -> PyTree:
  """This process's contiguous slice of every leaf's leading axis.

  Process ``i`` of ``P`` gets rows ``[i * N / P, (i + 1) * N / P)``; ``N`` must
  be a multiple of ``P`` so that all processes hold equally many examples
  (drop or pad the remainder first).

  Args:
    data: pytree of arrays ``[N, ...]``.
    process_index: defaults to ``jax.process_index()``.
    process_count: defaults to ``jax.process_count()``.

  Returns:
    pytree of numpy arrays ``[N / P, ...]``.

  Raises:
    ValueError: bad process numbers, a scalar leaf, unequal leading sizes or
      ``N`` not a multiple of ``P`` (named).
  """
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if isinstance(count, bool) or int(count) != count or count < 1:
    raise ValueError(f"process_count must be an int >= 1, got {count!r}")
  if not 0 <= index < count:
    raise ValueError(f"process_index must be in [0, {count}), got {index!r}")
  flat, treedef = jax.tree_util.tree_flatten_with_path(data)
  if not flat:
    raise ValueError("host_shard got no arrays")
  sizes = {}
  for path, leaf in flat:
    shape = np.shape(leaf)
    if not shape:
      raise ValueError(f"data{jax.tree_util.keystr(path)} is a scalar; "
                       "host_shard needs a leading example axis")
    sizes[jax.tree_util.keystr(path)] = shape[0]
  if len(set(sizes.values())) != 1:
    raise ValueError(f"host_shard: leading sizes differ: {sizes}")
  n = next(iter(sizes.values()))
  if n % count:
    raise ValueError(f"host_shard: {n} examples is not a multiple of "
                     f"{count} processes; drop or pad {n % count} examples")
  per = n // count
  sl = slice(index * per, (index + 1) * per)
  return jax.tree_util.tree_unflatten(
      treedef, [np.asarray(leaf)[sl] for _, leaf in flat])


def global_array(local_data: PyTree, mesh: Mesh) -> PyTree:
  """Builds global arrays sharded along ``mesh``'s first axis from host shards.

  Each process passes its own :func:`host_shard`; the result has leading size
  ``P * N_local`` and lives on all devices of ``mesh`` (on one process this is
  ``jax.device_put`` with the same sharding).
  """
  sharding = NamedSharding(mesh, P(mesh.axis_names[0]))
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_data)


def is_chief() -> bool:
  """True on process 0 (the one that writes results files and logs)."""
  return jax.process_index() == 0


def _leaf_to_host(x):
  if not isinstance(x, jax.Array):
    return np.asarray(x)
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return _leaf_to_host(jax.random.key_data(x))
  if x.is_fully_addressable:
    return np.asarray(x)
  if x.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def to_host(tree: PyTree) -> PyTree:
  """Every leaf as a numpy array holding its GLOBAL value, on every process.

  Typed PRNG keys come back as their key data (``[..., 2]`` uint32).

  A collective when some leaf is sharded across processes (then every process
  must call it, in the same order); a plain copy otherwise.
  """
  return jax.tree_util.tree_map(_leaf_to_host, tree)


def barrier(name: str) -> None:
  """Waits until every process reaches ``barrier(name)`` (no-op for one)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
  """True if ``flag`` is True on any process (a collective for several)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  flags = multihost_utils.process_allgather(np.asarray([bool(flag)], np.int32))
  return bool(np.any(np.asarray(flags)))
