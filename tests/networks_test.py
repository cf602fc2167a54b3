"""Tests for jaxbdl.nn.networks: shapes, dropout, batch norm, initialisers, errors."""
import math

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbdl.nn import networks

F32_TOL = 32 * float(np.finfo(np.float32).eps)  # deterministic float32 maths
K_SE = 5.0  # Monte Carlo checks: |estimate - exact| < K_SE * SE


def _x(n=6, d=5, seed=0):  # numpy data: no PRNG compile per shape
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, d)), jnp.float32)


# ------------------------------------------------------------------ MLP


# All MLP tests use inputs [N, 5] and layers of width 8 and 3 so that the
# eagerly compiled initialisers are shared (keeps the file fast).


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batchnorm"])
def test_mlp_shapes_dtype_and_count(batch_norm):
  model = networks.MLP((8, 8, 3), batch_norm=batch_norm)
  variables = model.init(jax.random.key(0), _x())
  expected = {"params", "batch_stats"} if batch_norm else {"params"}
  assert set(variables) == expected  # init does not sow intermediates
  out = model.apply(variables, _x())
  assert out.shape == (6, 3) and out.dtype == jnp.float32
  assert networks.count_params(variables["params"]) == (
      5 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3 + (4 * 8 if batch_norm else 0))


def test_sown_intermediates_are_layer_values():
  model = networks.MLP((8, 3), activation="tanh", bias_init_std=0.5)
  x = _x()
  variables = model.init(jax.random.key(1), x)
  _, state = model.apply(variables, x, mutable=["intermediates"])
  inter = state["intermediates"]
  assert set(inter) == {"preact_0", "act_0"}
  dense = variables["params"]["Dense_0"]
  preact = x @ dense["kernel"] + dense["bias"][None, :]
  np.testing.assert_allclose(inter["preact_0"][0], preact, atol=F32_TOL, rtol=F32_TOL)
  np.testing.assert_allclose(inter["act_0"][0], jnp.tanh(preact), atol=F32_TOL)
  assert float(jnp.std(dense["bias"])) > 0.0  # bias_init_std used


def test_perturbation_gradient_is_backprop_delta():
  """dL/dW0 = x^T delta0, with delta0 = dL/d preact_0 from the perturbation."""
  model = networks.MLP((8, 8, 3), activation="tanh")
  x = _x()
  params = model.init(jax.random.key(2), x)["params"]
  perts = networks.zero_perturbations(model, {"params": params}, x)
  assert set(perts) == {"preact_0", "preact_1"}

  def loss(p, perts):
    out = model.apply({"params": p, "perturbations": perts}, x)
    return 0.5 * jnp.sum(out * out)

  dparams, dperts = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, perts)
  np.testing.assert_allclose(dparams["Dense_0"]["kernel"],
                             x.T @ dperts["preact_0"], atol=1e-5, rtol=1e-4)
  np.testing.assert_allclose(dparams["Dense_1"]["bias"],
                             jnp.sum(dperts["preact_1"], axis=0), atol=1e-5, rtol=1e-4)


def test_dropout_only_in_train_mode_and_unbiased():
  model = networks.MLP((8, 3), activation="identity", dropout_rate=0.5)
  x = _x(n=2)
  variables = model.init(jax.random.key(0), x)
  eval_out = model.apply(variables, x)  # no rng needed in eval mode
  np.testing.assert_array_equal(eval_out, model.apply(variables, x, train=False))
  with pytest.raises(flax.errors.InvalidRngError,
                     match='Dropout_0 needs PRNG for "dropout"'):
    model.apply(variables, x, train=True)  # train mode needs a "dropout" rng

  @jax.jit
  def train_out(keys):  # [M] keys -> [M, 2, 3]
    return jax.vmap(lambda k: model.apply(variables, x, train=True,
                                          rngs={"dropout": k}))(keys)

  m = 2000
  outs = train_out(jax.random.split(jax.random.key(3), m))
  np.testing.assert_array_equal(outs[0], train_out(jax.random.split(jax.random.key(3), m))[0])
  assert not np.allclose(outs[0], outs[1])
  # Inverted dropout is unbiased: for a linear net E_mask[out_train] = out_eval.
  se = jnp.std(outs, axis=0) / math.sqrt(m)
  assert bool(jnp.all(jnp.abs(jnp.mean(outs, axis=0) - eval_out) < K_SE * se))


