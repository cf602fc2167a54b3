"""Flax Linen networks: MLP, small CNN for 8x8 digits, RNN; activations, initialisers.

A network here is just ``f(params, x)``: ``init(key, x)`` makes the parameters
and ``apply(variables, x, ...)`` is pure (STYLE rule 6), so the same module
serves MAP training, ensembles and variational inference (which resamples the
parameters and calls ``apply``).

Collections used by the modules:

* ``"params"``: trainable weights (always).
* ``"batch_stats"``: running mean/variance of ``nn.BatchNorm`` (MLP with
  ``batch_norm=True``); pass ``mutable=["batch_stats"]`` in training mode.
* ``"intermediates"``: MLP hidden pre-activations/activations, sown only on
  ``apply`` (not on ``init``, so ``init`` returns only ``params`` and
  ``batch_stats``); read them with ``mutable=["intermediates"]``.
* ``"perturbations"``: zero additive perturbations of the MLP pre-activations
  (``nn.Module.perturb``); the gradient of a loss with respect to them is the
  gradient with respect to the pre-activations (the backprop "delta" terms).
  See :func:`zero_perturbations`.
* rng stream ``"dropout"``: needed by ``apply`` with ``train=True`` and
  ``dropout_rate > 0``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["get_activation", "get_initializer", "count_params", "MLP",
           "zero_perturbations", "digit_images", "CNN", "RNN"]

PyTree = Any

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "erf": jax.scipy.special.erf,
    "identity": lambda x: x,
    "linear": lambda x: x,
}

# name -> (variance-scaling factor, fan mode); Var[w] = factor * scale / fan.
_VARIANCE_SCALING: dict[str, tuple[float, str]] = {
    "lecun": (1.0, "fan_in"),
    "glorot": (1.0, "fan_avg"),
    "xavier": (1.0, "fan_avg"),
    "he": (2.0, "fan_in"),
    "kaiming": (2.0, "fan_in"),
}
_INITIALIZERS = ("normal",) + tuple(_VARIANCE_SCALING)


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Returns the element-wise activation called ``name``.

  Args:
    name: one of "relu", "tanh", "sigmoid", "erf", "identity" ("linear" is an
      alias of "identity").

  Raises:
    ValueError: naming the unknown activation and the valid names.
  """
  if name not in _ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; valid names: "
                     f"{sorted(_ACTIVATIONS)}")
  return _ACTIVATIONS[name]


def get_initializer(name: str, scale: float = 1.0) -> nn.initializers.Initializer:
  """Returns a kernel initialiser by name.

  * "normal": ``N(0, scale^2)`` (``scale`` is the standard deviation).
  * "lecun": ``Var[w] = scale / fan_in`` (LeCun et al., 1998; ``lecun_normal``).
  * "glorot" (alias "xavier"): ``Var[w] = scale * 2 / (fan_in + fan_out)``
    (Glorot & Bengio, 2010; ``glorot_normal``).
  * "he" (alias "kaiming"): ``Var[w] = scale * 2 / fan_in`` (He et al., 2015;
    ``he_normal``).

  For the variance-scaling initialisers ``scale`` MULTIPLIES the variance
  factor (``scale=1`` gives the textbook initialiser). They draw from a
  truncated normal (at 2 standard deviations) rescaled so that the variance is
  exactly the stated one, as ``jax.nn.initializers.variance_scaling`` does.

  Raises:
    ValueError: for an unknown name or a non-positive ``scale``.
  """
  if name not in _INITIALIZERS:
    raise ValueError(f"unknown initializer {name!r}; valid names: "
                     f"{list(_INITIALIZERS)}")
  if not scale > 0:
    raise ValueError(f"initializer scale must be > 0, got {scale!r}")
  if name == "normal":
    return nn.initializers.normal(stddev=scale)
  factor, mode = _VARIANCE_SCALING[name]
  return nn.initializers.variance_scaling(factor * scale, mode, "truncated_normal")


def _as_matrix_init(init: nn.initializers.Initializer) -> nn.initializers.Initializer:
  """Runs ``init`` on the ``[prod(shape[:-1]), shape[-1]]`` matrix, then reshapes.

  For a conv kernel ``[kh, kw, c_in, c_out]`` the variance-scaling fans are the
  same (``fan_in = kh * kw * c_in``), so the distribution is unchanged; but
  XLA:CPU compiles the 4-D truncated normal an order of magnitude slower.
  """
  def matrix_init(key, shape, dtype=jnp.float32):
    flat = (math.prod(shape[:-1]), shape[-1])
    return jnp.reshape(init(key, flat, dtype), shape)
  return matrix_init


