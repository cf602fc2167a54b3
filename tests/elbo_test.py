"""Tests of jaxbdl.bayes.elbo: the ELBO of a conjugate model, KL vs Monte Carlo, STL, estimators."""
import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl.nn import networks
from jaxbdl.training import train
from jaxbdl.gradients import estimators
from jaxbdl.bayes import elbo
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import priors

_sp_inv = lambda x: jnp.log(jnp.expm1(x))  # softplus^-1
K_SE = 4.0  # Monte Carlo checks: |estimate - exact| < K_SE * SE.
_N, _D, _SIGMA, _PRIOR = 8, 2, 0.5, 1.5


def _linear_problem():
  """Orthogonal design X^T X = c I: the exact posterior is diagonal."""
  q, _ = np.linalg.qr(np.random.RandomState(0).randn(_N, _D))
  x = (2.0 * q).astype(np.float64)  # X^T X = 4 I
  w_true = np.array([0.7, -1.2])
  y = x @ w_true + _SIGMA * np.random.RandomState(1).randn(_N)
  prec = x.T @ x / _SIGMA**2 + np.eye(_D) / _PRIOR**2
  cov = np.linalg.inv(prec)
  mean = cov @ x.T @ y / _SIGMA**2
  evid_cov = _SIGMA**2 * np.eye(_N) + _PRIOR**2 * x @ x.T
  sign, logdet = np.linalg.slogdet(evid_cov)
  log_evidence = -0.5 * (_N * math.log(2 * math.pi) + logdet
                         + y @ np.linalg.solve(evid_cov, y))
  return x, y, mean, np.sqrt(np.diag(cov)), cov, log_evidence


def _apply(w, x):
  return x @ w["w"]  # [N, 1]


def _posterior_params(mean, std):
  return {"posterior": {"loc": {"w": jnp.asarray(mean, jnp.float32)[:, None]},
                        "raw_scale": {"w": np.log(np.expm1(std))[:, None]}},
          "prior": {}, "likelihood": {}}


def test_exact_posterior_is_diagonal():
  _, _, _, _, cov, _ = _linear_problem()
  np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-12)


def test_elbo_at_exact_posterior_equals_log_evidence_analytically():
  x, y, mean, std, cov, log_ev = _linear_problem()
  # E_q[log lik] in closed form for the linear model.
  resid = y - x @ mean
  quad = np.einsum("nd,de,ne->n", x, cov, x)
  exp_ll = np.sum(-0.5 * math.log(2 * math.pi * _SIGMA**2)
                  - (resid**2 + quad) / (2 * _SIGMA**2))
  prior = priors.gaussian(_PRIOR)
  n = elbo.to_normal(_posterior_params(mean, std)["posterior"])
  kl = prior.kl({}, n["loc"], n["scale"])
  np.testing.assert_allclose(exp_ll - float(kl), log_ev, rtol=1e-4)


@pytest.mark.parametrize("kl_name", ["mc_kl", "stl_kl"])
def test_mc_elbo_is_exact_for_every_sample_at_the_posterior(kl_name):
  # At q = p(w | D): log p(D|w) + log p(w) - log q(w) = log p(D) for every w,
  # so the one-sample ELBO has zero variance.
  x, y, mean, std, _, log_ev = _linear_problem()
  params = _posterior_params(mean, std)
  noise = likelihoods.gaussian(_SIGMA)
  batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}
  f = lambda k: elbo.elbo_terms(params, batch["x"], batch["y"], k,
                                model=elbo.weight_space(_apply),
                                likelihood=noise,
                                prior=priors.gaussian(_PRIOR), num_data=_N,
                                kl_estimator=getattr(elbo, kl_name))["elbo"]
  values = jax.vmap(f)(jax.random.split(jax.random.key(0), 16))
  np.testing.assert_allclose(values, log_ev, rtol=2e-4)


def test_mc_elbo_with_analytic_kl_matches_log_evidence_within_se():
  x, y, mean, std, _, log_ev = _linear_problem()
  params = _posterior_params(mean, std)
  noise = likelihoods.gaussian(_SIGMA)
  batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}
  f = lambda k: elbo.elbo_terms(params, batch["x"], batch["y"], k,
                                model=elbo.weight_space(_apply),
                                likelihood=noise,
                                prior=priors.gaussian(_PRIOR), num_data=_N,
                                kl_estimator=elbo.analytic_kl)["elbo"]
  values = np.asarray(jax.vmap(f)(jax.random.split(jax.random.key(1), 4000)))
  se = values.std() / math.sqrt(values.size)
  assert abs(values.mean() - log_ev) < K_SE * se + 1e-4


