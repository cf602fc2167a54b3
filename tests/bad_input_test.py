"""Bad inputs a user will produce, fed to the public entry points.

Each case asserts the exception TYPE and a message FRAGMENT that names the
problem, and (for entry points that write files) that nothing already on disk
is damaged. Cases where an entry point does NOT give a clear error are marked
``xfail(strict=True)`` with the observed behaviour as the reason, so the test
starts failing (XPASS) the day the entry point is fixed; they are listed in
the scale helper's report for the module owners.

Cheap by construction: every case fails at validation, before any real
computation (no experiment runs its study here). The message is asserted with
``pytest.raises(..., match=re.escape(fragment))``.

Config cases are generated: for every experiment config and every scalar
field that has a rule in ``experiments.validate``, the command-line override
``--config.FIELD=<a violating value>`` must be refused by ``launch.parse``
with ``config.FIELD must be <rule>, got <value>`` before any work, and the
workdir's existing ``results.json`` must be untouched.
"""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import flax
import optax
import pytest

from jaxbdl.training import checkpoint
from jaxbdl.gradients import control_variates
from jaxbdl import data as data_lib
from jaxbdl.training import distributed
from jaxbdl.gradients import distributions
from jaxbdl.gradients import estimators
from jaxbdl.gaussian_processes import gp
from jaxbdl.gaussian_processes import kernels
from jaxbdl.evaluation import metrics
from jaxbdl.nn import networks
from jaxbdl.gaussian_processes import nngp
from jaxbdl.nn import objectives
from jaxbdl.training import parallel
from jaxbdl.evaluation import results as results_lib
from jaxbdl.training import resume
from jaxbdl.training import train
from jaxbdl.bayes import elbo as bayes_elbo
from jaxbdl.bayes import likelihoods as bayes_likelihoods
from jaxbdl.bayes import priors as bayes_priors
from jaxbdl.bayes import ensembles
from jaxbdl.bayes import laplace as bayes_laplace
from jaxbdl.bayes import posterior as bayes_posterior
from jaxbdl.bayes import mc_dropout
from jaxbdl.bayes import registry
from absl import flags as absl_flags
from experiments import launch
from experiments import validate
from scripts import regen_docs
from tests import helpers

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
  """Imports ``experiments.NAME`` (experiments define absl flags only when
  run as programs, in ``launch.main`` / their ``main``, so any number of
  them import into one process)."""
  return importlib.import_module(f"experiments.{name}")


def _experiment(name: str, overrides: dict, workdir: str = "sentinel",
                **run_kw):
  """Runs ``experiments.NAME.run`` on its quick config with ``overrides``."""
  module = import_experiment(name)
  config = _quick_config(name, overrides)
  return lambda tmp_path: module.run(config, _workdir(tmp_path, workdir),
                                     **run_kw)


def _quick_config(name: str, overrides: dict):
  """NAME's quick config with ``overrides`` (dotted paths -> values)."""
  config = importlib.import_module(
      f"experiments.configs.{name}").get_config("quick")
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


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
    "laplace_classification-unknown_network": Case(
        _experiment("laplace_classification", {"networks": ("resnet",)}),
        ValueError, "config.networks must be a non-empty subset"),
    "laplace_classification-unknown_variant": Case(
        _experiment("laplace_classification", {"mlp.laplace": ("diag",)}),
        ValueError, "config.mlp.laplace entries must be in"),
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
        "config.num_train must be an int >= 2, got 1"),
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

def _online(**kw):
  """``laplace.online.marglik_training`` on a 2-weight linear model."""
  params = {"kernel": jnp.zeros((2, 1))}
  la = bayes_laplace.Laplace(lambda p, x: x @ p["kernel"], params,
                             "regression")
  return lambda t: bayes_laplace.online.marglik_training(
      la, params, jnp.ones((4, 2)), jnp.ones((4,)), jax.random.key(0),
      **{"num_epochs": 2, "batch_size": 2, **kw})


