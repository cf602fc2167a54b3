"""Per-layer gradient and activation diagnostics (vanishing / exploding gradients).

For a :class:`jaxbdl.nn.networks.MLP` and a per-example loss, computes for every
layer and every example

* the norm of the gradient with respect to the layer's weight matrix,
  ``||dL_n / dW_l||_F``;
* the norm of the gradient with respect to the layer's pre-activations (the
  backprop error term ``delta_l``), ``||dL_n / da_l||_2``;

and, over the batch, the variance of each hidden layer's activations. Weight
gradient norms alone can look flat even when the error terms vanish (for tanh
and ReLU the growing activations compensate), which is why all three are
reported (Glorot & Bengio 2010, Figures 6-7; He et al. 2015, section 2.2).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxbdl.nn import networks

__all__ = ["LayerStats", "layer_stats", "first_to_last_ratio"]

PyTree = Any


class LayerStats(NamedTuple):
  """Per-layer diagnostics of one network on one batch.

  Attributes:
    weight_grad_norm: ``[N, L]`` per-example Frobenius norm of the gradient
      with respect to ``Dense_l/kernel`` (``L = len(features)``, output layer
      last).
    preact_grad_norm: ``[N, L - 1]`` per-example norm of the gradient with
      respect to each hidden pre-activation.
    activation_var: ``[L - 1]`` variance of each hidden layer's activations
      over examples and units.
  """
  weight_grad_norm: jax.Array
  preact_grad_norm: jax.Array
  activation_var: jax.Array


def layer_stats(model: networks.MLP, params: PyTree, x: jax.Array, y: jax.Array,
                example_loss: Callable[[jax.Array, jax.Array], jax.Array]
                ) -> LayerStats:
  """Per-example, per-layer gradient norms and activation variances.

  Args:
    model: an MLP without batch norm or dropout (its ``apply`` is what is
      differentiated; its ``kernel_init`` does not matter here).
    params: its ``"params"`` pytree.
    x: inputs ``[N, D]``.
    y: targets ``[N, ...]``.
    example_loss: ``example_loss(y [1, ...], outputs [1, K]) -> [1]``, e.g.
      ``lambda y, o: -likelihoods.categorical(y, o)``.

  Returns:
    :class:`LayerStats`. Jit- and vmap-able (vmap over stacked ``params`` to
    compare initialisations or seeds in one program).
  """
  if model.batch_norm or model.dropout_rate > 0:
    raise ValueError("layer_stats needs an MLP without batch norm and dropout")
  num_layers = len(model.features)
  perts = networks.zero_perturbations(model, {"params": params}, x[:1])

  def loss_one(p, pt, x1, y1):
    out = model.apply({"params": p, "perturbations": pt}, x1[None])
    return jnp.sum(example_loss(y1[None], out))

  grad_one = jax.grad(loss_one, argnums=(0, 1))
  dparams, dperts = jax.vmap(grad_one, in_axes=(None, None, 0, 0))(
      params, perts, x, y)
  weight = jnp.stack([
      jnp.sqrt(jnp.sum(dparams[f"Dense_{l}"]["kernel"] ** 2, axis=(1, 2)))
      for l in range(num_layers)], axis=1)
  preact = jnp.stack([
      jnp.sqrt(jnp.sum(dperts[f"preact_{l}"] ** 2, axis=(1, 2)))
      for l in range(num_layers - 1)], axis=1)
  _, state = model.apply({"params": params}, x, mutable=["intermediates"])
  inter = state["intermediates"]
  act_var = jnp.stack([jnp.var(inter[f"act_{l}"][0])
                       for l in range(num_layers - 1)])
  return LayerStats(weight, preact, act_var)


def first_to_last_ratio(norms: jax.Array) -> jax.Array:
  """Ratio of the mean first-layer norm to the mean last-layer norm.

  Args:
    norms: ``[..., N, L]`` per-example norms (as in :class:`LayerStats`).

  Returns:
    ``[...]``; much below 1 means gradients vanish towards the input, much
    above 1 that they explode towards the input.
  """
  mean = jnp.mean(norms, axis=-2)
  return mean[..., 0] / mean[..., -1]