def test_stl_gradient_vanishes_at_exact_posterior():
  x, y, mean, std, _, _ = _linear_problem()
  params = _posterior_params(mean, std)
  noise = likelihoods.gaussian(_SIGMA)
  batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}

  def grad_norm(kl_estimator, key):
    loss = elbo.make_loss_fn(elbo.weight_space(_apply), noise,
                             priors.gaussian(_PRIOR), _N,
                             kl_estimator=kl_estimator)
    g = jax.grad(lambda p: loss(p, {}, batch, key)[0])(params)
    return float(jnp.sqrt(sum(jnp.sum(v**2) for v in jax.tree.leaves(g))))

  key = jax.random.key(3)
  assert grad_norm(elbo.stl_kl, key) < 1e-3
  assert grad_norm(elbo.mc_kl, key) > 1e-2  # the score term is still there


_PRIORS = {
    "gaussian": priors.gaussian(0.7),
    "learned_gaussian": priors.learned_gaussian(0.4),
    "laplace": priors.laplace(0.5),
}


@pytest.mark.parametrize("name", sorted(_PRIORS))
def test_analytic_kl_matches_monte_carlo(name):
  prior = _PRIORS[name]
  loc = {"a": jnp.array([0.3, -1.0, 2.0]), "b": jnp.array([[0.0, 0.5]])}
  var = {"loc": loc, "raw_scale": {"a": _sp_inv(
      jnp.array([0.2, 0.5, 1.0])), "b": _sp_inv(
          jnp.array([[0.3, 0.1]]))}}
  theta = prior.init(loc)
  exact = float(elbo.analytic_kl(prior, theta, var, None))
  mc = jax.vmap(lambda k: elbo.mc_kl(prior, theta, var, elbo.sample_params(var, k)))
  values = np.asarray(mc(jax.random.split(jax.random.key(2), 20000)))
  se = values.std() / math.sqrt(values.size)
  assert abs(values.mean() - exact) < K_SE * se, (values.mean(), exact, se)


def test_scale_mixture_log_prob_matches_direct_formula():
  prior = priors.scale_mixture(0.25, 1.0, 0.1)
  w = {"a": jnp.array([0.0, 0.05, -2.0])}
  direct = np.sum(np.log(0.25 * np.exp(-0.5 * np.asarray(w["a"])**2)
                         / math.sqrt(2 * math.pi)
                         + 0.75 * np.exp(-0.5 * (np.asarray(w["a"]) / 0.1)**2)
                         / (0.1 * math.sqrt(2 * math.pi))))
  np.testing.assert_allclose(prior.log_prob({}, w), direct, rtol=1e-5)
  assert prior.kl is None


def test_score_function_and_pathwise_gradients_agree_in_mean():
  x, y, mean, std, _, _ = _linear_problem()
  params = _posterior_params(mean + 0.3, std * 2.0)  # away from the optimum
  noise = likelihoods.gaussian(_SIGMA)
  batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}
  prior = priors.gaussian(_PRIOR)

  def grads(estimator):
    loss = elbo.make_loss_fn(elbo.weight_space(_apply), noise, prior, _N,
                             estimator=estimator)
    def one(k):
      g = jax.grad(lambda p: loss(p, {}, batch, k)[0])(params)
      return g["posterior"]["loc"]["w"][:, 0]

    g = jax.jit(jax.vmap(one))
    return np.asarray(g(jax.random.split(jax.random.key(5), 4000)))

  gp, gs = grads(estimators.pathwise), grads(estimators.score_function)
  se = np.sqrt(gp.var(0) / len(gp) + gs.var(0) / len(gs))
  assert np.all(np.abs(gp.mean(0) - gs.mean(0)) < K_SE * se), (gp.mean(0),
                                                               gs.mean(0), se)
  assert np.all(gs.var(0) > gp.var(0))  # score function: higher variance