def _laplace_method(marglik):
  config = registry.default_config()
  config.marglik = marglik
  model = bayes_posterior.mlp_model(
      (), 1, lambda hp: bayes_likelihoods.gaussian(),
      lambda hp: bayes_priors.gaussian(1.0))
  return lambda t: registry.build("laplace_kfac", model, config)


LIBRARY_CASES = {
    # Laplace (online marginal likelihood, registry option)
    "laplace-online_zero_epochs": Case(
        _online(num_epochs=0), ValueError,
        "num_epochs must be an int >= 1, got 0"),
    "laplace-online_negative_prior": Case(
        _online(prior_precision=-1.0), ValueError,
        "prior_precision must be > 0"),
    "laplace-unknown_marglik_mode": Case(
        _laplace_method("onlin"), ValueError,
        "config.marglik must be one of"),
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
    "likelihoods-scale_0": Case(lambda t: bayes_likelihoods.gaussian(0.0),
                                ValueError,
                                "noise_scale must be a positive finite"),
    "likelihoods-mismatched_shapes": Case(
        lambda t: bayes_likelihoods.gaussian(1.0).log_prob(
            {}, Y, Y[:5, None]), ValueError,
        "targets must be [N] and outputs [N, 1], got (8,) and (5, 1)"),
    "likelihoods-nan_check": Case(
        lambda t: data_lib.check_finite("y", _with_nan(X)), ValueError,
        "y has 1 non-finite value(s)"),
    "likelihoods-string_dtype": Case(
        lambda t: data_lib.check_finite("y", np.array(["a", "b"])),
        ValueError, "y must be numeric"),
    "priors-negative_laplace_scale": Case(
        lambda t: bayes_priors.laplace(-2.0), ValueError,
        "laplace prior scale must be a positive finite number, got -2.0"),
    "objectives-num_data_0": Case(
        lambda t: objectives.make_map_loss_fn(
            objectives.stateless(lambda p, x: x),
            bayes_likelihoods.bernoulli_log_prob, lambda p: 0.0,
            num_data=0), ValueError, "num_data must be > 0"),
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
    "elbo-num_samples_0": Case(
        lambda t: bayes_elbo.make_loss_fn(
            bayes_elbo.weight_space(lambda w, x: x),
            bayes_likelihoods.gaussian(1.0), bayes_priors.gaussian(1.0),
            num_data=8, num_samples=0), ValueError,
        "num_samples must be a positive int"),
    "priors-prior_scale_0": Case(lambda t: bayes_priors.gaussian(0.0),
                                 ValueError, "scale must be a positive"),
    "likelihoods-noise_scale_nan": Case(
        lambda t: bayes_likelihoods.gaussian(float("nan")), ValueError,
        "noise_scale must be a positive finite number, got nan"),
    "likelihoods-categorical_one_class": Case(
        lambda t: bayes_likelihoods.categorical(1), ValueError,
        "num_classes must be an int >= 2, got 1"),
    "registry-duplicate_method": Case(
        lambda t: registry.check_names("map,map"), ValueError,
        "method(s) ['map'] listed more than once"),
    "registry-all_and_more": Case(
        lambda t: registry.check_names("all,mfvi"), ValueError,
        "'all' cannot be combined"),
    "ensembles-zero_members": Case(
        lambda t: ensembles.member_keys(jax.random.key(0), 0), ValueError,
        "num_members must be a positive int, got 0"),
    "mc_dropout-rate_1": Case(
        lambda t: mc_dropout.weight_decay_from_precision(1.0, 1.0, 1.0, 10),
        ValueError, "dropout_rate must be in [0, 1), got 1.0"),
    "control_variates-decay_above_1": Case(
        lambda t: control_variates.moving_average_baseline(decay=1.5),
        ValueError, "decay must be in [0, 1), got 1.5"),
    "registry-unknown_method": Case(
        lambda t: registry.check_names(["svgp"]), ValueError,
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
  with pytest.raises(case.error, match=re.escape(case.fragment)):
    case.call(tmp_path)


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


# --- experiment configs on the command line (launch.parse) -------------------

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments", "configs")
CONFIG_NAMES = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                      if f.endswith(".py") and f != "__init__.py")


def _sentinel_workdir(tmp_path) -> str:
  return _workdir(tmp_path, "sentinel")


def _parse(name, *overrides, config_arg=":quick"):
  """``launch.parse`` of ``--workdir=<sentinel> --config=NAME.py:quick``."""
  def call(tmp_path):
    argv = ["prog", f"--workdir={_sentinel_workdir(tmp_path)}",
            f"--config={CONFIG_DIR}/{name}.py{config_arg}", *overrides]
    fv = absl_flags.FlagValues()
    launch.define_flags(name, fv, argv)
    return launch.parse(name, argv, fv)
  return call


def _violation(rule, value):
  """A value of ``value``'s type that ``rule`` refuses, or None."""
  if isinstance(value, bool):
    return None
  candidates = ([0, -1, 10 ** 6] if isinstance(value, int)
                else [-1.0, 0.0, 1.0, 1.5])
  return next((c for c in candidates if not rule.ok(c)), None)


def _config_cases() -> dict:
  cases = {}
  for name in CONFIG_NAMES:
    config = importlib.import_module(
        f"experiments.configs.{name}").get_config("quick")
    cases[f"{name}-unknown_field"] = Case(
        _parse(name, "--config.bogus=1"), validate.ConfigError,
        "unknown config field 'bogus' in --config.bogus=1; valid fields: ")
    first_float = True
    for path, value in validate._leaves(config):
      rule = validate.rule_for(path, name)
      if rule is None or isinstance(value, (tuple, list, str, type(None))):
        continue
      bad = _violation(rule, value)
      if bad is not None:
        cases[f"{name}-{path}={bad}"] = Case(
            _parse(name, f"--config.{path}={bad}"), validate.ConfigError,
            f"config.{path} must be {rule.text}, got {bad!r}")
      if isinstance(value, float) and first_float:
        first_float = False
        cases[f"{name}-{path}=nan"] = Case(
            _parse(name, f"--config.{path}=nan"), validate.ConfigError,
            f"config.{path} must be {rule.text}, got nan")
  return cases


def _check_config(name, **overrides):
  """``validate.check_config`` on NAME's quick config; ``a__b=v`` sets ``a.b``."""
  def call(tmp_path):
    del tmp_path
    validate.check_config(name, _quick_config(
        name, {k.replace("__", "."): v for k, v in overrides.items()}))
  return call


CONFIG_CASES = {
    **_config_cases(),
    # The reported ones: these ran to the end with rc 0 and NaN results.
    "gap_uncertainty-num_predict_samples_0": Case(
        _parse("gap_uncertainty", "--config.model.num_predict_samples=0"),
        validate.ConfigError,
        "config.model.num_predict_samples must be an int >= 1, got 0"),
    "uci_regression-num_predict_samples_0": Case(
        _parse("uci_regression", "--config.num_predict_samples=0"),
        validate.ConfigError,
        "config.num_predict_samples must be an int >= 1, got 0"),
    "map_regression-negative_learning_rate": Case(
        _parse("map_regression", "--config.learning_rate=-0.01"),
        validate.ConfigError,
        "config.learning_rate must be a finite number > 0, got -0.01"),
    "map_regression-inf_learning_rate": Case(
        _parse("map_regression", "--config.learning_rate=inf"),
        validate.ConfigError,
        "config.learning_rate must be a finite number > 0, got inf"),
    "transfer-nested_learning_rate": Case(
        _parse("transfer", "--config.adapt.learning_rate.frozen=-1e-3"),
        validate.ConfigError,
        "config.adapt.learning_rate.frozen must be a finite number > 0, got "
        "-0.001"),
    "curve_fitting-unknown_nested_field": Case(
        _parse("gap_uncertainty", "--config.model.bogus=3"),
        validate.ConfigError, "unknown config field 'model.bogus'"),
    "curve_fitting-bad_float_text": Case(
        _parse("curve_fitting", "--config.learning_rate=abc"),
        validate.ConfigError,
        "flag --config.learning_rate=abc: could not convert string to float"),
    "curve_fitting-missing_config_file": Case(
        _parse("curve_fitting", config_arg="_nope.py"), validate.ConfigError,
        "cannot load config"),
    "curve_fitting-unknown_variant": Case(
        _parse("curve_fitting", config_arg=":tiny"), validate.ConfigError,
        "cannot load config"),
    "curve_fitting-tuple_element": Case(
        _check_config("curve_fitting", widths=(4, 0)), validate.ConfigError,
        "config.widths must be an int >= 1, got 0 in (4, 0)"),
    "cnn_rnn-nan_in_tuple": Case(
        _check_config("gap_uncertainty", model__hidden=(8, 0)),
        validate.ConfigError,
        "config.model.hidden must be an int >= 1, got 0 in (8, 0)"),
    "uci_regression-grid_nan": Case(
        _check_config("uci_regression",
                      grid__mc_dropout__prior_scale=(1.0, float("nan"))),
        validate.ConfigError,
        "config.grid.mc_dropout.prior_scale must be a finite number > 0, got "
        "nan"),
    "estimator_variance-unruled_inf": Case(
        _check_config("estimator_variance", bound_k=float("inf")),
        validate.ConfigError, "config.bound_k must be a finite number, got inf"),
}


@pytest.mark.parametrize("case", _params(CONFIG_CASES))
def test_bad_config_refused_before_work(case, tmp_path):
  _check(case, tmp_path)
  sentinel = tmp_path / "wd" / "results.json"
  if sentinel.exists():
    assert sentinel.read_text() == SENTINEL
    assert sorted(os.listdir(tmp_path / "wd")) == ["results.json"]


def test_command_line_bad_config_is_one_line_rc_2(tmp_path):
  """The program itself: exit status 2, one stderr line, nothing written."""
  wd = _sentinel_workdir(tmp_path)
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  root = os.path.dirname(CONFIG_DIR).rsplit(os.sep, 1)[0]
  uci_root = tmp_path / "uci_root"
  uci_root.mkdir()
  os.rename(_uci(tmp_path), uci_root / "tiny")
  # Each run costs a jax import; the value checks share the parser with the
  # in-process cases above. The second is an entry point with its own main:
  # its data-set check runs before any work (was a traceback).
  for module, args, expected in [
      ("curve_fitting", [f"--config={CONFIG_DIR}/curve_fitting.py:quick",
                         "--config.bogus=1"],
       "curve_fitting: unknown config field 'bogus'"),
      ("uci_regression", [f"--data_dir={uci_root}", "--dataset=nosuch",
                          "--method=map"],
       "uci_regression: unknown dataset 'nosuch' under "),
  ]:
    p = subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", f"--workdir={wd}",
         *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), p.stderr
  assert (tmp_path / "wd" / "results.json").read_text() == SENTINEL
  assert sorted(os.listdir(tmp_path / "wd")) == ["results.json"]


