"""Tests for jaxbdl.training.resume: chunked fits, resume, corrupt checkpoints, NaN.

All fits share one fitter (so jit compiles once per chunk length) on a
64-example problem with 4 steps per epoch. Resumed/fallback runs are compared
BITWISE with an uninterrupted run with the same chunking (same compiled
program, same inputs), and to float32 rounding (dtype-based: 1e-6 relative)
with the one-shot ``train.make_fit``.
"""
from __future__ import annotations

import json
import os
import re
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl.training import resume
from jaxbdl.training import train

N, D, B = 64, 3, 16
EVERY = 2
OPT_LR = 0.05


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, D)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)
  return {"x": x, "y": y}


def _loss(params, model_state, batch, key):
  del key
  loss = jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)
  return loss, (model_state, {"mse": loss})


def _nan_loss(kind):
  """A loss that turns non-finite once ``c`` (falling 0.05 per SGD step from
  1.0) crosses 0, i.e. at global step 20 or 21 = epoch 5 (4 steps/epoch).

  kind="loss": ``0 * log(c)`` is NaN for c <= 0 (the loss itself).
  kind="gradient": ``0 * sqrt(max(c, 0))`` is 0 but its gradient at c < 0 is
  ``0 * inf = NaN`` (finite loss, non-finite gradient).
  """
  def loss_fn(params, model_state, batch, key):
    mse, aux = _loss(params, model_state, batch, key)
    c = params["c"]
    bad = jnp.log(c) if kind == "loss" else jnp.sqrt(jnp.maximum(c, 0.0))
    return mse + 0.5 * c + 0.0 * bad, aux
  return loss_fn


OPT = optax.adam(OPT_LR)
FITTER = train.make_fitter(_loss, OPT, batch_size=B)
SGD = optax.sgd(0.1)
NAN_FITTERS = {kind: train.make_fitter(
    _nan_loss(kind), SGD, batch_size=B,
    step_wrapper=resume.step_wrapper_for("stop"))
               for kind in ("loss", "gradient")}
NAN_FITTER_NO_SKIP = train.make_fitter(_nan_loss("gradient"), SGD,
                                       batch_size=B)
KEY = jax.random.key(0)


def _state():
  return train.init_train_state({"w": jnp.zeros((D,))}, OPT)


def _fit(ckdir, num_epochs=6, **kw):
  kw.setdefault("checkpoint_every_epochs", EVERY)
  return resume.resumable_fit(FITTER, _state(), _data(), KEY,
                              num_epochs=num_epochs, checkpoint_dir=ckdir,
                              **kw)


def _ckpts(ckdir):
  return sorted(n for n in os.listdir(ckdir) if n.startswith("ckpt_"))