def test_predict_shapes_and_collapse_to_mean():
  params = {"w": jnp.array([[1.0], [2.0]])}
  var = elbo.init_mean_field(params, init_scale=1e-6)
  x = jnp.ones((3, 2))
  out = elbo.sample_outputs(elbo.weight_space(_apply), var, x,
                            jax.random.key(0), 4)
  assert out.shape == (4, 3, 1)
  np.testing.assert_allclose(out, 3.0, atol=1e-4)
  np.testing.assert_allclose(elbo.to_normal(var)["scale"]["w"], 1e-6, rtol=1e-3)


def test_learned_noise_gets_gradient():
  noise = likelihoods.gaussian(None, init_scale=0.5)
  lp = noise.init()
  y, out = jnp.zeros((4,)), jnp.full((4, 1), 2.0)
  g = jax.grad(lambda p: jnp.sum(noise.log_prob(p, y, out)))(lp)
  assert float(g["raw_scale"]) > 0  # residuals of 2 >> 0.5: widen the noise
  pred = noise.predictive(lp, out)
  np.testing.assert_allclose(pred["variance"], 0.25, rtol=1e-5)


# Same computation, different summation order: float32 round-off only.
_RAVEL_TOL = {jnp.float32: dict(rtol=1e-5, atol=1e-5)}


def _two_layer_problem():
  k1, k2, k3, k4 = jax.random.split(jax.random.key(11), 4)
  params = {"h": {"kernel": 0.5 * jax.random.normal(k1, (3, 5)),
                  "bias": jnp.zeros((5,))},
            "out": {"kernel": 0.5 * jax.random.normal(k2, (5, 1)),
                    "bias": jnp.zeros((1,))}}
  apply_fn = lambda p, x: (
      jax.nn.relu(x @ p["h"]["kernel"] + p["h"]["bias"][None])
      @ p["out"]["kernel"] + p["out"]["bias"][None])
  batch = {"x": jax.random.normal(k3, (6, 3)),
           "y": jax.random.normal(k4, (6,))}
  return params, apply_fn, batch


@pytest.mark.parametrize("num_samples", [1, 3], ids=["S1", "S3"])
@pytest.mark.parametrize("kl_name,estimator_name", [
    ("auto_kl", "pathwise"), ("mc_kl", "pathwise"), ("stl_kl", "pathwise"),
    ("analytic_kl", "score_function")])
def test_ravel_model_gives_the_same_elbo_and_gradients(kl_name, estimator_name,
                                                       num_samples):
  params, apply_fn, batch = _two_layer_problem()
  flat = elbo.ravel_model(params, apply_fn)
  prior, noise = priors.gaussian(0.8), likelihoods.gaussian(None, init_scale=0.5)

  def value_and_grad(w0, apply):
    loss = elbo.make_loss_fn(
        elbo.weight_space(apply), noise, prior, num_data=60,
        num_samples=num_samples, kl_estimator=getattr(elbo, kl_name),
        estimator=getattr(estimators, estimator_name))
    p = elbo.init_params(elbo.init_mean_field(w0, 0.3), prior, noise)
    return jax.jit(jax.value_and_grad(loss, has_aux=True))(
        p, {}, batch, jax.random.key(4))

  (lt, (_, mt)), gt = value_and_grad(params, apply_fn)
  (lf, (_, mf)), gf = value_and_grad(flat.params, flat.apply_fn)
  tol = _RAVEL_TOL[jnp.float32]
  np.testing.assert_allclose(lf, lt, **tol)
  for name in ("elbo", "kl", "nll"):
    np.testing.assert_allclose(mf[name], mt[name], **tol)
  for part in ("loc", "raw_scale"):  # the flat gradient is the raveled tree one
    assert gf["posterior"][part].shape == flat.params.shape
    np.testing.assert_allclose(
        gf["posterior"][part],
        jax.flatten_util.ravel_pytree(gt["posterior"][part])[0], **tol)
  np.testing.assert_allclose(gf["likelihood"]["raw_scale"],
                             gt["likelihood"]["raw_scale"], **tol)