def test_batch_norm_updates_stats_in_train_and_uses_them_in_eval():
  model = networks.MLP((8, 3), batch_norm=True)
  x = _x()
  variables = model.init(jax.random.key(0), x)
  _, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
  dense = variables["params"]["Dense_0"]
  preact = x @ dense["kernel"] + dense["bias"][None, :]
  stats = state["batch_stats"]["BatchNorm_0"]
  momentum = 0.99  # flax default
  np.testing.assert_allclose(stats["mean"], (1 - momentum) * jnp.mean(preact, 0),
                             atol=1e-6)
  np.testing.assert_allclose(stats["var"],
                             momentum + (1 - momentum) * jnp.var(preact, 0),
                             atol=1e-6)
  # Eval mode: running averages, so an example's output ignores its batch.
  full = model.apply(variables, x)
  np.testing.assert_allclose(model.apply(variables, x[:2]), full[:2], atol=F32_TOL)
  # Train mode: batch statistics, so it does not.
  tr_full, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  tr_part, _ = model.apply(variables, x[:2], train=True, mutable=["batch_stats"])
  assert not np.allclose(tr_full[:2], tr_part)


# target variance for fan_in=400, fan_out=300
_INIT_CASES = [
    ("normal", 0.5, 0.25),
    ("lecun", 1.0, 1.0 / 400),
    ("glorot", 1.0, 2.0 / 700),
    ("he", 1.0, 2.0 / 400),
    ("he", 0.5, 1.0 / 400),
]


@pytest.mark.parametrize("name,scale,variance", _INIT_CASES,
                         ids=[f"{n}-{s}" for n, s, _ in _INIT_CASES])
def test_initializer_variance(name, scale, variance):
  """Sample variance of n weights: SE <= var * sqrt(2 / n) (kurtosis <= 3)."""
  w = networks.get_initializer(name, scale)(jax.random.key(0), (400, 300))
  n = w.size
  assert abs(float(jnp.var(w)) - variance) < K_SE * variance * math.sqrt(2.0 / n)
  assert abs(float(jnp.mean(w))) < K_SE * math.sqrt(variance / n)


def test_mlp_uses_named_initializer():
  model = networks.MLP((300, 1), kernel_init="he")
  params = model.init(jax.random.key(0), jnp.ones((1, 400)))["params"]
  w = params["Dense_0"]["kernel"]
  variance = 2.0 / 400
  assert abs(float(jnp.var(w)) - variance) < K_SE * variance * math.sqrt(2.0 / w.size)


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "erf", "identity"])
def test_activation_values(name):
  a = jnp.array([-1.0, 0.0, 2.0])
  expected = {"relu": [0.0, 0.0, 2.0], "tanh": np.tanh([-1.0, 0.0, 2.0]),
              "sigmoid": 1 / (1 + np.exp([1.0, 0.0, -2.0])),
              "erf": [-0.8427007929, 0.0, 0.9953222650],
              "identity": [-1.0, 0.0, 2.0]}[name]
  np.testing.assert_allclose(networks.get_activation(name)(a), expected, atol=F32_TOL)


@pytest.mark.parametrize("make,word", [
    (lambda: networks.get_activation("swishy"), "swishy"),
    (lambda: networks.get_initializer("orthogonalish"), "orthogonalish"),
    (lambda: networks.get_initializer("he", 0.0), "scale"),
    (lambda: networks.MLP((4, 1), activation="swishy").init(
        jax.random.key(0), jnp.ones((1, 2))), "swishy"),
    (lambda: networks.MLP((4, 1), dropout_rate=1.0).init(
        jax.random.key(0), jnp.ones((1, 2))), "dropout_rate"),
    (lambda: networks.MLP(()).init(jax.random.key(0), jnp.ones((1, 2))), "features"),
    (lambda: networks.MLP((4, 0)).init(jax.random.key(0), jnp.ones((1, 2))), "positive"),
    (lambda: networks.RNN(cell="transformer").init(
        jax.random.key(0), jnp.ones((1, 2, 3))), "transformer"),
    (lambda: networks.CNN(pool="median").init(
        jax.random.key(0), jnp.ones((1, 64))), "median"),
    (lambda: networks.CNN().init(jax.random.key(0), jnp.ones((1, 7, 7))), "8, 8"),
], ids=["activation", "initializer", "init-scale", "mlp-activation", "dropout",
        "empty-features", "zero-width", "rnn-cell", "cnn-pool", "cnn-shape"])