def _assert_same(a, b):
  """Bitwise equality of two results (parameters, opt state, history)."""
  for x, y in zip(jax.tree_util.tree_leaves(a.fit_state),
                  jax.tree_util.tree_leaves(b.fit_state)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert set(a.history) == set(b.history)
  for k in a.history:
    np.testing.assert_array_equal(a.history[k], b.history[k])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 6-epoch run (checkpoints after epochs 2, 4, 6)."""
  return _fit(str(tmp_path_factory.mktemp("ref")))


@pytest.mark.default_xla
def test_chunked_fit_matches_make_fit(reference):
  state, history = jax.jit(train.make_fit(_loss, OPT, num_epochs=6,
                                          batch_size=B))(_state(), _data(), KEY)
  np.testing.assert_allclose(reference.state.params["w"], state.params["w"],
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(reference.history["loss"], history["loss"],
                             rtol=1e-6)
  assert reference.history["loss"].shape == (6,)
  assert reference.history["loss"][-1] < 0.5 * reference.history["loss"][0]
  assert int(reference.state.step) == 6 * (N // B)
  assert reference.resumed_from == 0


@pytest.mark.default_xla
def test_resume_continues_bitwise(tmp_path, reference):
  ckdir = str(tmp_path / "ck")
  first = _fit(ckdir, num_epochs=4)
  assert first.resumed_from == 0
  assert _ckpts(ckdir) == ["ckpt_000002", "ckpt_000004"]
  calls = []
  second = _fit(ckdir, num_epochs=6,
                on_checkpoint=lambda e, p: calls.append(e))
  assert second.resumed_from == 4 and calls == [6]
  _assert_same(second, reference)
  # Finished run: a third call restores and does no work.
  third = _fit(ckdir, num_epochs=6)
  assert third.resumed_from == 6
  _assert_same(third, reference)


def test_keep_limits_checkpoints(tmp_path):
  ckdir = str(tmp_path / "ck")
  _fit(ckdir, num_epochs=6, keep=2)
  assert _ckpts(ckdir) == ["ckpt_000004", "ckpt_000006"]
  manifest = json.load(open(os.path.join(ckdir, "ckpt_000006",
                                         "MANIFEST.json")))
  assert manifest["epoch"] == 6 and manifest["files"]


def _largest_file(path):
  files = [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs
           if f != "MANIFEST.json"]
  return max(files, key=os.path.getsize)


def _truncate(path):
  victim = _largest_file(path)
  with open(victim, "r+b") as f:
    f.truncate(max(os.path.getsize(victim) // 2, 1) - 1)
  return victim


def _garble(path):
  victim = _largest_file(path)
  size = os.path.getsize(victim)
  with open(victim, "r+b") as f:
    f.seek(size // 2)
    byte = f.read(1)
    f.seek(size // 2)
    f.write(bytes([byte[0] ^ 0xFF]))
  return victim


def _drop_manifest(path):
  victim = os.path.join(path, "MANIFEST.json")
  os.remove(victim)
  return victim


def _delete_file(path):
  victim = _largest_file(path)
  os.remove(victim)
  return victim


@pytest.mark.parametrize("damage", [_truncate, _garble, _drop_manifest,
                                    _delete_file],
                         ids=["truncated", "garbled", "no_manifest",
                              "missing_file"])
def test_corrupt_latest_falls_back(tmp_path, reference, damage):
  ckdir = str(tmp_path / "ck")
  _fit(ckdir, num_epochs=6)
  victim = damage(os.path.join(ckdir, "ckpt_000006"))
  with mock.patch.object(resume.logging, "warning") as warn:
    again = _fit(ckdir, num_epochs=6)
  assert again.resumed_from == 4  # fell back to the previous good one
  _assert_same(again, reference)  # and re-ran epochs 5-6 identically
  messages = [c.args[0] % c.args[1:] for c in warn.call_args_list]
  assert any("Bad checkpoint" in m and victim in m for m in messages), messages
  assert os.path.isdir(os.path.join(ckdir, "ckpt_000006.corrupt"))
  assert os.path.isdir(os.path.join(ckdir, "ckpt_000006"))  # rewritten


def test_all_corrupt_warns_and_restarts(tmp_path, reference):
  ckdir = str(tmp_path / "ck")
  _fit(ckdir, num_epochs=4)
  for name in ("ckpt_000002", "ckpt_000004"):
    _garble(os.path.join(ckdir, name))
  with mock.patch.object(resume.logging, "warning") as warn:
    again = _fit(ckdir, num_epochs=6)
  assert again.resumed_from == 0
  _assert_same(again, reference)
  messages = [c.args[0] % c.args[1:] for c in warn.call_args_list]
  assert any("No good checkpoint" in m for m in messages), messages


def test_killed_writer_leftovers_are_ignored(tmp_path, reference):
  ckdir = str(tmp_path / "ck")
  _fit(ckdir, num_epochs=4)
  # A writer killed mid-save leaves only a temporary directory.
  os.makedirs(os.path.join(ckdir, ".tmp_ckpt_000006_999", "fit"))
  again = _fit(ckdir, num_epochs=6)
  assert again.resumed_from == 4
  _assert_same(again, reference)
  assert not any(n.startswith(".tmp") for n in os.listdir(ckdir))


def test_different_key_is_refused(tmp_path):
  ckdir = str(tmp_path / "ck")
  _fit(ckdir, num_epochs=2)
  with pytest.raises(ValueError, match="different PRNG key"):
    resume.resumable_fit(FITTER, _state(), _data(), jax.random.key(1),
                         num_epochs=4, checkpoint_dir=ckdir,
                         checkpoint_every_epochs=EVERY)


def test_different_model_is_refused(tmp_path):
  ckdir = str(tmp_path / "ck")
  _fit(ckdir, num_epochs=2)
  other = train.init_train_state({"w": jnp.zeros((D + 1,))}, OPT)
  with pytest.raises(ValueError, match="different model or optimiser"):
    resume.resumable_fit(FITTER, other, _data(), KEY, num_epochs=4,
                         checkpoint_dir=ckdir, checkpoint_every_epochs=EVERY)


def _nan_fit(ckdir, kind, wrap, num_epochs=8):
  state = train.init_train_state({"w": jnp.zeros((D,)), "c": jnp.ones(())},
                                 SGD)
  return resume.resumable_fit(NAN_FITTERS[kind], state, _data(), KEY,
                              num_epochs=num_epochs, checkpoint_dir=ckdir,
                              checkpoint_every_epochs=EVERY,
                              on_nonfinite=wrap)


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_nonfinite_stops_and_names_it(tmp_path, kind):
  ckdir = str(tmp_path / "ck")
  with pytest.raises(resume.NonFiniteError,
                     match=f"non-finite {kind}.*epoch 5") as e:
    _nan_fit(ckdir, kind, "stop")
  err = e.value
  assert err.quantity == kind and err.epoch == 5 and err.run is None
  assert err.steps == (20, 23)
  assert f"non-finite {kind}" in str(err) and "epoch 5" in str(err)
  assert "global steps 20..23" in str(err)
  # The last good checkpoint (epochs 0-3, chunk [4, 6) failed) is the newest.
  assert err.checkpoint.endswith("ckpt_000004")
  assert resume.list_checkpoints(ckdir)[0][1] == err.checkpoint


def test_nonfinite_skip_keeps_params_finite(tmp_path):
  ckdir = str(tmp_path / "ck")
  with mock.patch.object(resume.logging, "warning") as warn:
    res = _nan_fit(ckdir, "loss", "skip")
  finite = res.history["finite"]
  np.testing.assert_array_equal(finite[:5], 1.0)
  np.testing.assert_array_equal(finite[5:], 0.0)
  c = float(res.state.params["c"])
  # 20 good steps of -0.05 from 1.0 leave c ~ 0 (float32 rounding ~1e-7);
  # every later step has c <= 0 (NaN loss) and is skipped, so c stays there.
  assert abs(c) < 1e-5
  assert np.all(np.isfinite(np.asarray(res.state.params["w"])))
  assert any("Skipped non-finite" in c.args[0] for c in warn.call_args_list)


def test_stop_without_wrapper_is_ambiguous(tmp_path):
  state = train.init_train_state({"w": jnp.zeros((D,)), "c": jnp.ones(())},
                                 SGD)
  with pytest.raises(resume.NonFiniteError,
                     match="non-finite loss or gradient") as e:
    resume.resumable_fit(NAN_FITTER_NO_SKIP, state, _data(), KEY,
                         num_epochs=8, checkpoint_dir=str(tmp_path / "ck"),
                         checkpoint_every_epochs=EVERY)
  assert e.value.quantity == "loss or gradient" and e.value.epoch == 5


def test_skip_without_wrapper_is_an_error(tmp_path):
  state = train.init_train_state({"w": jnp.zeros((D,)), "c": jnp.ones(())},
                                 SGD)
  with pytest.raises(resume.NonFiniteError, match="skip_nonfinite"):
    resume.resumable_fit(NAN_FITTER_NO_SKIP, state, _data(), KEY,
                         num_epochs=8, checkpoint_dir=str(tmp_path / "ck"),
                         checkpoint_every_epochs=EVERY, on_nonfinite="skip")


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(num_epochs=0), ValueError, "num_epochs must be a positive int"),
    (dict(checkpoint_every_epochs=0), ValueError,
     "checkpoint_every_epochs must be a positive int"),
    (dict(keep=0), ValueError, "keep must be a positive int"),
    (dict(on_nonfinite="ignore"), ValueError, "on_nonfinite must be one of"),
    (dict(checkpoint_dir=""), ValueError, "checkpoint_dir must be a non-empty"),
    (dict(checkpoint_dir="FILE"), NotADirectoryError, "is not a directory"),
    (dict(train_data="NAN"), ValueError, "train_data['x'] has a non-finite"),
])
def test_bad_arguments(tmp_path, kwargs, error, message):
  afile = tmp_path / "afile"
  afile.write_text("not a directory")
  args = dict(num_epochs=4, checkpoint_dir=str(tmp_path / "ck"),
              checkpoint_every_epochs=EVERY)
  args.update(kwargs)
  if args["checkpoint_dir"] == "FILE":
    args["checkpoint_dir"] = str(afile)
  data = _data()
  if args.pop("train_data", None) == "NAN":
    data["x"][3, 1] = np.nan
  with pytest.raises(error, match=re.escape(message)):
    resume.resumable_fit(FITTER, _state(), data, KEY, **args)
  assert afile.read_text() == "not a directory"


def _valid_mse(params, model_state, valid):
  del model_state
  return jnp.mean((valid["x"] @ params["w"] - valid["y"]) ** 2)


ES_FITTER = train.make_fitter(_loss, OPT, batch_size=B, eval_fn=_valid_mse,
                              patience=2)


@pytest.mark.default_xla
def test_early_stopping_state_survives_resume(tmp_path):
  """Early stopping FIRES (epoch 4, inside chunk [4, 6)) and its state --
  stopped flag, stopped/best epoch, best parameters, the bool/NaN history --
  round-trips through the epoch-6 checkpoint: a run stopped at 6 epochs and
  resumed to 8 equals an uninterrupted 8-epoch run bitwise."""
  # Validation targets from half the true weights: the validation error
  # falls while w passes w_true / 2, then rises (best epoch 2, patience 2).
  data = _data()
  valid = {"x": data["x"][:16],
           "y": data["x"][:16] @ (0.5 * np.array([1.0, -2.0, 0.5],
                                                 np.float32))}
  kw = dict(num_epochs=8, checkpoint_every_epochs=EVERY)
  ref = resume.resumable_fit(ES_FITTER, _state(), data, KEY, valid,
                             checkpoint_dir=str(tmp_path / "ref"), **kw)
  assert ref.history["stopped"].dtype == np.bool_
  assert int(ref.history["stopped_epoch"]) == 4
  assert int(ref.history["best_epoch"]) == 2
  np.testing.assert_array_equal(ref.history["stopped"], [False] * 5 +
                                [True] * 3)
  assert np.all(np.isnan(ref.history["valid_metric"][5:]))
  ckdir = str(tmp_path / "ck")
  first = resume.resumable_fit(ES_FITTER, _state(), data, KEY, valid,
                               checkpoint_dir=ckdir, num_epochs=6,
                               checkpoint_every_epochs=EVERY)
  assert bool(first.fit_state.early_stopping.stopped)  # in the checkpoint
  again = resume.resumable_fit(ES_FITTER, _state(), data, KEY, valid,
                               checkpoint_dir=ckdir, **kw)
  assert again.resumed_from == 6
  _assert_same(again, ref)
  # The returned parameters are the best epoch's, not the last ones.
  np.testing.assert_array_equal(
      again.state.params["w"],
      ref.fit_state.early_stopping.best_params["w"])
  assert not np.array_equal(again.state.params["w"],
                            again.fit_state.train.params["w"])