# --- method lists, results files, data numerics, docs ------------------------

VALID = ("map", "mfvi", "ensemble")


def _merge_into_corrupt(t):
  path = t / "results.json"
  path.write_text('{"yacht": ')
  results_lib.merge_json(str(path), ["yacht", "map"], {"rmse": 1.0})


def _merge_under_leaf(t):
  path = t / "results.json"
  path.write_text(SENTINEL)
  results_lib.merge_json(str(path), ["sentinel", "map"], {"rmse": 1.0})


def _uci_with(tmp_path, name, content: bytes, data_text=None):
  d = _uci(tmp_path, data_text=data_text)
  with open(os.path.join(d, name), "wb") as f:
    f.write(content)
  return d


def _doc(text):
  return lambda t: regen_docs.regenerate(text, str(t), "DOC.md")


def _standardise(scale, others_scale=None):
  x = scale * np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
  if others_scale is None:
    return lambda t: data_lib.standardise(x)
  return lambda t: data_lib.standardise(
      np.array([[1.0], [2.0]]), np.array([[others_scale]]))


MORE_CASES = {
    # validate.method_list (registry.check_names with its own valid names)
    "method_list-duplicate": Case(
        lambda t: validate.method_list("map,map", VALID), validate.ConfigError,
        "method(s) ['map'] listed more than once in 'map,map'"),
    "method_list-all_and_name": Case(
        lambda t: validate.method_list("all,mfvi", VALID),
        validate.ConfigError, "'all' cannot be combined with other methods"),
    "method_list-unknown": Case(
        lambda t: validate.method_list("map,svgp", VALID),
        validate.ConfigError,
        "unknown method(s) ['svgp']; valid: ['map', 'mfvi', 'ensemble'] or "
        "'all'"),
    "method_list-empty": Case(
        lambda t: validate.method_list("", VALID), validate.ConfigError,
        "empty method list"),
    "method_list-empty_name": Case(
        lambda t: validate.method_list("map,,mfvi", VALID),
        validate.ConfigError, "empty or non-string method name"),
    "method_list-not_a_list": Case(
        lambda t: validate.method_list(3, VALID), validate.ConfigError,
        "method list must be a string or a sequence of names, got 3"),
    "method_list-tuple_duplicate": Case(
        lambda t: validate.method_list(("mfvi", "mfvi"), VALID, "data set"),
        validate.ConfigError, "data set(s) ['mfvi'] listed more than once"),
    # results files
    "results-merge_corrupt_file": Case(
        _merge_into_corrupt, ValueError, "not a valid JSON results file"),
    "results-merge_into_leaf": Case(
        _merge_under_leaf, ValueError,
        "sentinel holds a bool, not an object; cannot merge"),
    "results-merge_empty_key": Case(
        lambda t: results_lib.merge_json(str(t / "r.json"), ["a", ""], {}),
        ValueError, "key_path must be non-empty strings"),
    "results-merge_no_key": Case(
        lambda t: results_lib.merge_json(str(t / "r.json"), [], {}),
        ValueError, "key_path must be non-empty strings"),
    "results-merge_entry_not_mapping": Case(
        lambda t: results_lib.merge_json(str(t / "r.json"), ["a"], [1]),
        ValueError, "entry must be a mapping, got list"),
    "results-merge_complete_not_bool": Case(
        lambda t: results_lib.merge_json(str(t / "r.json"), ["a"], {},
                                         complete="no"),
        ValueError, "complete must be a bool"),
    "results-write_results_not_mapping": Case(
        lambda t: results_lib.write_results_json(str(t / "r.json"), [1]),
        ValueError, "must be a mapping, got list"),
    "results-read_latin1_json": Case(
        lambda t: [(t / "r.json").write_bytes(b'{"a": "\xe9"}'),
                   results_lib.read_json(str(t / "r.json"))],
        ValueError, "r.json: not a valid JSON results file"),
    "results-nan_in_json_is_null_not_error": Case(
        lambda t: results_lib.atomic_write_json(str(t / "r.json"),
                                                {"a": object()}),
        TypeError, "not JSON serializable"),
    # data: encodings and index files
    "data-latin1_in_data": Case(
        lambda t: data_lib.load_uci(_uci_with(
            t, "data.txt", b"1 2 3\n4 5 6\n7 \xe98 9\n")), ValueError,
        "data.txt: line 3: byte b'\\xe9' at column 3 is not UTF-8"),
    "data-latin1_in_index": Case(
        lambda t: data_lib.load_uci(_uci_with(
            t, "index_test_0.txt", b"8\n9\xb0\n")), ValueError,
        "index_test_0.txt: line 2: byte b'\\xb0' at column 2 is not UTF-8"),
    "data-huge_index": Case(
        lambda t: data_lib.load_uci(_uci_with(t, "index_test_0.txt",
                                              b"8\n1e20\n")), ValueError,
        "index_test_0.txt: line 2: row index 1e+20 is out of range [0, 10)"),
    "data-negative_index": Case(
        lambda t: data_lib.load_uci(_uci_with(t, "index_train_0.txt",
                                              b"0 1\n2 -3\n")), ValueError,
        "index_train_0.txt: line 2: row index -3 is out of range [0, 10)"),
    "data-inf_index": Case(
        lambda t: data_lib.load_uci(_uci_with(t, "index_features.txt",
                                              b"0\ninf\n")), ValueError,
        "index_features.txt: line 2: index inf is not an integer"),
    "data-word_in_index": Case(
        lambda t: data_lib.load_uci(_uci_with(t, "index_target.txt",
                                              b"two\n")), ValueError,
        "index_target.txt: line 1: cannot parse 'two' as a number"),
    "data-huge_n_splits": Case(
        lambda t: data_lib.load_uci(_uci_with(t, "n_splits.txt", b"1e20\n")),
        ValueError, "n_splits.txt: expected one integer, got [1e+20]"),
    "data-duplicate_index": Case(
        lambda t: data_lib.load_uci(_uci_with(t, "index_test_0.txt",
                                              b"8\n8\n")), ValueError,
        "duplicate row indices (first: 8)"),
    # data: numerics of standardisation
    "data-standardise_1e200": Case(
        _standardise(1e200), ValueError,
        "standardise: x_train column[0]: training mean 2e+200 is beyond "
        "float32's range"),
    "data-standardise_1e-300": Case(
        _standardise(1e-300), ValueError,
        "standardise: x_train column[0]: training std 8.16e-301 is below "
        "float32's smallest normal"),
    "data-standardise_others_overflow": Case(
        _standardise(1.0, 1e300), ValueError,
        "standardise: x_others[0][0, 0] standardises to 2e+300, beyond "
        "float32's range"),
    "data-standardise_no_examples": Case(
        lambda t: data_lib.standardise(np.zeros((0, 2))), ValueError,
        "standardise: x_train has no examples"),
    "data-uci_split_1e200_targets": Case(
        lambda t: data_lib.uci_split(data_lib.load_uci(_uci(
            t, data_text="\n".join(f"{i} {i % 3} {i}e200" for i in
                                   range(1, 11)))), 0), ValueError,
        "uci split 0: target: training mean 4.5e+200 is beyond float32"),
    "data-uci_split_1e-300_targets": Case(
        lambda t: data_lib.uci_split(data_lib.load_uci(_uci(
            t, data_text="\n".join(f"{i} {i % 3} {i}e-300" for i in
                                   range(1, 11)))), 0), ValueError,
        "uci split 0: target: training std 2.29e-300 is below float32's "
        "smallest normal"),
    "data-uci_split_1e200_feature": Case(
        lambda t: data_lib.uci_split(data_lib.load_uci(_uci(
            t, data_text="\n".join(f"{i}e200 {i % 3} {i}" for i in
                                   range(1, 11)))), 0), ValueError,
        "uci split 0: feature column[0]: training mean 4.5e+200"),
    # metrics
    "metrics-accuracy_nan_row": Case(
        lambda t: metrics.accuracy(np.array([0, 1]), np.array(
            [[0.2, 0.8], [np.nan, np.nan]], np.float32)), ValueError,
        "accuracy: logits_or_probs has 2 non-finite value(s), first nan at "
        "index [1, 0]"),
    "metrics-rmse_original_units_negative_std": Case(
        lambda t: metrics.rmse_original_units(Y, Y + 1, -2.0), ValueError,
        "rmse_original_units: y_std must be > 0, got -2.0"),
    "metrics-rmse_nan": Case(
        lambda t: metrics.rmse(_with_nan(Y, (3,)), Y), ValueError,
        "rmse: y has 1 non-finite value(s), first nan at index [3]"),
    "metrics-nll_prob_above_1": Case(
        lambda t: metrics.nll(np.array([0]), np.array([[1.5, -0.5]])),
        ValueError, "nll: probs must be in [0, 1], got 1.5 at index [0, 0]"),
    "metrics-ece_float_labels": Case(
        lambda t: metrics.expected_calibration_error(
            np.array([0.5]), np.array([[0.5, 0.5]])), ValueError,
        "expected_calibration_error: labels must be integers, got 0.5"),
    "metrics-string_labels": Case(
        lambda t: metrics.accuracy(np.array(["a"]), np.array([[0.5, 0.5]])),
        ValueError, "accuracy: labels must be numeric"),
    "metrics-mean_and_se_inf": Case(
        lambda t: metrics.mean_and_se(np.array([1.0, np.inf])), ValueError,
        "mean_and_se: values has 1 non-finite value(s), first inf"),
    "metrics-mixture_negative_variance": Case(
        lambda t: metrics.mixture_mean_variance(np.zeros((2, 3)), -1.0),
        ValueError, "mixture_mean_variance: variances must be >= 0"),
    # regenerated docs
    "regen_docs-begin_without_end": Case(
        _doc("<!-- BEGIN generated:t -->\n| x |"), ValueError,
        "DOC.md:1: BEGIN generated:t has no END"),
    "regen_docs-end_without_begin": Case(
        _doc("a\n<!-- END generated:t -->"), ValueError,
        "DOC.md:2: END generated:t without a BEGIN"),
    "regen_docs-mismatched_end": Case(
        _doc("<!-- BEGIN generated:t -->\n<!-- END generated:u -->"),
        ValueError, "DOC.md:2: END generated:u closes BEGIN generated:t"),
    "regen_docs-nested": Case(
        _doc("<!-- BEGIN generated:t -->\n<!-- BEGIN generated:u -->"),
        ValueError, "DOC.md:2: BEGIN inside the block opened at line 1"),
    "regen_docs-no_data": Case(
        _doc("<!-- BEGIN generated:t -->\n<!-- END generated:t -->"),
        FileNotFoundError,
        "DOC.md:1: no renderer named 't' and no results file "
        "bench/results/t.json"),
    "regen_docs-unknown_option": Case(
        _doc("<!-- BEGIN generated:t colums=a -->\n<!-- END generated:t -->"),
        ValueError, "DOC.md:1: unknown option(s) ['colums']"),
    "regen_docs-missing_column": Case(
        lambda t: [(t / "r.json").write_text('{"rows": [{"a": 1}]}'),
                   _doc('<!-- BEGIN generated:t source=r.json columns=b -->'
                        '\n<!-- END generated:t -->')(t)],
        ValueError, "DOC.md:1: column 'b' is not in every row (keys: ['a'])"),
    # test helpers
    "helpers-mc_one_sample": Case(
        lambda t: helpers.assert_mc_close(np.zeros(1), 0.0), ValueError,
        "need samples [S >= 2, ...], got shape [1]"),
    "helpers-mc_nan": Case(
        lambda t: helpers.assert_mc_close(np.array([0.0, np.nan]), 0.0),
        ValueError, "samples hold non-finite values"),
    "helpers-tol_int_dtype": Case(
        lambda t: helpers.tol(np.int32), ValueError,
        "tol: no tolerance for dtype int32"),
}


@pytest.mark.parametrize("case", _params(MORE_CASES))
def test_more_bad_input_keeps_files_intact(case, tmp_path):
  _check(case, tmp_path)
  results_json = tmp_path / "results.json"
  if results_json.exists():  # a corrupt or existing results file is kept
    assert results_json.read_text() in (SENTINEL, '{"yacht": ')
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_suite_size():
  """The issue asks for 150+ bad-input / fault cases."""
  total = (len(LIBRARY_CASES) + len(EXPERIMENT_CASES) + len(CONFIG_CASES)
           + len(MORE_CASES))
  assert total >= 150, total
