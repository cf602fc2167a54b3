"""Transfer learning: re-use a pre-trained network's features for new classes.

The three standard ways to re-purpose a network trained on a source task
(Yosinski et al. 2014, "How transferable are features in deep neural
networks?"; Donahue et al. 2014, DeCAF):

* **frozen features + new head**: keep the layers below a cut fixed and train
  fresh layers from the cut up (:func:`layers_from` names them,
  :func:`reinit` swaps in their fresh parameters). Cutting at the output layer
  gives a linear classifier on the penultimate embedding; cutting lower gives
  a new MLP head on more generic features (the higher the layer, the more it
  is specialised to the source classes: Yosinski et al. 2014).
  :func:`frozen_optimizer` does this inside one ordinary train step by giving
  the frozen parameters a zero update (``optax.multi_transform`` with
  ``optax.set_to_zero``), so the network code is unchanged;
  :func:`stop_gradient_except` inside the loss also saves computing their
  gradients.
* **fine-tuning**: start from the pre-trained body with new layers from the
  cut up and train everything; :func:`split_optimizer` gives the body its
  own (usually smaller) learning rate (Howard & Ruder 2018, "discriminative
  fine-tuning").
* **from scratch**: random initialisation (the baseline).

Few-shot data: :func:`few_shot_subset` draws ``k`` labelled examples per class
as a pure function of a key (vmappable over seeds); :func:`tile_examples`
repeats a small set to a fixed size so that runs with different ``k`` share
one array shape (and so one ``vmap``/compilation) without changing the
full-batch mean loss.

Parameters are nested dicts as returned by Flax Linen ``init(...)["params"]``;
the head is the top-level entry ``"head"`` (as in :class:`jaxbdl.nn.networks.CNN`,
whose ``layer_names`` lists the top-level entries in forward order).

References:
  Yosinski, Clune, Bengio, Lipson (2014), "How transferable are features in
  deep neural networks?", NeurIPS.
  Howard, Ruder (2018), "Universal language model fine-tuning for text
  classification", ACL, Sec. 3.2.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["replace_head", "layers_from", "reinit", "freeze_mask",
           "stop_gradient_except", "frozen_optimizer", "split_optimizer",
           "select_classes", "few_shot_subset", "tile_examples"]

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


def layers_from(layer_names: Sequence[str], cut: str) -> tuple[str, ...]:
  """The layers at and above ``cut``: ``layer_names[layer_names.index(cut):]``.

  Args:
    layer_names: top-level parameter names in forward order, e.g.
      ``CNN(...).layer_names == ("convs_0", "convs_1", "dense", "head")``.
    cut: the first layer to re-initialise (``"head"``: only the output layer).

  Raises:
    ValueError: ``cut`` is not in ``layer_names``.
  """
  layer_names = tuple(layer_names)
  if cut not in layer_names:
    raise ValueError(f"unknown cut {cut!r}; valid: {list(layer_names)}")
  return layer_names[layer_names.index(cut):]


def reinit(params: Mapping[str, PyTree], fresh_params: Mapping[str, PyTree],
           names: Sequence[str]) -> dict:
  """Returns ``params`` with the top-level entries ``names`` from ``fresh_params``.

  E.g. ``reinit(pretrained, model.init(key, x)["params"],
  layers_from(model.layer_names, "dense"))`` keeps the pre-trained conv layers
  and gives the dense layer and the head a fresh initialisation.

  Raises:
    ValueError: a name is missing from ``params`` or ``fresh_params``.
  """
  _check_mapping(params)
  _check_mapping(fresh_params)
  if isinstance(names, str):
    names = (names,)
  out = dict(params)
  for name in names:
    if name not in fresh_params:
      raise ValueError(f"fresh_params have no {name!r}; top-level names: "
                       f"{sorted(fresh_params)}")
    out = replace_head(out, fresh_params[name], head=name)
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


def stop_gradient_except(params: Mapping[str, PyTree],
                         trainable: Sequence[str] = ("head",)) -> dict:
  """``params`` with ``jax.lax.stop_gradient`` on every entry not in ``trainable``.

  Call it on the parameters inside a loss: the gradient of a frozen layer is
  then exactly zero and XLA does not compute it (with only
  :func:`frozen_optimizer`, the frozen layers' gradients are computed and then
  discarded). The values are unchanged.

  Raises:
    ValueError: a name in ``trainable`` is not a top-level entry of ``params``.
  """
  mask = freeze_mask(params, trainable)
  return jax.tree_util.tree_map(
      lambda p, t: p if t else jax.lax.stop_gradient(p), dict(params), mask)


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


def split_optimizer(new_optimizer: optax.GradientTransformation,
                    body_optimizer: optax.GradientTransformation,
                    params: Mapping[str, PyTree],
                    new: Sequence[str] = ("head",)
                    ) -> optax.GradientTransformation:
  """``new_optimizer`` on the layers ``new``, ``body_optimizer`` on the rest.

  For fine-tuning with a smaller body learning rate, e.g.
  ``split_optimizer(optax.adam(lr), optax.adam(0.1 * lr), params,
  ("dense", "head"))``; :func:`frozen_optimizer` is the case
  ``body_optimizer = optax.set_to_zero()``.

  Args:
    new_optimizer: for the (re-initialised) top layers.
    body_optimizer: for every other top-level entry.
    params: a parameter tree of the shape that will be optimised (only its
      structure is used).
    new: top-level names that get ``new_optimizer``.

  Raises:
    ValueError: a name in ``new`` is not a top-level entry of ``params``.
  """
  mask = freeze_mask(params, new)
  labels = jax.tree_util.tree_map(lambda t: "new" if t else "body", mask)
  return optax.multi_transform({"new": new_optimizer, "body": body_optimizer},
                               labels)


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
