"""Tests for jaxbdl.nn.transfer: head replacement, freezing, few-shot sampling."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl.nn import transfer


def _params():
  return {"conv": {"kernel": jnp.ones((3, 3, 1, 2)), "bias": jnp.zeros((2,))},
          "dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros((3,))},
          "head": {"kernel": jnp.ones((3, 5)), "bias": jnp.zeros((5,))}}


def test_replace_head_swaps_only_the_head():
  params = _params()
  new_head = {"kernel": jnp.full((3, 2), 7.0), "bias": jnp.ones((2,))}
  out = transfer.replace_head(params, new_head)
  assert out["head"] is new_head
  assert out["conv"] is params["conv"] and out["dense"] is params["dense"]
  assert params["head"]["kernel"].shape == (3, 5), "input was mutated"


def test_replace_head_missing_head_raises():
  with pytest.raises(ValueError, match="no head 'output'"):
    transfer.replace_head(_params(), {}, head="output")


@pytest.mark.parametrize("trainable,expected", [
    pytest.param(("head",), {"conv": False, "dense": False, "head": True},
                 id="head_only"),
    pytest.param(("dense", "head"), {"conv": False, "dense": True, "head": True},
                 id="dense_and_head"),
])
def test_freeze_mask(trainable, expected):
  mask = transfer.freeze_mask(_params(), trainable)
  for name, value in expected.items():
    assert all(leaf is value for leaf in jax.tree_util.tree_leaves(mask[name]))


def test_freeze_mask_unknown_name_raises():
  with pytest.raises(ValueError, match="not in params"):
    transfer.freeze_mask(_params(), ("decoder",))


def test_frozen_optimizer_updates_only_trainable_leaves():
  params = _params()
  opt = transfer.frozen_optimizer(optax.adam(0.1), params, ("head",))
  grads = jax.tree_util.tree_map(lambda p: jnp.ones_like(p), params)
  updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
  new = optax.apply_updates(params, updates)
  for name in ("conv", "dense"):
    for a, b in zip(jax.tree_util.tree_leaves(new[name]),
                    jax.tree_util.tree_leaves(params[name])):
      np.testing.assert_array_equal(a, b)
  # Adam's first step moves each trainable entry by -lr * sign(g) = -0.1.
  np.testing.assert_allclose(new["head"]["kernel"], params["head"]["kernel"] - 0.1,
                             rtol=1e-5)


def _labelled(n_per_class=10, num_classes=4):
  y = np.repeat(np.arange(num_classes), n_per_class).astype(np.int32)
  x = np.arange(y.shape[0], dtype=np.float32)[:, None]  # x = example index.
  return x, y


def test_few_shot_subset_labels_and_distinct_examples():
  x, y = _labelled()
  classes, k = (3, 1), 4
  x_few, y_few = jax.jit(transfer.few_shot_subset, static_argnums=(3, 4))(
      jax.random.key(0), x, y, classes, k)
  assert x_few.shape == (8, 1) and y_few.shape == (8,)
  idx = np.asarray(x_few[:, 0]).astype(int)
  np.testing.assert_array_equal(np.asarray(y_few), [0] * 4 + [1] * 4)
  np.testing.assert_array_equal(y[idx], [3] * 4 + [1] * 4)
  assert len(set(idx.tolist())) == 8, "drawn with replacement"


def test_few_shot_subset_is_uniform_over_keys():
  # Each example of a class of n = 10 is chosen with probability p = k / n.
  x, y = _labelled()
  k, m = 3, 2000
  keys = jax.random.split(jax.random.key(1), m)
  x_few, _ = jax.jit(jax.vmap(
      lambda kk: transfer.few_shot_subset(kk, x, y, (0,), k)))(keys)
  counts = np.bincount(np.asarray(x_few[:, :, 0]).astype(int).ravel(),
                       minlength=10)[:10]
  freq = counts / m
  p = k / 10
  se = np.sqrt(p * (1 - p) / m)
  # k_sigma = 4.5: two-sided 4.5-sigma bound over 10 frequencies.
  np.testing.assert_array_less(np.abs(freq - p), 4.5 * se)


def test_few_shot_subset_too_few_examples_raises():
  x, y = _labelled(n_per_class=3)
  with pytest.raises(ValueError, match="fewer than k=5"):
    transfer.few_shot_subset(jax.random.key(0), x, y, (0, 1), 5)


def test_select_classes_relabels():
  x, y = _labelled(n_per_class=2, num_classes=4)
  xs, ys = transfer.select_classes(x, y, (2, 3))
  np.testing.assert_array_equal(xs[:, 0], [4, 5, 6, 7])
  np.testing.assert_array_equal(ys, [0, 0, 1, 1])
  with pytest.raises(ValueError, match="no example"):
    transfer.select_classes(x, y, (9,))


def test_tile_examples_keeps_the_mean_loss():
  x = jnp.arange(6.0).reshape(3, 2)
  y = jnp.array([1.0, -2.0, 0.5])
  xt, yt = transfer.tile_examples((x, y), 12)
  assert xt.shape == (12, 2) and yt.shape == (12,)
  loss = lambda a, b: jnp.mean((a[:, 0] - b) ** 2)
  np.testing.assert_allclose(loss(xt, yt), loss(x, y), rtol=1e-6)
  with pytest.raises(ValueError, match="multiple"):
    transfer.tile_examples((x, y), 10)


def test_layers_from_and_reinit_keep_the_body():
  names = ("conv", "dense", "head")
  assert transfer.layers_from(names, "dense") == ("dense", "head")
  assert transfer.layers_from(names, "head") == ("head",)
  with pytest.raises(ValueError, match="unknown cut 'decoder'"):
    transfer.layers_from(names, "decoder")
  params = _params()
  fresh = jax.tree_util.tree_map(lambda p: p + 3.0, params)
  out = transfer.reinit(params, fresh, ("dense", "head"))
  assert out["conv"] is params["conv"]
  assert out["dense"] is fresh["dense"] and out["head"] is fresh["head"]
  assert params["dense"] is not fresh["dense"], "input was mutated"
  with pytest.raises(ValueError, match="fresh_params have no 'dense'"):
    transfer.reinit(params, {"head": fresh["head"]}, ("dense", "head"))


def test_split_optimizer_gives_the_body_its_own_learning_rate():
  params = _params()
  opt = transfer.split_optimizer(optax.adam(0.1), optax.adam(0.01), params,
                                 ("dense", "head"))
  grads = jax.tree_util.tree_map(lambda p: -jnp.ones_like(p), params)
  updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
  new = optax.apply_updates(params, updates)
  # Adam's first step moves each entry by -lr * sign(g) = +lr.
  for name, lr in (("conv", 0.01), ("dense", 0.1), ("head", 0.1)):
    for a, b in zip(jax.tree_util.tree_leaves(new[name]),
                    jax.tree_util.tree_leaves(params[name])):
      np.testing.assert_allclose(a, b + lr, rtol=1e-5, err_msg=name)


def test_stop_gradient_except_zeroes_only_frozen_gradients():
  params = _params()
  x = jnp.ones((2, 4))

  def loss(p):
    h = x @ p["dense"]["kernel"] + p["dense"]["bias"][None, :]
    h = h @ p["head"]["kernel"] + p["head"]["bias"][None, :]
    return jnp.sum(h ** 2) + jnp.sum(p["conv"]["kernel"] ** 2)

  frozen = jax.jit(jax.grad(
      lambda p: loss(transfer.stop_gradient_except(p, ("head",)))))(params)
  full = jax.jit(jax.grad(loss))(params)
  for name in ("conv", "dense"):
    for leaf in jax.tree_util.tree_leaves(frozen[name]):
      np.testing.assert_array_equal(leaf, 0.0)
  np.testing.assert_allclose(frozen["head"]["kernel"], full["head"]["kernel"])
  assert float(jnp.abs(full["dense"]["kernel"]).max()) > 0.0
  np.testing.assert_allclose(
      loss(transfer.stop_gradient_except(params, ("head",))), loss(params))
