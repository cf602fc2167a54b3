"""Scaling past one device: data-parallel steps and sharded run axes (SPMD).

Two ways to use several devices with the one training loop of
:mod:`jaxbdl.training.train`, both built from JAX's own SPMD machinery
(``jax.sharding.Mesh``, ``NamedSharding``, ``PartitionSpec``, ``jax.jit``):

* ``"data"`` -- **data parallelism**. A 1-D mesh with axis ``"data"`` over all
  devices; parameters, optimiser state and the (small) training set are
  replicated, and every minibatch ``[B, ...]`` is sharded along ``"data"``, so
  each device computes the loss and gradient of ``B / num_devices`` examples
  and XLA inserts the all-reduce of the gradient. The batch sharding enters
  through a loss combinator, :func:`shard_batch_loss`, so ``make_train_step``,
  ``make_epoch`` and ``make_fitter`` are used unchanged.
* ``"runs"`` -- **run parallelism**. The leading axis of a ``jax.vmap``-ed fit
  (seeds, ensemble members, hyper-parameters, data splits) is sharded along a
  mesh axis ``"runs"``; each device trains ``R / num_devices`` whole runs and
  no communication is needed inside the step.
* ``"none"`` (default) -- no mesh, no placement: the single-device code path is
  exactly the one of :mod:`jaxbdl.training.train`.

:func:`make_strategy` returns a :class:`Strategy`: a NamedTuple of pure
placement functions (``loss``, ``state``, ``shared``, ``per_run``) that the
caller applies before ``jax.jit``; jit then compiles one SPMD program for the
placed inputs. :func:`jit_data_parallel_step` additionally jits a single step
with explicit ``in_shardings`` / ``out_shardings``.

Multi-host: the meshes span ``jax.devices()`` (all devices of all processes
after :func:`jaxbdl.training.distributed.initialize`); on one host these are the local
devices. Placement (:func:`place`) then builds global arrays from the value
every process holds (``jax.make_array_from_callback``: each process fills
only its own devices' shards), and ``"none"`` with several processes becomes
a replicated layout over all devices (every process computes the whole fit;
the arrays are global, so orbax can checkpoint them). See
:mod:`jaxbdl.training.distributed` for the launch and per-host data.

References:
  Xu et al. (2021), GSPMD: General and scalable parallelization for ML
    computation graphs (the partitioner behind ``jax.jit`` shardings).
  JAX documentation, "Distributed arrays and automatic parallelization".
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = [
    "STRATEGIES", "DATA_AXIS", "RUNS_AXIS", "Strategy", "make_strategy",
    "make_mesh", "place", "replicated", "leading_axis_sharding", "replicate",
    "shard_leading_axis", "shard_batch_loss", "jit_data_parallel_step",
    "vmap_fitter", "per_device_bytes",
]

PyTree = Any
STRATEGIES = ("none", "data", "runs")
DATA_AXIS = "data"
RUNS_AXIS = "runs"


def _check_strategy(name: str) -> str:
  if name not in STRATEGIES:
    raise ValueError(f"unknown parallel strategy {name!r}; expected one of "
                     f"{list(STRATEGIES)}")
  return name


def make_mesh(axis_name: str,
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh named ``axis_name`` over ``devices`` (default: all devices).

  Raises:
    ValueError: ``devices`` is empty or ``axis_name`` is empty.
  """
  if not axis_name:
    raise ValueError("mesh axis_name must be a non-empty string")
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("make_mesh needs at least one device")
  return Mesh(np.array(devices), (axis_name,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device of ``mesh``."""
  return NamedSharding(mesh, P())


def leading_axis_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding that splits axis 0 over the (single) axis of ``mesh``."""
  return NamedSharding(mesh, P(mesh.axis_names[0]))


def _place_leaf(x, sharding):
  if all(d.process_index == jax.process_index()
         for d in sharding.device_set):
    return jax.device_put(x, sharding)
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key):
    impl = jax.random.key_impl(x)
    data = _place_leaf(jax.random.key_data(x), sharding)
    return jax.random.wrap_key_data(data, impl=impl)
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if x.sharding == sharding:
      return x
    raise ValueError(f"cannot re-place a global array sharded as "
                     f"{x.sharding} to {sharding}; pass the host value")
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding,
                                      lambda index: host[index])