def test_bad_names_raise_value_error(make, word):
  with pytest.raises(ValueError, match=word):
    make()


# ------------------------------------------------------------------ CNN


def test_cnn_shapes_embed_and_head_replacement():
  model = networks.CNN(features=(4, 8), hidden=16)
  new_model = networks.CNN(num_classes=3, features=(4, 8), hidden=16)
  imgs = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 8, 8)), jnp.float32)

  @jax.jit  # one program: init + all applies
  def run(imgs):
    variables = model.init(jax.random.key(1), imgs)
    logits = [model.apply(variables, x)
              for x in (imgs, imgs[..., None], imgs.reshape(3, 64))]
    feats = model.apply(variables, imgs, method="embed")
    # Transfer: a 3-class model reuses the body, with a fresh head.
    new_head = {"kernel": 0.1 * jnp.ones((16, 3)), "bias": jnp.zeros((3,))}
    params = {**variables["params"], "head": new_head}
    new = {"params": params}
    return (variables, logits, feats, new_model.apply(new, imgs),
            new_model.apply(new, imgs, method="embed"))

  variables, logits, feats, new_logits, new_feats = run(imgs)
  assert set(variables["params"]) == {"convs_0", "convs_1", "dense", "head"}
  assert logits[0].shape == (3, 10) and logits[0].dtype == jnp.float32
  for other in logits[1:]:
    np.testing.assert_allclose(other, logits[0], atol=F32_TOL)
  assert feats.shape == (3, 16)
  head = variables["params"]["head"]
  np.testing.assert_allclose(feats @ head["kernel"] + head["bias"][None, :], logits[0],
                             atol=1e-5, rtol=1e-5)
  assert new_logits.shape == (3, 3)
  np.testing.assert_allclose(new_feats, feats, atol=F32_TOL)
  # LeCun-normal conv kernels: Var = 1 / (3 * 3 * 4); SE <= var * sqrt(2 / n).
  w = variables["params"]["convs_1"]["kernel"]
  assert w.shape == (3, 3, 4, 8)
  variance = 1.0 / 36
  assert abs(float(jnp.var(w)) - variance) < K_SE * variance * math.sqrt(2.0 / w.size)


def test_cnn_layer_input_cuts_the_forward_pass():
  model = networks.CNN(num_classes=3, features=(4, 8), hidden=16, pool="max")
  imgs = jnp.asarray(np.random.default_rng(0).uniform(size=(5, 8, 8)), jnp.float32)
  assert model.layer_names == ("convs_0", "convs_1", "dense", "head")

  @jax.jit
  def run(imgs):
    variables = model.init(jax.random.key(2), imgs)
    cut = {layer: model.apply(variables, imgs, layer, method="layer_input")
           for layer in model.layer_names}
    return (variables["params"], cut, model.apply(variables, imgs),
            model.apply(variables, imgs, method="embed"))

  params, cut, logits, embed = run(imgs)
  assert cut["convs_0"].shape == (5, 8, 8, 1)
  assert cut["convs_1"].shape == (5, 4, 4, 4)
  assert cut["dense"].shape == (5, 2 * 2 * 8)
  np.testing.assert_array_equal(cut["head"], embed)
  # Finish the forward pass by hand from the "dense" cut: the logits agree.
  d, h = params["dense"], params["head"]
  by_hand = (jax.nn.relu(cut["dense"] @ d["kernel"] + d["bias"][None, :])
             @ h["kernel"] + h["bias"][None, :])
  np.testing.assert_allclose(by_hand, logits, atol=1e-5, rtol=1e-5)
  with pytest.raises(ValueError, match="unknown CNN layer 'conv'"):
    model.apply({"params": params}, imgs, "conv", method="layer_input")


