"""Drawing N(0, I) on XLA:CPU: odd vs even counts, and the fix.

JAX's default partitionable threefry takes a much slower XLA:CPU path when
the number of values is odd. ``jaxbdl.gradients.distributions.
standard_normal`` draws an odd count as an even draw plus one value from its
own key (``tests/distributions_test.py``). This measures, in one process,
``jax.random.normal`` at odd and even sizes and ``standard_normal`` at the odd
ones: median and minimum wall time of a jitted draw over ``--repeats``.

Usage (repository root): ``.venv/bin/python -m bench.rng_sizes``
Output: ``bench/results/rng_sizes.json``.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from bench import provenance
from jaxbdl.gradients import distributions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _time(fn, key, repeats):
  jax.block_until_ready(fn(key))
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(key))
    ts.append(time.perf_counter() - t0)
  return float(np.median(ts)), float(np.min(ts))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", default="25601,160001,186801")
  p.add_argument("--repeats", type=int, default=30)
  p.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                               "rng_sizes.json"))
  args = p.parse_args()
  key = jax.random.key(0)
  rows = []
  for n in (int(s) for s in args.sizes.split(",")):
    odd = jax.jit(lambda k, n=n: jax.random.normal(k, (n,)))
    even = jax.jit(lambda k, n=n: jax.random.normal(k, (n + 1,)))
    fixed = jax.jit(lambda k, n=n: distributions.standard_normal(k, (n,)))
    r = {"n": n}
    for name, fn in (("odd", odd), ("even", even), ("standard_normal", fixed)):
      med, mn = _time(fn, key, args.repeats)
      r[f"{name}_median_ms"], r[f"{name}_min_ms"] = 1e3 * med, 1e3 * mn
    r["speedup_median"] = r["odd_median_ms"] / r["standard_normal_median_ms"]
    rows.append(r)
    print(r)
  provenance.write_json(args.out, {"rows": rows, "args": vars(args)})


if __name__ == "__main__":
  main()
