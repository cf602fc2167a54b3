"""Transfer learning: re-use a pre-trained network's features for new classes.

The three standard ways to re-purpose a network trained on a source task
(Yosinski et al. 2014, "How transferable are features in deep neural
networks?"; Donahue et al. 2014, DeCAF):

* **frozen features + new head**: keep every parameter except the output layer
  fixed and train a fresh head (a linear classifier on the frozen embedding).
  :func:`frozen_optimizer` does this inside one ordinary train step by giving
  the frozen parameters a zero update (``optax.multi_transform`` with
  ``optax.set_to_zero``), so the network code is unchanged.
* **fine-tuning**: start from the pre-trained parameters (with a new head,
  :func:`replace_head`) and train everything.
* **from scratch**: random initialisation (the baseline).

Few-shot data: :func:`few_shot_subset` draws ``k`` labelled examples per class
as a pure function of a key (vmappable over seeds); :func:`tile_examples`
repeats a small set to a fixed size so that runs with different ``k`` share
one array shape (and so one ``vmap``/compilation) without changing the
full-batch mean loss.

Parameters are nested dicts as returned by Flax Linen ``init(...)["params"]``;
the head is the top-level entry ``"head"`` (as in :class:`jaxbdl.networks.CNN`).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any


def _check_mapping(params: PyTree) -> None:
  if not isinstance(params, Mapping):
    raise ValueError("params must be a mapping of top-level module names "
                     f"(Flax 'params' collection), got {type(params).__name__}")


def replace_head(params: Mapping[str, PyTree], new_head_params: PyTree,
                 head: str = "head") -> dict:
  """Returns a copy of ``params`` with ``params[head]`` replaced.

  Args:
    params: pre-trained parameters, e.g. ``{"convs_0": ..., "dense": ...,
      "head": {"kernel": [H, C_old], "bias": [C_old]}}``.
    new_head_params: the new head's parameters (may have a different number
      of classes, e.g. ``kernel [H, C_new]``).
    head: the top-level name of the output layer.

  Raises:
    ValueError: ``params`` has no entry ``head``.
  """
  _check_mapping(params)
  if head not in params:
    raise ValueError(f"params have no head {head!r}; top-level names: "
                     f"{sorted(params)}")
  out = dict(params)
  out[head] = new_head_params
  return out


def freeze_mask(params: Mapping[str, PyTree],
                trainable: Sequence[str] = ("head",)) -> dict:
  """Boolean pytree like ``params``: True where a leaf is trainable.

  A leaf is trainable when its top-level module name is in ``trainable``.

  Raises:
    ValueError: a name in ``trainable`` is not a top-level entry of ``params``.
  """
  _check_mapping(params)
  if isinstance(trainable, str):
    trainable = (trainable,)
  unknown = [t for t in trainable if t not in params]
  if unknown:
    raise ValueError(f"trainable names {unknown} are not in params; top-level "
                     f"names: {sorted(params)}")
  return {name: jax.tree_util.tree_map(lambda _, t=(name in trainable): t, sub)
          for name, sub in params.items()}


def frozen_optimizer(optimizer: optax.GradientTransformation,
                     params: Mapping[str, PyTree],
                     trainable: Sequence[str] = ("head",)
                     ) -> optax.GradientTransformation:
  """``optimizer`` on the ``trainable`` parameters, zero updates elsewhere.

  Uses ``optax.multi_transform`` with labels ``"trainable"`` / ``"frozen"``;
  the frozen branch is ``optax.set_to_zero()`` and keeps no optimiser state.

  Args:
    optimizer: e.g. ``optax.adam(1e-3)``.
    params: a parameter tree of the shape that will be optimised (only its
      structure is used).
    trainable: top-level names to train (default: the head only).
  """
  mask = freeze_mask(params, trainable)
  labels = jax.tree_util.tree_map(lambda t: "trainable" if t else "frozen",
                                  mask)
  return optax.multi_transform(
      {"trainable": optimizer, "frozen": optax.set_to_zero()}, labels)


def select_classes(x: Any, y: Any, classes: Sequence[int]
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Keeps the examples of ``classes`` and relabels them ``0..C-1``.

  Boundary helper (numpy, outside jit), e.g. digits 0-4 for pre-training and
  5-9 as the target task.

  Args:
    x: ``[N, ...]`` inputs.
    y: ``[N]`` integer labels.
    classes: the ``C`` distinct labels to keep; class ``classes[j]`` becomes
      label ``j``.

  Returns:
    ``(x_sel [M, ...], y_sel [M])`` with ``y_sel`` int32 in ``0..C-1``.
  """
  x, y = np.asarray(x), np.asarray(y)
  classes = _check_classes(classes)
  if x.shape[:1] != y.shape or y.ndim != 1:
    raise ValueError(f"x must be [N, ...] and y [N], got {x.shape} and {y.shape}")
  keep = np.isin(y, classes)
  if not keep.any():
    raise ValueError(f"no example has a label in {list(classes)}")
  lookup = {c: j for j, c in enumerate(classes)}
  y_new = np.array([lookup[int(v)] for v in y[keep]], np.int32)
  return x[keep], y_new