def place(tree: PyTree, sharding: jax.sharding.Sharding) -> PyTree:
  """Every leaf of ``tree`` laid out with ``sharding``.

  ``jax.device_put`` when all devices of ``sharding`` belong to this process;
  across processes a global array built from this process's value of each
  leaf (every process must hold, and pass, the same full value; typed PRNG
  keys are placed through their key data).
  """
  return jax.tree_util.tree_map(lambda x: _place_leaf(x, sharding), tree)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """Places every leaf of ``tree`` on every device of ``mesh``."""
  return place(tree, replicated(mesh))


def shard_leading_axis(tree: PyTree, mesh: Mesh, what: str = "tree") -> PyTree:
  """Splits axis 0 of every leaf over the devices of the 1-D ``mesh``.

  Args:
    tree: pytree of arrays ``[R, ...]``.
    mesh: 1-D mesh with ``M`` devices; ``R`` must be a multiple of ``M``.
    what: name used in error messages.

  Raises:
    ValueError: a leaf is a scalar or its leading size is not a multiple of
      the number of devices (the leaf's path and shape are named).
  """
  m = mesh.devices.size
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  for path, leaf in flat:
    shape = np.shape(leaf)
    if not shape or shape[0] % m:
      raise ValueError(
          f"{what}{jax.tree_util.keystr(path)} has shape {list(shape)}: its "
          f"leading axis must be a multiple of the {m} devices of mesh axis "
          f"{mesh.axis_names[0]!r}")
  return place(tree, leading_axis_sharding(mesh))


def shard_batch_loss(loss_fn: Callable, mesh: Mesh) -> Callable:
  """Loss combinator for data parallelism: shards each minibatch over ``mesh``.

  ``shard_batch_loss(loss_fn, mesh)(params, model_state, batch, key)`` is
  ``loss_fn`` evaluated on ``batch`` constrained to ``P("data")`` along its
  leading (example) axis, so the per-example work and the gradient's sum over
  examples are split across devices. Mathematically the loss is unchanged; the
  floating-point summation order may differ. The batch size must be a multiple
  of the number of devices (checked at trace time).
  """
  axis = mesh.axis_names[0]
  m = mesh.devices.size
  sharding = NamedSharding(mesh, P(axis))

  def loss(params, model_state, batch, key):
    for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
      if leaf.ndim == 0 or leaf.shape[0] % m:
        raise ValueError(f"batch{jax.tree_util.keystr(path)} has shape "
                         f"{list(leaf.shape)}: the batch size must be a "
                         f"multiple of the {m} devices for data parallelism")
    batch = jax.lax.with_sharding_constraint(batch, sharding)
    return loss_fn(params, model_state, batch, key)

  return loss


def jit_data_parallel_step(step_fn: Callable, mesh: Mesh, *,
                           donate_state: bool = False) -> Callable:
  """Jits ``step(state, batch, key)`` with data-parallel shardings.

  ``in_shardings = (replicated, P("data"), replicated)`` and
  ``out_shardings = (replicated, replicated)``: the state (parameters,
  optimiser state) is replicated, the batch ``[B, ...]`` is split over the
  devices. Build ``step_fn`` from :func:`shard_batch_loss` (or not: the
  ``in_shardings`` already shard the batch's inputs).
  """
  rep = replicated(mesh)
  data = NamedSharding(mesh, P(mesh.axis_names[0]))
  return jax.jit(step_fn, in_shardings=(rep, data, rep),
                 out_shardings=(rep, rep),
                 donate_argnums=(0,) if donate_state else ())


