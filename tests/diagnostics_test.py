"""Tests for jaxbdl.nn.diagnostics against a hand-computed backward pass."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl.nn import diagnostics, networks


def test_layer_stats_match_manual_backprop():
  model = networks.MLP((4, 3, 2), activation="tanh")
  x = jax.random.normal(jax.random.key(0), (5, 3))
  y = jax.random.normal(jax.random.key(1), (5, 2))
  params = model.init(jax.random.key(2), x)["params"]
  loss = lambda yy, out: 0.5 * jnp.sum((out - yy) ** 2, axis=-1)
  st = jax.jit(lambda p: diagnostics.layer_stats(model, p, x, y, loss))(params)
  # Manual forward/backward for each example (squared error, tanh).
  w = [params[f"Dense_{l}"]["kernel"] for l in range(3)]
  b = [params[f"Dense_{l}"]["bias"] for l in range(3)]
  a0 = x @ w[0] + b[0][None]; h0 = jnp.tanh(a0)
  a1 = h0 @ w[1] + b[1][None]; h1 = jnp.tanh(a1)
  out = h1 @ w[2] + b[2][None]
  d2 = out - y
  d1 = (d2 @ w[2].T) * (1 - h1 ** 2)
  d0 = (d1 @ w[1].T) * (1 - h0 ** 2)
  # Per-example dL/dW_l = outer(input_l, delta_l): norm = |input| * |delta|.
  inputs, deltas = (x, h0, h1), (d0, d1, d2)
  wnorm = jnp.stack([jnp.linalg.norm(i, axis=1) * jnp.linalg.norm(d, axis=1)
                     for i, d in zip(inputs, deltas)], axis=1)
  pnorm = jnp.stack([jnp.linalg.norm(d0, axis=1), jnp.linalg.norm(d1, axis=1)],
                    axis=1)
  np.testing.assert_allclose(st.weight_grad_norm, wnorm, rtol=1e-5)
  np.testing.assert_allclose(st.preact_grad_norm, pnorm, rtol=1e-5)
  np.testing.assert_allclose(st.activation_var, [jnp.var(h0), jnp.var(h1)],
                             rtol=1e-5)
  ratio = diagnostics.first_to_last_ratio(st.weight_grad_norm)
  np.testing.assert_allclose(ratio, wnorm[:, 0].mean() / wnorm[:, 2].mean(),
                             rtol=1e-5)