def count_params(params: PyTree) -> int:
  """Number of scalar entries in a parameter pytree."""
  return int(sum(math.prod(jnp.shape(x)) for x in jax.tree_util.tree_leaves(params)))


def _is_concrete(value) -> bool:
  """True for a Python / NumPy number; False for a (possibly traced) array,
  e.g. a hyper-parameter vmapped over a grid."""
  return isinstance(value, (int, float, np.integer, np.floating))


def _traced_dropout(module: nn.Module, h: jax.Array, rate: jax.Array,
                    train: bool) -> jax.Array:
  """Inverted dropout with a TRACED rate (``nn.Dropout`` needs a Python float).

  Same semantics as ``nn.Dropout``: keep with probability ``1 - rate`` and
  scale kept units by ``1 / (1 - rate)``; identity when ``train`` is False.
  Used when ``MLP.dropout_rate`` is vmapped, e.g. over a hyper-parameter grid.
  """
  if not train:
    return h
  keep = 1.0 - jnp.asarray(rate, h.dtype)
  mask = jax.random.bernoulli(module.make_rng("dropout"), keep, h.shape)
  return jnp.where(mask, h / keep, jnp.zeros_like(h))


class MLP(nn.Module):
  """Fully connected network ``[N, D] -> [N, features[-1]]``.

  Hidden layer ``i``: ``Dense -> [BatchNorm] -> activation -> Dropout``; the
  output layer is a plain ``Dense`` (no activation, no dropout).

  Parameter tree (``L = len(features)``)::

    {"Dense_0": {"kernel": [D, features[0]], "bias": [features[0]]},
     "BatchNorm_0": {"scale": [features[0]], "bias": [features[0]]},  # batch_norm
     ...
     "Dense_{L-1}": {"kernel": [features[-2], features[-1]], "bias": [...]}}

  With ``batch_norm=True`` the ``"batch_stats"`` collection holds
  ``{"BatchNorm_i": {"mean", "var"}}``. On ``apply`` the module sows
  ``intermediates["preact_i"] = (a_i,)`` and ``intermediates["act_i"] = (h_i,)``
  (tuples, Flax's ``sow`` convention; ``a_i, h_i: [N, features[i]]``) and calls
  ``perturb("preact_i", a_i)``.

  Attributes:
    features: hidden sizes then the output size, e.g. ``(50, 1)``.
    activation: name for :func:`get_activation`.
    dropout_rate: drop probability in ``[0, 1)`` after each hidden activation;
      may be a traced scalar (vmapped over a hyper-parameter grid), in which
      case it is not validated and the mask comes from the ``"dropout"`` rng
      of the MLP itself rather than of an ``nn.Dropout`` submodule.
    batch_norm: whether to batch-normalise each hidden pre-activation.
    kernel_init: name for :func:`get_initializer`.
    init_scale: ``scale`` for :func:`get_initializer`.
    bias_init_std: standard deviation of a normal bias initialiser; 0 gives
      zero biases.
    dropout_inputs: also drop input features (same rate), as in the UCI
      network of Gal & Ghahramani (2016); a traced 0 / 1 value (a vmapped
      grid) switches it per run.
  """
  features: Sequence[int]
  activation: str = "relu"
  dropout_rate: float = 0.0
  batch_norm: bool = False
  kernel_init: str = "lecun"
  init_scale: float = 1.0
  bias_init_std: float = 0.0
  dropout_inputs: Any = False

  def _dropout(self, h: jax.Array, train: bool) -> jax.Array:
    if not _is_concrete(self.dropout_rate):
      return _traced_dropout(self, h, self.dropout_rate, train)
    if self.dropout_rate > 0:
      return nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return h

  def _validate(self) -> None:
    if len(self.features) == 0:
      raise ValueError("MLP.features must be non-empty (hidden sizes then "
                       "output size)")
    if any(int(f) <= 0 for f in self.features):
      raise ValueError(f"MLP.features must be positive, got {tuple(self.features)}")
    if _is_concrete(self.dropout_rate) and not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"MLP.dropout_rate must be in [0, 1), got {self.dropout_rate}")
    if self.bias_init_std < 0:
      raise ValueError(f"MLP.bias_init_std must be >= 0, got {self.bias_init_std}")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps ``x: [N, D]`` to outputs ``[N, features[-1]]``.

    Args:
      x: inputs ``[N, D]``.
      train: dropout active and batch statistics from the batch (and updated)
        when True; running averages and no dropout when False.
    """
    self._validate()
    if x.ndim != 2:
      raise ValueError(f"MLP expects inputs [N, D], got shape {x.shape}")
    act = get_activation(self.activation)
    kinit = get_initializer(self.kernel_init, self.init_scale)
    binit = (nn.initializers.zeros if self.bias_init_std == 0
             else nn.initializers.normal(stddev=self.bias_init_std))
    record = not self.is_initializing()
    if _is_concrete(self.dropout_inputs):
      h = self._dropout(x, train) if self.dropout_inputs else x
    else:  # a traced 0 / 1 switch (grid search): rate * switch on the inputs
      h = _traced_dropout(self, x, self.dropout_rate * self.dropout_inputs,
                          train)
    for i, width in enumerate(self.features[:-1]):
      h = nn.Dense(int(width), kernel_init=kinit, bias_init=binit,
                   name=f"Dense_{i}")(h)
      if self.batch_norm:
        h = nn.BatchNorm(use_running_average=not train, name=f"BatchNorm_{i}")(h)
      if record:
        h = self.perturb(f"preact_{i}", h)
        self.sow("intermediates", f"preact_{i}", h)
      h = act(h)
      if record:
        self.sow("intermediates", f"act_{i}", h)
      h = self._dropout(h, train)
    last = len(self.features) - 1
    return nn.Dense(int(self.features[-1]), kernel_init=kinit, bias_init=binit,
                    name=f"Dense_{last}")(h)


def zero_perturbations(module: nn.Module, variables: PyTree, x: jax.Array,
                       **apply_kwargs) -> PyTree:
  """Returns the zero ``"perturbations"`` collection of ``module`` for input ``x``.

  Use it to get per-layer gradients with respect to pre-activations::

    perts = zero_perturbations(model, {"params": params}, x)
    def loss(params, perts):
      out = model.apply({"params": params, "perturbations": perts}, x)
      return ...
    dparams, dpreacts = jax.grad(loss, argnums=(0, 1))(params, perts)
    # dpreacts["preact_i"]: [N, features[i]], the backprop delta of layer i.
  """
  _, state = module.apply(variables, x, mutable=["perturbations"], **apply_kwargs)
  return state["perturbations"]


def digit_images(x: jax.Array, model: str = "CNN") -> jax.Array:
  """8x8 digit images ``[N, 8, 8]``, ``[N, 8, 8, 1]`` or ``[N, 64]`` as
  ``[N, 8, 8, 1]``; any other shape raises ValueError naming ``model``."""
  if x.ndim == 2 and x.shape[1] == 64:
    return jnp.reshape(x, (x.shape[0], 8, 8, 1))
  if x.ndim == 3 and x.shape[1:] == (8, 8):
    return x[..., None]
  if not (x.ndim == 4 and x.shape[1:] == (8, 8, 1)):
    raise ValueError(f"{model} expects images [N, 8, 8], [N, 8, 8, 1] or "
                     f"[N, 64], got shape {x.shape}")
  return x


class CNN(nn.Module):
  """Small convolutional classifier for 8x8 greyscale images (sklearn digits).

  ``[Conv 3x3 SAME -> relu -> pool 2x2] x len(features) -> flatten ->
  Dense(hidden) -> relu -> Dropout -> head Dense(num_classes)``. With the
  default two conv layers the spatial size goes 8 -> 4 -> 2.

  Parameter tree::

    {"convs_0": {"kernel": [3, 3, 1, features[0]], "bias": [features[0]]},
     "convs_1": {"kernel": [3, 3, features[0], features[1]], "bias": [...]},
     "dense": {"kernel": [flat, hidden], "bias": [hidden]},
     "head": {"kernel": [hidden, num_classes], "bias": [num_classes]}}

  Kernels use LeCun-normal initialisation (``Var = 1 / fan_in``).

  Transfer learning: ``apply(variables, x, method="embed")`` returns the
  penultimate features ``[N, hidden]``; replace ``params["head"]`` (e.g. with a
  new head's parameters for a different ``num_classes``) and keep the rest.
  To cut lower, ``apply(variables, x, layer, method="layer_input")`` returns the
  input of any layer in ``layer_names`` (e.g. ``"dense"``: the flattened conv
  features), and re-initialising that layer and the ones above it gives a new
  head on those features.

  Attributes:
    num_classes: number of output logits.
    features: output channels of each conv layer.
    hidden: width of the penultimate dense layer.
    dropout_rate: drop probability in ``[0, 1)`` before the head.
    pool: "avg" or "max" pooling after each conv.
  """
  num_classes: int = 10
  features: Sequence[int] = (32, 64)
  hidden: int = 128
  dropout_rate: float = 0.0
  pool: str = "avg"

  def setup(self):
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"CNN.dropout_rate must be in [0, 1), got {self.dropout_rate}")
    if self.pool not in ("avg", "max"):
      raise ValueError(f"unknown CNN.pool {self.pool!r}; valid: ['avg', 'max']")
    if self.num_classes <= 0 or self.hidden <= 0 or any(f <= 0 for f in self.features):
      raise ValueError("CNN sizes must be positive: num_classes="
                       f"{self.num_classes}, hidden={self.hidden}, "
                       f"features={tuple(self.features)}")
    kinit = _as_matrix_init(nn.initializers.lecun_normal())
    self.convs = [nn.Conv(int(f), (3, 3), padding="SAME", kernel_init=kinit)
                  for f in self.features]
    self.dense = nn.Dense(self.hidden)
    self.dropout = nn.Dropout(self.dropout_rate)
    self.head = nn.Dense(self.num_classes)

  @property
  def layer_names(self) -> tuple[str, ...]:
    """Top-level parameter names in forward order: ``convs_0``, ..., ``dense``, ``head``."""
    return tuple(f"convs_{i}" for i in range(len(self.features))) + ("dense",
                                                                     "head")

  def layer_input(self, x: jax.Array, layer: str = "head",
                  train: bool = False) -> jax.Array:
    """The input of layer ``layer`` (a name in :attr:`layer_names`).

    ``"convs_0"``: the images ``[N, 8, 8, 1]``; ``"convs_i"``: the pooled maps
    of conv ``i - 1`` ``[N, h, w, features[i - 1]]``; ``"dense"``: the
    flattened pooled maps of the last conv ``[N, flat]``; ``"head"``: the
    penultimate features ``[N, hidden]`` (:meth:`embed`).

    Args:
      x: images ``[N, 8, 8(, 1)]`` or ``[N, 64]``.
      layer: where to cut.
      train: dropout on (only matters for ``"head"``).
    """
    if layer not in self.layer_names:
      raise ValueError(f"unknown CNN layer {layer!r}; valid: "
                       f"{list(self.layer_names)}")
    x = digit_images(x, "CNN")
    pool = nn.avg_pool if self.pool == "avg" else nn.max_pool
    h = x
    for i, conv in enumerate(self.convs):
      if layer == f"convs_{i}":
        return h
      h = pool(jax.nn.relu(conv(h)), window_shape=(2, 2), strides=(2, 2),
               padding="SAME")
    h = jnp.reshape(h, (h.shape[0], -1))
    if layer == "dense":
      return h
    h = jax.nn.relu(self.dense(h))
    return self.dropout(h, deterministic=not train)

  def embed(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Penultimate features ``[N, hidden]`` for images ``[N, 8, 8(, 1)]`` or ``[N, 64]``."""
    return self.layer_input(x, "head", train)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Logits ``[N, num_classes]``."""
    return self.head(self.embed(x, train))


class RNN(nn.Module):
  """Recurrent network over sequences ``[N, T, D]`` (``flax.linen.RNN``).

  Output ``[N, out_features]`` from the final hidden state (respecting
  ``seq_lengths`` if given), or ``[N, T, out_features]`` with
  ``return_sequences=True``.

  Parameter tree: ``{"cell": {...gate weights, e.g. "ii", "hi" for the
  LSTM...}, "readout": {"kernel": [hidden_size, out_features],
  "bias": [out_features]}}``.

  Attributes:
    cell: "lstm" (``nn.OptimizedLSTMCell``) or "gru" (``nn.GRUCell``).
    hidden_size: size of the hidden state.
    out_features: size of the linear read-out.
    return_sequences: read out every time step instead of the last.
  """
  cell: str = "lstm"
  hidden_size: int = 64
  out_features: int = 1
  return_sequences: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               seq_lengths: Optional[jax.Array] = None) -> jax.Array:
    """Args: x ``[N, T, D]``; train (unused, uniform interface); seq_lengths ``[N]`` int."""
    del train
    if self.cell == "lstm":
      cell = nn.OptimizedLSTMCell(self.hidden_size, name="cell")
    elif self.cell == "gru":
      cell = nn.GRUCell(self.hidden_size, name="cell")
    else:
      raise ValueError(f"unknown RNN cell {self.cell!r}; valid: ['lstm', 'gru']")
    if x.ndim != 3:
      raise ValueError(f"RNN expects inputs [N, T, D], got shape {x.shape}")
    carry, outputs = nn.RNN(cell, return_carry=True, name="rnn")(
        x, seq_lengths=seq_lengths)
    readout = nn.Dense(self.out_features, name="readout")
    if self.return_sequences:
      return readout(outputs)
    last = carry[1] if self.cell == "lstm" else carry  # LSTM carry is (c, h).
    return readout(last)