def test_ravel_model_round_trip_and_predict():
  params, apply_fn, batch = _two_layer_problem()
  flat = elbo.ravel_model(params, apply_fn)
  assert flat.params.shape == (3 * 5 + 5 + 5 + 1,)
  back = flat.unravel(flat.params)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(flat.apply_fn(flat.params, batch["x"]),
                                apply_fn(params, batch["x"]))
  # q over the vector maps back to q over the tree; predict works on either.
  var = elbo.init_mean_field(flat.params, init_scale=1e-6)
  var_tree = jax.tree.map(flat.unravel, var)
  assert set(var_tree) == {"loc", "raw_scale"}
  assert jax.tree.structure(var_tree["loc"]) == jax.tree.structure(params)
  out = elbo.sample_outputs(elbo.weight_space(flat.apply_fn), var,
                            batch["x"], jax.random.key(0), 4)
  assert out.shape == (4, 6, 1)
  mean_out = apply_fn(params, batch["x"])
  np.testing.assert_allclose(out, jnp.broadcast_to(mean_out, out.shape),
                             atol=1e-4)


def test_ravel_model_with_a_flax_mlp_trains_like_the_pytree():
  # Three Adam steps on the flat form equal the raveled pytree steps.
  model = networks.MLP((7, 1))
  x = jax.random.normal(jax.random.key(1), (8, 2))
  batch = {"x": x, "y": jnp.sin(x[:, 0])}
  params = model.init(jax.random.key(0), x[:1])["params"]
  apply_fn = lambda p, xb: model.apply({"params": p}, xb)
  flat = elbo.ravel_model(params, apply_fn)
  prior, noise = priors.gaussian(1.0), likelihoods.gaussian(0.3)
  opt = optax.adam(1e-2)

  def three_steps(w0, apply):
    loss = elbo.make_loss_fn(elbo.weight_space(apply), noise, prior, 80)
    state = train.init_train_state(
        elbo.init_params(elbo.init_mean_field(w0, 0.1), prior, noise), opt)
    step = train.jit_step(train.make_train_step(loss, opt), jax.random.key(2))
    for _ in range(3):
      state, metrics = step(state, batch)
    return state, metrics

  st, mt = three_steps(params, apply_fn)
  sf, mf = three_steps(flat.params, flat.apply_fn)
  assert len(jax.tree.leaves(sf)) < len(jax.tree.leaves(st))
  tol = _RAVEL_TOL[jnp.float32]
  for part in ("loc", "raw_scale"):
    np.testing.assert_allclose(
        sf.params["posterior"][part],
        jax.flatten_util.ravel_pytree(st.params["posterior"][part])[0], **tol)
  np.testing.assert_allclose(mf["elbo"], mt["elbo"], **tol)


@pytest.mark.parametrize("case,match", [
    ("bad_init_scale", "init_scale must be > 0"),
    ("analytic_no_kl", "has no closed-form KL"),
    ("score_with_mc_kl", "needs a closed-form KL"),
    ("bad_params", "keys \\['loc', 'raw_scale'\\]"),
    ("ravel_empty", "params has no leaves"),
    ("layerwise_with_estimator", "samples inside its layers")])
def test_errors(case, match):
  noise = likelihoods.gaussian(1.0)
  with pytest.raises(ValueError, match=match):
    if case == "bad_init_scale":
      elbo.init_mean_field({"w": jnp.ones(2)}, init_scale=0.0)
    elif case == "analytic_no_kl":
      elbo.make_loss_fn(elbo.weight_space(_apply), noise,
                        priors.scale_mixture(), 10,
                        kl_estimator=elbo.analytic_kl)
    elif case == "score_with_mc_kl":
      elbo.make_loss_fn(elbo.weight_space(_apply), noise, priors.gaussian(),
                        10, kl_estimator=elbo.mc_kl,
                        estimator=estimators.score_function)
    elif case == "ravel_empty":
      elbo.ravel_model({}, _apply)
    elif case == "layerwise_with_estimator":
      q = elbo.init_mean_field({"w": jnp.ones((2, 1))}, 0.1)
      model = elbo.layerwise(lambda q, x, k: x @ q["loc"]["w"], lambda q: q)
      elbo.elbo_terms(elbo.init_params(q, priors.gaussian(), noise),
                      jnp.ones((3, 2)), jnp.ones(3), jax.random.key(0),
                      model=model, likelihood=noise, prior=priors.gaussian(),
                      num_data=3, estimator=estimators.score_function)
    else:
      elbo.to_normal({"mean": 1})