def _check_classes(classes: Sequence[int]) -> tuple[int, ...]:
  classes = tuple(int(c) for c in classes)
  if not classes:
    raise ValueError("classes must be non-empty")
  if len(set(classes)) != len(classes):
    raise ValueError(f"classes must be distinct, got {list(classes)}")
  return classes


def few_shot_subset(key: jax.Array, x: jax.Array, y: jax.Array,
                    classes: Sequence[int], k: int
                    ) -> tuple[jax.Array, jax.Array]:
  """Draws ``k`` examples of each class without replacement.

  Pure in ``key`` (jittable with static ``classes`` and ``k``; vmap over
  keys for seeds). The output is class-major: the first ``k`` examples are of
  ``classes[0]``, and so on.

  Args:
    key: a JAX PRNG key.
    x: ``[N, ...]`` inputs.
    y: ``[N]`` integer labels.
    classes: the ``C`` labels to draw from (static).
    k: examples per class (static, >= 1).

  Returns:
    ``(x_few [C * k, ...], y_few [C * k])`` with ``y_few[i]`` the position of
    the original label in ``classes`` (int32 in ``0..C-1``).

  Raises:
    ValueError: ``k < 1``, or (when ``y`` is concrete) a class has fewer than
      ``k`` examples.
  """
  classes = _check_classes(classes)
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k (examples per class) must be a positive int, got {k!r}")
  if jnp.ndim(y) != 1 or jnp.shape(x)[:1] != jnp.shape(y):
    raise ValueError(f"x must be [N, ...] and y [N], got {jnp.shape(x)} and "
                     f"{jnp.shape(y)}")
  if not isinstance(y, jax.core.Tracer):
    counts = {c: int(np.sum(np.asarray(y) == c)) for c in classes}
    short = {c: n for c, n in counts.items() if n < k}
    if short:
      raise ValueError(f"classes {short} (label: count) have fewer than k={k} "
                       "examples")
  y = jnp.asarray(y)
  scores = jax.random.uniform(key, (len(classes), y.shape[0]))
  is_class = y[None, :] == jnp.asarray(classes, y.dtype)[:, None]  # [C, N]
  # Random order within each class; other classes sort last (score 2 > 1).
  scores = jnp.where(is_class, scores, 2.0)
  _, idx = jax.lax.top_k(-scores, k)  # [C, k]: the k smallest scores.
  idx = idx.reshape(-1)
  labels = jnp.repeat(jnp.arange(len(classes), dtype=jnp.int32), k)
  return jnp.take(jnp.asarray(x), idx, axis=0), labels


def tile_examples(data: PyTree, size: int) -> PyTree:
  """Repeats every array's leading axis ``size / N`` times.

  Each example appears equally often, so the full-batch mean loss (and its
  gradient) is unchanged; this lets ``k``-shot sets of different ``k`` share
  one shape, e.g. ``k = 1, 5, 10, 50`` with ``C = 5`` all tiled to 250.

  Args:
    data: pytree of arrays ``[N, ...]``.
    size: target leading size, a multiple of ``N``.

  Raises:
    ValueError: ``size`` is not a positive multiple of ``N``.
  """
  leaves = jax.tree_util.tree_leaves(data)
  sizes = {jnp.shape(a)[0] for a in leaves}
  if len(sizes) != 1:
    raise ValueError(f"arrays need one leading size, got {sorted(sizes)}")
  n = sizes.pop()
  if size < n or size % n:
    raise ValueError(f"size {size} is not a positive multiple of the number "
                     f"of examples {n}")
  reps = size // n
  return jax.tree_util.tree_map(
      lambda a: jnp.tile(a, (reps,) + (1,) * (jnp.ndim(a) - 1)), data)