class Strategy(NamedTuple):
  """How a fit is laid out on devices; pure placement functions.

  Attributes:
    name: one of :data:`STRATEGIES`.
    mesh: the 1-D mesh (``None`` for ``"none"``).
    loss: loss combinator, ``loss(loss_fn) -> loss_fn`` (batch sharding for
      ``"data"``; identity otherwise).
    state: places a (possibly run-stacked) train/fit state: replicated for
      ``"data"``, leading (run) axis sharded for ``"runs"``.
    shared: places arrays common to all runs (e.g. the training set):
      replicated on every device.
    per_run: places arrays with a leading run axis ``[R, ...]`` (keys, stacked
      splits): replicated for ``"data"``, sharded for ``"runs"``.
  """
  name: str
  mesh: Optional[Mesh]
  loss: Callable[[Callable], Callable]
  state: Callable[[PyTree], PyTree]
  shared: Callable[[PyTree], PyTree]
  per_run: Callable[[PyTree], PyTree]

  @property
  def num_devices(self) -> int:
    return 1 if self.mesh is None else int(self.mesh.devices.size)


def make_strategy(name: str = "none",
                  devices: Optional[Sequence[jax.Device]] = None) -> Strategy:
  """Builds the :class:`Strategy` ``"none"``, ``"data"`` or ``"runs"``.

  Args:
    name: the strategy; ``"none"`` leaves everything to JAX's defaults on one
      process; with several processes (:func:`jax.process_count` > 1) it
      replicates everything over all devices (redundant computation, the
      same numbers as one process).
    devices: devices of the mesh (default ``jax.devices()``).

  Raises:
    ValueError: unknown ``name``.
  """
  _check_strategy(name)
  identity = lambda x: x
  if name == "none" and jax.process_count() == 1:
    return Strategy(name, None, identity, identity, identity, identity)
  if name == "none":
    mesh = make_mesh(DATA_AXIS, devices)
    rep = lambda tree: replicate(tree, mesh)
    return Strategy(name, mesh, identity, rep, rep, rep)
  if name == "data":
    mesh = make_mesh(DATA_AXIS, devices)
    rep = lambda tree: replicate(tree, mesh)
    return Strategy(name, mesh, lambda f: shard_batch_loss(f, mesh), rep, rep,
                    rep)
  mesh = make_mesh(RUNS_AXIS, devices)
  return Strategy(
      name, mesh, identity,
      lambda tree: shard_leading_axis(tree, mesh, "state"),
      lambda tree: replicate(tree, mesh),
      lambda tree: shard_leading_axis(tree, mesh, "per-run array"))


def vmap_fitter(fitter, *, data_axis: Optional[int] = None):
  """Maps a :class:`jaxbdl.training.train.Fitter` over a leading run axis ``[R]``.

  The returned fitter has the same three functions, taking and returning fit
  states stacked along axis 0 and a stacked key ``[R]``. ``data_axis=None``
  shares the training/validation data between runs (seeds, members);
  ``data_axis=0`` gives each run its own data ``[R, N, ...]`` (splits).
  """
  from jaxbdl.training import train  # Local import: train does not depend on parallel.

  def run_epochs(fit_state, train_data, key, valid_data=None, *, num_epochs):
    one = lambda fs, td, k, vd: fitter.run_epochs(fs, td, k, vd,
                                                  num_epochs=num_epochs)
    return jax.vmap(one, in_axes=(0, data_axis, 0, data_axis))(
        fit_state, train_data, key, valid_data)

  return train.Fitter(jax.vmap(fitter.init), run_epochs,
                      jax.vmap(fitter.result))


def per_device_bytes(tree: PyTree) -> int:
  """Bytes of ``tree`` held on the first device (its shards, not the total)."""
  total = 0
  for leaf in jax.tree_util.tree_leaves(tree):
    if isinstance(leaf, jax.Array):
      first = min(leaf.sharding.device_set, key=lambda d: d.id)
      for shard in leaf.addressable_shards:
        if shard.device == first:
          total += shard.data.nbytes
    else:
      total += np.asarray(leaf).nbytes
  return int(total)
