"""Bad inputs a user will produce, fed to the public entry points.

Each case asserts the exception TYPE and a message FRAGMENT that names the
problem, and (for entry points that write files) that nothing already on disk
is damaged. Cases where an entry point does NOT give a clear error are marked
``xfail(strict=True)`` with the observed behaviour as the reason, so the test
starts failing (XPASS) the day the entry point is fixed; they are listed in
the scale helper's report for the module owners.

Cheap by construction: every case fails at validation, before any real
computation (no experiment runs its study here).
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import flax
import optax
import pytest

from jaxbdl import checkpoint
from jaxbdl import control_variates
from jaxbdl import data as data_lib
from jaxbdl import distributed
from jaxbdl import distributions
from jaxbdl import ensembles
from jaxbdl import estimators
from jaxbdl import gp
from jaxbdl import kernels
from jaxbdl import likelihoods
from jaxbdl import mc_dropout
from jaxbdl import metrics
from jaxbdl import networks
from jaxbdl import nngp
from jaxbdl import objectives
from jaxbdl import parallel
from jaxbdl import priors
from jaxbdl import results as results_lib
from jaxbdl import resume
from jaxbdl import train
from jaxbdl import uci_benchmark
from jaxbdl import vi

SENTINEL = '{"sentinel": true}\n'


class Case(NamedTuple):
  """``call(tmp_path)`` must raise ``error`` with ``fragment`` in its text."""
  call: Callable[[Any], Any]
  error: Any
  fragment: str
  xfail: str = ""  # observed behaviour when the entry point is not clear yet


def _xy(n=8, d=3, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)).astype(np.float32),
          rng.normal(size=(n,)).astype(np.float32))


def _mse_loss(params, model_state, batch, key):
  del key
  pred = batch["x"] @ params["w"]
  loss = jnp.mean((pred - batch["y"]) ** 2)
  return loss, (model_state, {})


def _fit(data, batch_size=4, **kw):
  opt = optax.sgd(0.1)
  fit = train.make_fit(_mse_loss, opt, num_epochs=1, batch_size=batch_size,
                       **kw)
  state = train.init_train_state({"w": jnp.zeros((3,))}, opt)
  return fit(state, data, jax.random.key(0))


def _with_nan(a, index=(1, 2)):
  a = np.array(a, copy=True)
  a[index] = np.nan
  return a


# --- UCI folders on disk -----------------------------------------------------


def _uci(tmp_path, *, drop=None, data_text=None, n_splits="1"):
  """Writes a tiny UCI-layout folder; optionally breaks one thing."""
  path = tmp_path / "uci"
  path.mkdir()
  rows = (data_text if data_text is not None else
          "\n".join(f"{i} {i % 3} {2 * i}" for i in range(10)))
  files = {"data.txt": rows, "index_features.txt": "0\n1",
           "index_target.txt": "2", "n_splits.txt": n_splits,
           "index_train_0.txt": "\n".join(map(str, range(8))),
           "index_test_0.txt": "8\n9"}
  for name, text in files.items():
    if name != drop:
      (path / name).write_text(text + "\n")
  return str(path)


def _afile(tmp_path):
  f = tmp_path / "afile"
  f.write_text("I am a regular file\n")
  return str(f)


# --- experiments -------------------------------------------------------------


def import_experiment(name: str):
  """Imports ``experiments.NAME`` even if another experiment defined the
  same absl flags (``--workdir``, ``--config``) in this process.

  Experiments define their flags at import time on the global ``FLAGS``, so a
  second experiment module raises ``DuplicateFlagError``; the clashing flag is
  removed from ``FLAGS`` and the import retried (``run()`` reads no flags).
  """
  from absl import flags
  for _ in range(200):
    try:
      return importlib.import_module(f"experiments.{name}")
    except flags.DuplicateFlagError as e:
      sys.modules.pop(f"experiments.{name}", None)
      flag = str(e).split("'")[1]
      delattr(flags.FLAGS, flag)
  raise RuntimeError(f"could not import experiments.{name}")


def _experiment(name: str, overrides: dict, workdir: str = "sentinel",
                **run_kw):
  """Runs ``experiments.NAME.run`` on its quick config with ``overrides``."""
  module = import_experiment(name)
  config = importlib.import_module(
      f"experiments.configs.{name}").get_config("quick")
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return lambda tmp_path: module.run(config, _workdir(tmp_path, workdir),
                                     **run_kw)


def _workdir(tmp_path, kind):
  if kind == "sentinel":  # an existing workdir with a results.json to protect
    wd = tmp_path / "wd"
    wd.mkdir(exist_ok=True)
    (wd / "results.json").write_text(SENTINEL)
    return str(wd)
  if kind == "file":  # an existing regular file
    return _afile(tmp_path)
  if kind == "under_file":  # a path below a regular file (root can't write)
    return os.path.join(_afile(tmp_path), "sub")
  raise ValueError(kind)


EXPERIMENT_CASES = {
    "bayes_logreg-unknown_estimator": Case(
        _experiment("bayes_logreg", {"estimators": ("pathwsie",)}),
        ValueError, "unknown estimator(s) ['pathwsie']"),
    "bnn_gradient_variance-unknown_estimator": Case(
        _experiment("bnn_gradient_variance", {"estimators": ("reinforce",)}),
        ValueError, "unknown estimator(s) ['reinforce']"),
    "cnn_rnn-unknown_pool": Case(
        _experiment("cnn_rnn", {"cnn.pool": "mean"}), ValueError,
        "unknown cnn.pool 'mean'"),
    "curve_fitting-too_few_points": Case(
        _experiment("curve_fitting", {"num_train": 1}), ValueError,
        "num_train >= 2"),
    "estimator_variance-unknown_cost": Case(
        _experiment("estimator_variance", {"costs": ("quartic",)}),
        ValueError, "unknown cost(s) ['quartic']"),
    "estimator_variance-num_samples_0": Case(
        _experiment("estimator_variance", {"num_samples": 0}), ValueError,
        "num_samples"),
    "map_regression-unknown_noise_model": Case(
        _experiment("map_regression", {"noise_models": ("student_t",)}),
        ValueError, "unknown noise model(s) ['student_t']"),
    "map_regression-negative_prior_scale": Case(
        _experiment("map_regression", {"prior_scale": -1.0}), ValueError,
        "config.prior_scale must be > 0"),
    "meta_learning-unknown_activation": Case(
        _experiment("meta_learning", {"activation": "relux"}), ValueError,
        "relux"),
    "nngp_convergence-unknown_activation": Case(
        _experiment("nngp_convergence", {"activations": ("gelu2",)}),
        ValueError, "unknown activation(s) ['gelu2']"),
    "nngp_regression-unknown_method": Case(
        _experiment("nngp_regression", {"methods": ("svgp",)}), ValueError,
        "unknown method(s) ['svgp']"),
    "nngp_regression-missing_data_dir": Case(
        _experiment("nngp_regression", {}, data_dirs=("/nonexistent/uci",)),
        FileNotFoundError, "/nonexistent/uci"),
    "regularisation-unknown_variant": Case(
        _experiment("regularisation", {"variants": ("dropconnect",)}),
        ValueError, "unknown variant(s) ['dropconnect']"),
    "transfer-unknown_method": Case(
        _experiment("transfer", {"methods": ("lora",)}), ValueError,
        "unknown methods ['lora']"),
    "transfer-unknown_cut": Case(
        _experiment("transfer", {"adapt.cut": "conv"}), ValueError,
        "unknown cut 'conv'"),
    "vanishing_gradients-unknown_initializer": Case(
        _experiment("vanishing_gradients", {"inits": (("xavier2", 1.0),)}),
        ValueError, "xavier2"),
    "backprop_check-unknown_activation": Case(
        _experiment("backprop_check", {"activations": ("swish2",)}),
        ValueError, "unknown activation(s) ['swish2']"),
    "train_resumable-unknown_parallel": Case(
        _experiment("train_resumable", {"parallel": "model"}), ValueError,
        "unknown config.parallel 'model'"),
    "train_resumable-missing_data_dir": Case(
        _experiment("train_resumable", {}, data_dir="/nonexistent/uci"),
        FileNotFoundError, "/nonexistent/uci"),
    "train_resumable-nan_in_data": Case(
        lambda tmp_path: _experiment(
            "train_resumable", {},
            data_dir=_uci(tmp_path, data_text="1 2 3\n4 nan 6\n" + "\n".join(
                f"{i} {i} {i}" for i in range(8))))(tmp_path),
        ValueError, "non-finite value nan at row 1"),
    "uci_regression-unknown_method": Case(
        _experiment("uci_regression", {"method": "svgp"}), ValueError,
        "unknown method(s) ['svgp']"),
    "uci_regression-missing_data_dir": Case(
        _experiment("uci_regression", {"data_dir": "/nonexistent/uci"}),
        FileNotFoundError, "--data_dir '/nonexistent/uci' does not exist"),
    "uci_regression-dataset_mismatch": Case(
        lambda tmp_path: _experiment(
            "uci_regression", {"data_dir": _uci(tmp_path),
                               "dataset": "boston"})(tmp_path),
        ValueError, "--dataset is 'boston'"),
    "gap_uncertainty-unknown_method": Case(
        _experiment("gap_uncertainty", {"methods": ("svgp",)}), ValueError,
        "unknown method(s) ['svgp']"),
    "gap_uncertainty-too_few_points": Case(
        _experiment("gap_uncertainty", {"num_points": 2}), ValueError,
        "need num_points >= 4"),
    # A workdir that cannot be written: an existing file, or a path under one.
    "estimator_variance-workdir_is_file": Case(
        _experiment("estimator_variance", {}, workdir="file"),
        NotADirectoryError, "is not a directory"),
    "regularisation-workdir_under_file": Case(
        _experiment("regularisation", {}, workdir="under_file"),
        PermissionError, "cannot create workdir"),
    "train_resumable-workdir_under_file": Case(
        _experiment("train_resumable", {}, workdir="under_file"),
        PermissionError, "cannot create workdir"),
}


# --- library entry points ----------------------------------------------------


X, Y = _xy()
OPT = optax.sgd(0.1)

LIBRARY_CASES = {
    # train
    "train-nan_in_data": Case(
        lambda t: train.check_finite_data({"x": _with_nan(X), "y": Y}),
        ValueError, "data['x'] has a non-finite value"),
    "train-empty_data": Case(lambda t: _fit({}), ValueError,
                             "training data is empty"),
    "train-zero_examples": Case(
        lambda t: _fit({"x": X[:0], "y": Y[:0]}), ValueError,
        "training data has no examples"),
    "train-mismatched_lengths": Case(
        lambda t: _fit({"x": X, "y": Y[:5]}), ValueError,
        "same leading (example) axis"),
    "train-batch_size_0": Case(lambda t: _fit({"x": X, "y": Y}, batch_size=0),
                               ValueError, "batch_size must be positive"),
    "train-batch_larger_than_data": Case(
        lambda t: _fit({"x": X, "y": Y}, batch_size=9), ValueError,
        "exceeds the number of training examples"),
    "train-patience_without_eval": Case(
        lambda t: train.make_fit(_mse_loss, OPT, num_epochs=2, batch_size=4,
                                 patience=2), ValueError, "needs an eval_fn"),
    "networks-params_for_other_input_dim": Case(
        lambda t: networks.MLP((4, 1)).apply(
            networks.MLP((4, 1)).init(jax.random.key(0), X),
            _xy(d=4)[0]), flax.errors.ScopeParamShapeError,
        "expected to generate shape (4, 4), but the existing parameter it "
        "received has shape (3, 4)"),
    # data
    "data-missing_uci_dir": Case(
        lambda t: data_lib.load_uci("/nonexistent/uci"), FileNotFoundError,
        "UCI data directory not found: /nonexistent/uci"),
    "data-uci_missing_file": Case(
        lambda t: data_lib.load_uci(_uci(t, drop="index_target.txt")),
        FileNotFoundError, "index_target.txt"),
    "data-uci_nan": Case(
        lambda t: data_lib.load_uci(_uci(t, data_text="1 2 3\nnan 2 3")),
        ValueError, "non-finite value nan at row 1"),
    "data-uci_ragged_row": Case(
        lambda t: data_lib.load_uci(_uci(t, data_text="1 2 3\n4 5")),
        ValueError, "data.txt"),
    "data-uci_empty_table": Case(
        lambda t: data_lib.load_uci(_uci(t, data_text="")), ValueError,
        "no data rows"),
    "data-uci_zero_splits": Case(
        lambda t: data_lib.load_uci(_uci(t, n_splits="0")), ValueError,
        "n_splits must be >= 1"),
    "data-uci_dir_is_file": Case(
        lambda t: data_lib.load_uci(_afile(t)), FileNotFoundError,
        "UCI data directory not found"),
    "data-split_out_of_range": Case(
        lambda t: data_lib.uci_split(data_lib.load_uci(_uci(t)), 3),
        ValueError, "split 3 out of range"),
    "data-list_missing_root": Case(
        lambda t: data_lib.list_uci_datasets("/nonexistent/root"),
        FileNotFoundError, "UCI data root not found"),
    "data-split_mismatched_xy": Case(
        lambda t: data_lib.train_test_split_arrays(0, X, Y[:5]), ValueError,
        "same number of examples"),
    "data-split_fraction_0": Case(
        lambda t: data_lib.train_test_split_arrays(0, X, Y, 0.0), ValueError,
        "test_fraction must be in (0, 1)"),
    "data-standardise_mismatched": Case(
        lambda t: data_lib.standardise(X, X[:, :2]), ValueError,
        "trailing shape"),
    # likelihoods / priors
    "likelihoods-tau_0": Case(lambda t: likelihoods.gaussian(Y, Y, 0.0),
                              ValueError, "tau must be > 0"),
    "likelihoods-negative_scale": Case(
        lambda t: likelihoods.gaussian_scale(Y, Y, -1.0), ValueError,
        "scale must be > 0"),
    "likelihoods-mismatched_shapes": Case(
        lambda t: likelihoods.gaussian(Y, Y[:5], 1.0), ValueError,
        "targets (8,) and predictions (5,)"),
    "likelihoods-nan_check": Case(
        lambda t: likelihoods.check_finite("y", _with_nan(X)), ValueError,
        "y has 1 non-finite value(s)"),
    "likelihoods-string_dtype": Case(
        lambda t: likelihoods.check_finite("y", np.array(["a", "b"])),
        ValueError, "y must be numeric"),
    "priors-scale_0": Case(lambda t: priors.gaussian({"w": X}, 0.0),
                           ValueError, "prior scale must be > 0"),
    "priors-negative_laplace_scale": Case(
        lambda t: priors.laplace({"w": X}, -2.0), ValueError,
        "prior scale must be > 0"),
    "objectives-num_data_0": Case(
        lambda t: objectives.make_map_loss_fn(
            objectives.stateless(lambda p, x: x), likelihoods.bernoulli,
            priors.flat, num_data=0), ValueError, "num_data must be > 0"),
    "objectives-bad_batch": Case(
        lambda t: objectives.unpack_batch({"inputs": X}), ValueError,
        "missing key(s) ['x', 'y']"),
    # metrics
    "metrics-rmse_mismatched": Case(
        lambda t: metrics.rmse(Y, Y[:5]), ValueError, "rmse"),
    "metrics-accuracy_mismatched": Case(
        lambda t: metrics.accuracy(np.zeros(4, np.int32), np.zeros((5, 2))),
        ValueError, "accuracy"),
    "metrics-ece_num_bins_0": Case(
        lambda t: metrics.expected_calibration_error(
            np.zeros(4, np.int32), np.full((4, 2), 0.5, np.float32),
            num_bins=0), ValueError, "num_bins"),
    "metrics-mean_and_se_empty": Case(
        lambda t: metrics.mean_and_se(jnp.zeros((0,))), ValueError, "empty"),
    "metrics-predictive_ll_negative_variance": Case(
        lambda t: metrics.gaussian_predictive_log_likelihood(
            Y, Y[None, :], -1.0), ValueError, "variance"),
    # estimators / distributions / vi
    "estimators-num_samples_0": Case(
        lambda t: estimators.pathwise(lambda x: x ** 2, distributions.Normal)(
            {"loc": jnp.zeros(()), "scale": jnp.ones(())}, jax.random.key(0),
            0), ValueError, "num_samples must be >= 1, got 0"),
    "estimators-num_samples_float": Case(
        lambda t: estimators.score_function(
            lambda x: x, distributions.Normal)(
                {"loc": jnp.zeros(()), "scale": jnp.ones(())},
                jax.random.key(0), 2.5), ValueError,
        "num_samples must be a static Python int"),
    "distributions-missing_param": Case(
        lambda t: distributions.Normal.log_prob({"loc": jnp.zeros(())},
                                                jnp.zeros(())),
        ValueError, "Normal params must"),
    "distributions-negative_scale": Case(
        lambda t: distributions.Normal.sample(
            {"loc": jnp.zeros(()), "scale": -jnp.ones(())}, jax.random.key(0)),
        ValueError, "scale"),
    "vi-num_samples_0": Case(
        lambda t: vi.make_elbo_loss_fn(lambda w, x: x, None,
                                       vi.gaussian_prior(1.0), num_data=8,
                                       num_samples=0), ValueError,
        "num_samples must be a positive int"),
    "vi-prior_scale_0": Case(lambda t: vi.gaussian_prior(0.0), ValueError,
                             "scale"),
    "ensembles-zero_members": Case(
        lambda t: ensembles.member_keys(jax.random.key(0), 0), ValueError,
        "num_members must be a positive int, got 0"),
    "mc_dropout-rate_1": Case(
        lambda t: mc_dropout.weight_decay_from_precision(1.0, 1.0, 1.0, 10),
        ValueError, "dropout_rate must be in [0, 1), got 1.0"),
    "control_variates-decay_above_1": Case(
        lambda t: control_variates.moving_average_baseline(decay=1.5),
        ValueError, "decay must be in [0, 1), got 1.5"),
    "uci_benchmark-unknown_method": Case(
        lambda t: uci_benchmark.check_method_names(["svgp"]), ValueError,
        "unknown method(s) ['svgp']"),
    # kernels / nngp / gp
    "kernels-mismatched_dims": Case(
        lambda t: kernels.rbf(X, X[:, :2]), ValueError, "rbf"),
    "kernels-nan_input": Case(lambda t: kernels.rbf(_with_nan(X), X),
                              ValueError, "rbf"),
    "kernels-lengthscale_0": Case(
        lambda t: kernels.rbf(X, X, lengthscale=0.0), ValueError,
        "lengthscale"),
    "kernels-unknown_name": Case(lambda t: kernels.get_kernel("periodic"),
                                 ValueError, "unknown kernel 'periodic'"),
    "nngp-unknown_activation": Case(
        lambda t: nngp.nngp_kernel(X, X, 2, activation="gelu2"), ValueError,
        "gelu2"),
    "nngp-negative_depth": Case(lambda t: nngp.nngp_kernel(X, X, -1),
                                ValueError, "depth"),
    "gp-noise_0": Case(
        lambda t: gp.fit(kernels.rbf, X, Y, noise_variance=0.0), ValueError,
        "noise_variance"),
    "gp-mismatched_xy": Case(
        lambda t: gp.fit(kernels.rbf, X, Y[:5], noise_variance=0.1),
        ValueError, "gp.fit"),
    "gp-nan_targets": Case(
        lambda t: gp.fit(kernels.rbf, X, _with_nan(Y, (3,)),
                         noise_variance=0.1), ValueError, "gp.fit"),
    # networks
    "networks-unknown_activation": Case(
        lambda t: networks.get_activation("relux"), ValueError, "relux"),
    "networks-unknown_initializer": Case(
        lambda t: networks.get_initializer("xavier2"), ValueError, "xavier2"),
    "networks-empty_features": Case(
        lambda t: networks.MLP(features=()).init(jax.random.key(0), X),
        ValueError, "MLP.features must be non-empty"),
    "networks-1d_input": Case(
        lambda t: networks.MLP(features=(4, 1)).init(jax.random.key(0), Y),
        ValueError, "MLP expects inputs [N, D]"),
    # checkpoint
    "checkpoint-restore_missing": Case(
        lambda t: checkpoint.restore(str(t / "nope")), FileNotFoundError,
        "checkpoint not found"),
    "checkpoint-restore_mismatched_tree": Case(
        lambda t: checkpoint.restore(
            checkpoint.save(str(t / "ck"), {"w": jnp.zeros(3)}),
            {"w": jnp.zeros(4)}), ValueError, "checkpoint shape [3]"),
    "checkpoint-save_over_existing": Case(
        lambda t: [checkpoint.save(str(t / "ck"), {"w": jnp.zeros(3)}),
                   checkpoint.save(str(t / "ck"), {"w": jnp.ones(3)})],
        FileExistsError, "already exists"),
    "checkpoint-save_under_file": Case(
        lambda t: checkpoint.save(os.path.join(_afile(t), "ck"),
                                  {"w": jnp.zeros(3)}), OSError, "afile"),
    "checkpoint-restore_not_a_checkpoint": Case(
        lambda t: checkpoint.restore(str(t)), FileNotFoundError,
        "not a finished checkpoint"),
    # results
    "results-workdir_is_file": Case(
        lambda t: results_lib.ensure_workdir(_afile(t)), NotADirectoryError,
        "is not a directory"),
    "results-workdir_under_file": Case(
        lambda t: results_lib.ensure_workdir(os.path.join(_afile(t), "x")),
        PermissionError, "cannot create workdir"),
    "results-empty_table": Case(lambda t: results_lib.markdown_table([]),
                                ValueError, "at least one row"),
    # parallel / distributed / resume (this helper's modules)
    "parallel-unknown_strategy": Case(
        lambda t: parallel.make_strategy("pipeline"), ValueError,
        "unknown parallel strategy 'pipeline'"),
    "distributed-missing_coordinator": Case(
        lambda t: distributed.initialize(None, 2, 0), ValueError,
        "coordinator_address"),
    "distributed-uneven_hosts": Case(
        lambda t: distributed.host_shard({"x": X}, 0, 3), ValueError,
        "8 examples is not a multiple of 3 processes"),
    "resume-checkpoint_dir_is_file": Case(
        lambda t: resume.resumable_fit(
            train.make_fitter(_mse_loss, OPT, batch_size=4),
            train.init_train_state({"w": jnp.zeros(3)}, OPT),
            {"x": X, "y": Y}, jax.random.key(0), num_epochs=1,
            checkpoint_dir=_afile(t), checkpoint_every_epochs=1),
        NotADirectoryError, "is not a directory"),
    "resume-nan_in_data": Case(
        lambda t: resume.resumable_fit(
            train.make_fitter(_mse_loss, OPT, batch_size=4),
            train.init_train_state({"w": jnp.zeros(3)}, OPT),
            {"x": _with_nan(X), "y": Y}, jax.random.key(0), num_epochs=1,
            checkpoint_dir=str(t / "ck"), checkpoint_every_epochs=1),
        ValueError, "train_data['x'] has a non-finite value"),
}


def _params(cases):
  out = []
  for name, case in cases.items():
    marks = ([pytest.mark.xfail(strict=True, reason=case.xfail)]
             if case.xfail else [])
    out.append(pytest.param(case, id=name, marks=marks))
  return out


def _check(case: Case, tmp_path) -> None:
  with pytest.raises(case.error) as e:
    case.call(tmp_path)
  assert case.fragment in str(e.value), str(e.value)


@pytest.mark.parametrize("case", _params(LIBRARY_CASES))
def test_library_bad_input(case, tmp_path):
  _check(case, tmp_path)


@pytest.mark.parametrize("case", _params(EXPERIMENT_CASES))
def test_experiment_bad_input_keeps_disk_intact(case, tmp_path):
  _check(case, tmp_path)
  sentinel = tmp_path / "wd" / "results.json"
  if sentinel.exists():  # an earlier result survives, nothing else appears
    assert sentinel.read_text() == SENTINEL
    assert sorted(os.listdir(tmp_path / "wd")) == ["results.json"]
  afile = tmp_path / "afile"
  if afile.exists():  # the file used as (or above) the workdir is untouched
    assert afile.read_text() == "I am a regular file\n"


def test_unknown_config_override_flag():
  """``--config.bogus=1`` on the command line is refused by config_flags."""
  from absl import flags
  from ml_collections import config_flags
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv,
                                  lock_config=True)
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                      "experiments", "configs", "train_resumable.py")
  with pytest.raises(flags.Error) as e:
    fv(["prog", f"--config={path}:quick", "--config.bogus=1"])
  assert "bogus" in str(e.value)
