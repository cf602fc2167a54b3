"""jaxbdl.training.progress: the epoch line, and that it changes no number."""
import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl.training import progress, train


@pytest.fixture
def forced_on():
  progress.set_enabled(True)
  yield
  progress.set_enabled(None)


def _fit(num_epochs):
  x = jnp.linspace(-1.0, 1.0, 16)[:, None]
  data = {"x": x, "y": 2.0 * x[:, 0]}

  def loss_fn(p, ms, b, key):
    del key
    return jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2), (ms, {})

  opt = optax.sgd(0.1)
  state = train.init_train_state({"w": jnp.zeros((1,))}, opt)
  fit = train.make_fit(loss_fn, opt, num_epochs=num_epochs, batch_size=8,
                       progress_label="t")
  return fit, state, data


def test_off_under_pytest():
  assert not progress.enabled()
  assert progress.scan_callback("x", 10) is None


def test_progress_changes_no_number_under_jit_and_vmap(forced_on, capsys):
  fit, state, data = _fit(5)
  keys = jax.random.split(jax.random.key(0), 2)
  run = jax.jit(jax.vmap(fit, in_axes=(None, None, 0)))
  s_on, h_on = run(state, data, keys)
  jax.effects_barrier()
  err = capsys.readouterr().err
  progress.set_enabled(False)
  s_off, h_off = jax.jit(jax.vmap(_fit(5)[0], in_axes=(None, None, 0)))(
      state, data, keys)
  np.testing.assert_array_equal(s_on.params["w"], s_off.params["w"])
  np.testing.assert_array_equal(h_on["loss"], h_off["loss"])
  # One summary line for the loop although 2 vmapped runs report it.
  assert err.count("t: 5 epochs in") == 1, err


def test_bar_line_shows_epoch_rate_and_eta():
  out = io.StringIO()
  bar = progress._Bar("fit", 4, min_interval=0.0, stream=out)
  for i in range(4):
    bar(np.int32(i), np.float32(1.0 / (i + 1)))
  text = out.getvalue()
  assert "fit: epoch 2/4 [50%] loss 0.5" in text
  assert "epoch/s | ETA" in text
  assert text.rstrip("\n").endswith("last loss 0.25\x1b[K")


@pytest.mark.parametrize("seconds, text", [(42.4, "42s"), (185, "3m05s"),
                                           (3720, "1h02m"),
                                           (float("nan"), "?")])
def test_format_seconds(seconds, text):
  assert progress.format_seconds(seconds) == text


def test_phase_line():
  out = io.StringIO()
  with progress.phase("fit map", stream=out) as line:
    line["rmse"] = 0.5
  assert out.getvalue().startswith("fit map: done in 0s (rmse 0.5)")
