"""Tests for jaxbdl.training.checkpoint: round trip, step metadata, errors."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl.training import checkpoint
from jaxbdl.training import train


def _state():
  params = {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3),
                      "bias": jnp.array([0.5, -1.0, 2.0])},
            "log_noise": jnp.float32(-1.5)}
  state = train.init_train_state(params, optax.adam(1e-3),
                                 {"batch_stats": {"mean": jnp.ones(3)}})
  return state._replace(step=jnp.int32(7))


def _assert_tree_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("target_kind", ["concrete", "abstract"])
def test_round_trip_train_state(tmp_path, target_kind):
  state = _state()
  path = checkpoint.save(str(tmp_path / "ckpt"), state, step=7)
  assert checkpoint.exists(path)
  assert checkpoint.read_step(path) == 7
  target = state if target_kind == "concrete" else jax.eval_shape(
      lambda: state)
  restored = checkpoint.restore(path, target)
  assert isinstance(restored, train.TrainState)
  _assert_tree_equal(restored, state)


def test_round_trip_without_target_and_keys(tmp_path):
  tree = {"w": np.arange(4, dtype=np.float32), "n": [jnp.int32(3)],
          "key": jax.random.key(5)}
  path = checkpoint.save(str(tmp_path / "ckpt"), tree)
  assert checkpoint.read_step(path) is None
  raw = checkpoint.restore(path)
  np.testing.assert_array_equal(raw["w"], tree["w"])
  np.testing.assert_array_equal(raw["n"][0], 3)
  restored = checkpoint.restore(path, tree)
  np.testing.assert_array_equal(jax.random.key_data(restored["key"]),
                                jax.random.key_data(tree["key"]))


def test_save_refuses_to_overwrite(tmp_path):
  path = str(tmp_path / "ckpt")
  checkpoint.save(path, {"a": jnp.zeros(2)})
  with pytest.raises(FileExistsError, match="already exists"):
    checkpoint.save(path, {"a": jnp.ones(2)})
  checkpoint.save(path, {"a": jnp.ones(2)}, overwrite=True)
  np.testing.assert_array_equal(checkpoint.restore(path)["a"], [1.0, 1.0])


def test_missing_path(tmp_path):
  missing = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    checkpoint.restore(missing)
  os.makedirs(missing)
  with pytest.raises(FileNotFoundError, match="not a finished checkpoint"):
    checkpoint.restore(missing)


@pytest.mark.parametrize(
    "change, pattern",
    [("shape", r"key 'params/dense/kernel': checkpoint shape \[2, 3\], "
               r"target shape \[3, 3\]"),
     ("missing_key", r"'params/extra' is in the target but not in the "
                     r"checkpoint"),
     ("extra_key", r"'params/log_noise' is in the checkpoint but not in the "
                   r"target")])
def test_mismatched_target(tmp_path, change, pattern):
  state = _state()
  path = checkpoint.save(str(tmp_path / "ckpt"), state)
  params = dict(state.params)
  if change == "shape":
    params["dense"] = {"kernel": jnp.zeros((3, 3)),
                       "bias": params["dense"]["bias"]}
  elif change == "missing_key":
    params["extra"] = jnp.zeros(1)
  else:
    del params["log_noise"]
  target = state._replace(params=params)
  with pytest.raises(ValueError, match=pattern):
    checkpoint.restore(path, target)
