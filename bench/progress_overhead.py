"""Overhead of the epoch progress callback: epochs/s of one jitted fit with
progress off and on (same program otherwise), and that the results agree.

  python bench/progress_overhead.py [num_epochs] [steps_per_epoch]
"""
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbdl.training import progress, train


def main(num_epochs=2000, steps_per_epoch=4, reps=3):
  n, d = 32 * steps_per_epoch, 8
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (n, d))
  data = {"x": x, "y": x @ jax.random.normal(kw, (d,))}

  def loss_fn(p, ms, b, key):
    del key
    return jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2), (ms, {})

  opt = optax.sgd(1e-2)
  state = train.init_train_state({"w": jnp.zeros((d,))}, opt)
  out = {}
  for on in (False, True, False, True):
    progress.set_enabled(on)
    fit = jax.jit(train.make_fit(loss_fn, opt, num_epochs=num_epochs,
                                 batch_size=32, progress_label="bench"))
    s, h = fit(state, data, jax.random.key(1))
    jax.block_until_ready(s)
    best = np.inf
    for _ in range(reps):
      t0 = time.perf_counter()
      s, h = fit(state, data, jax.random.key(1))
      jax.block_until_ready(s)
      best = min(best, time.perf_counter() - t0)
    out.setdefault(on, []).append(num_epochs / best)
    out[(on, "w")] = np.asarray(s.params["w"])
  progress.set_enabled(None)
  same = np.array_equal(out[(False, "w")], out[(True, "w")])
  off, on = max(out[False]), max(out[True])
  print(f"epochs/s off {off:.0f}, on {on:.0f} ({steps_per_epoch} steps/epoch;"
        f" overhead {100 * (off - on) / off:.1f}%), identical params: {same}")


if __name__ == "__main__":
  main(*map(int, sys.argv[1:]))