# ------------------------------------------------------------------ RNN


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_shapes_and_final_state(cell):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3)), jnp.float32)
  model = networks.RNN(cell=cell, hidden_size=8, out_features=2)
  seq = networks.RNN(cell=cell, hidden_size=8, out_features=2, return_sequences=True)
  variables = model.init(jax.random.key(1), x)  # eager: shares PRNG compiles

  @jax.jit  # one program: nn.RNN's scan would recompile per eager call
  def run(variables, x):
    return (model.apply(variables, x), seq.apply(variables, x),
            model.apply(variables, x, seq_lengths=jnp.array([2, 5])),
            model.apply(variables, x[:, :2]))

  out, outs, short, truncated = run(variables, x)
  assert out.shape == (2, 2) and out.dtype == jnp.float32
  assert outs.shape == (2, 5, 2)
  # The read-out of the final state equals the last step of the sequence
  # (for the LSTM this checks that h, not c, is read out).
  np.testing.assert_allclose(outs[:, -1], out, atol=F32_TOL)
  # The final state respects seq_lengths: example 0 stops after 2 steps.
  np.testing.assert_allclose(short[0], truncated[0], atol=1e-6)
  np.testing.assert_allclose(short[1], out[1], atol=1e-6)


@pytest.mark.parametrize("rate", [0.2, 0.6])
def test_traced_dropout_rate_keeps_the_rate_and_is_unbiased(rate):
  """A vmapped (traced) dropout rate drops a Binomial(H, rate) number of
  hidden units and, like nn.Dropout, is unbiased for a linear net."""
  model = networks.MLP((400, 1), activation="identity", dropout_rate=0.5)
  x = _x(n=1)
  variables = model.init(jax.random.key(0), x)
  eval_out = model.apply(variables, x)

  outs = jax.jit(jax.vmap(lambda k: networks.MLP(
      (400, 1), activation="identity", dropout_rate=jnp.float32(rate)).apply(
          variables, x, train=True, rngs={"dropout": k})))(
              jax.random.split(jax.random.key(1), 2000))
  se = jnp.std(outs, axis=0) / math.sqrt(2000)
  assert bool(jnp.all(jnp.abs(jnp.mean(outs, axis=0) - eval_out) < K_SE * se))
  # The dropped fraction of 400 hidden units: rate within K_SE binomial SEs.
  mask_model = networks.MLP((400, 400), activation="identity",
                            dropout_rate=jnp.float32(rate))
  # With all-ones / identity weights the dropped units are exact zeros.
  eye = {"params": {"Dense_0": {"kernel": jnp.ones((3, 400)),
                                "bias": jnp.zeros(400)},
                    "Dense_1": {"kernel": jnp.eye(400),
                                "bias": jnp.zeros(400)}}}
  out = mask_model.apply(eye, jnp.ones((1, 3)), train=True,
                         rngs={"dropout": jax.random.key(2)})
  dropped = float(jnp.mean(out == 0))
  se_rate = math.sqrt(rate * (1 - rate) / 400)
  assert abs(dropped - rate) < K_SE * se_rate, (dropped, rate)


def test_dropout_inputs_drops_input_features():
  model = networks.MLP((3, 3), activation="identity", dropout_rate=0.5,
                       dropout_inputs=True)
  eye = {"params": {"Dense_0": {"kernel": jnp.eye(3), "bias": jnp.zeros(3)},
                    "Dense_1": {"kernel": jnp.eye(3), "bias": jnp.zeros(3)}}}
  x = jnp.ones((2000, 3))
  out = model.apply(eye, x, train=True, rngs={"dropout": jax.random.key(0)})
  # Kept through both layers with prob 0.25, then scaled by 1 / 0.5^2.
  kept = np.asarray(out != 0)
  assert abs(kept.mean() - 0.25) < K_SE * math.sqrt(0.25 * 0.75 / kept.size)
  np.testing.assert_allclose(np.asarray(out)[kept], 4.0, rtol=1e-6)
  np.testing.assert_array_equal(model.apply(eye, x), x)  # eval: identity
  # A traced 0 / 1 switch: 0 leaves the inputs alone (kept prob 0.5).
  off = networks.MLP((3, 3), activation="identity", dropout_rate=0.5,
                     dropout_inputs=jnp.float32(0.0)).apply(
                         eye, x, train=True, rngs={"dropout": jax.random.key(0)})
  kept_off = np.asarray(off != 0)
  assert abs(kept_off.mean() - 0.5) < K_SE * math.sqrt(0.25 / kept_off.size)
