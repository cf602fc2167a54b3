"""Tests of jaxbdl.vi: ELBO of a conjugate model, KL vs Monte Carlo, STL, estimators."""
import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbdl import networks
from jaxbdl import train
from jaxbdl import vi

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
                        "raw_scale": {"w": vi.softplus_inverse(std)[:, None]}},
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
  prior = vi.gaussian_prior(_PRIOR)
  kl = prior.kl({}, vi.to_normal(_posterior_params(mean, std)["posterior"]))
  np.testing.assert_allclose(exp_ll - float(kl), log_ev, rtol=1e-4)


@pytest.mark.parametrize("kl_name", ["mc_kl", "stl_kl"])
def test_mc_elbo_is_exact_for_every_sample_at_the_posterior(kl_name):
  # At q = p(w | D): log p(D|w) + log p(w) - log q(w) = log p(D) for every w,
  # so the one-sample ELBO has zero variance.
  x, y, mean, std, _, log_ev = _linear_problem()
  params = _posterior_params(mean, std)
  noise = vi.fixed_gaussian_noise(_SIGMA)
  batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}
  f = lambda k: vi.elbo_terms(params, batch, k, apply_fn=_apply,
                              log_likelihood=noise.log_likelihood,
                              prior=vi.gaussian_prior(_PRIOR), num_data=_N,
                              kl_estimator=getattr(vi, kl_name))["elbo"]
  values = jax.vmap(f)(jax.random.split(jax.random.key(0), 16))
  np.testing.assert_allclose(values, log_ev, rtol=2e-4)


def test_mc_elbo_with_analytic_kl_matches_log_evidence_within_se():
  x, y, mean, std, _, log_ev = _linear_problem()
  params = _posterior_params(mean, std)
  noise = vi.fixed_gaussian_noise(_SIGMA)
  batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}
  f = lambda k: vi.elbo_terms(params, batch, k, apply_fn=_apply,
                              log_likelihood=noise.log_likelihood,
                              prior=vi.gaussian_prior(_PRIOR), num_data=_N,
                              kl_estimator=vi.analytic_kl)["elbo"]
  values = np.asarray(jax.vmap(f)(jax.random.split(jax.random.key(1), 4000)))
  se = values.std() / math.sqrt(values.size)
  assert abs(values.mean() - log_ev) < K_SE * se + 1e-4


def test_stl_gradient_vanishes_at_exact_posterior():
  x, y, mean, std, _, _ = _linear_problem()
  params = _posterior_params(mean, std)
  noise = vi.fixed_gaussian_noise(_SIGMA)
  batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}

  def grad_norm(kl_estimator, key):
    loss = vi.make_elbo_loss_fn(_apply, noise.log_likelihood,
                                vi.gaussian_prior(_PRIOR), _N,
                                kl_estimator=kl_estimator)
    g = jax.grad(lambda p: loss(p, {}, batch, key)[0])(params)
    return float(jnp.sqrt(sum(jnp.sum(v**2) for v in jax.tree.leaves(g))))

  key = jax.random.key(3)
  assert grad_norm(vi.stl_kl, key) < 1e-3
  assert grad_norm(vi.mc_kl, key) > 1e-2  # the score term is still there


_PRIORS = {
    "gaussian": vi.gaussian_prior(0.7),
    "learned_gaussian": vi.learned_gaussian_prior(0.4),
    "laplace": vi.laplace_prior(0.5),
}


@pytest.mark.parametrize("name", sorted(_PRIORS))
def test_analytic_kl_matches_monte_carlo(name):
  prior = _PRIORS[name]
  loc = {"a": jnp.array([0.3, -1.0, 2.0]), "b": jnp.array([[0.0, 0.5]])}
  var = {"loc": loc, "raw_scale": {"a": vi.softplus_inverse(
      jnp.array([0.2, 0.5, 1.0])), "b": vi.softplus_inverse(
          jnp.array([[0.3, 0.1]]))}}
  theta = prior.init(loc)
  exact = float(vi.analytic_kl(prior, theta, var, None))
  mc = jax.vmap(lambda k: vi.mc_kl(prior, theta, var, vi.sample_params(var, k)))
  values = np.asarray(mc(jax.random.split(jax.random.key(2), 20000)))
  se = values.std() / math.sqrt(values.size)
  assert abs(values.mean() - exact) < K_SE * se, (values.mean(), exact, se)


def test_scale_mixture_log_prob_matches_direct_formula():
  prior = vi.scale_mixture_prior(0.25, 1.0, 0.1)
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
  noise = vi.fixed_gaussian_noise(_SIGMA)
  batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}
  prior = vi.gaussian_prior(_PRIOR)

  def grads(estimator):
    loss = vi.make_elbo_loss_fn(_apply, noise.log_likelihood, prior, _N,
                                estimator=estimator)
    def one(k):
      g = jax.grad(lambda p: loss(p, {}, batch, k)[0])(params)
      return g["posterior"]["loc"]["w"][:, 0]

    g = jax.jit(jax.vmap(one))
    return np.asarray(g(jax.random.split(jax.random.key(5), 4000)))

  gp, gs = grads(vi.pathwise), grads(vi.score_function)
  se = np.sqrt(gp.var(0) / len(gp) + gs.var(0) / len(gs))
  assert np.all(np.abs(gp.mean(0) - gs.mean(0)) < K_SE * se), (gp.mean(0),
                                                               gs.mean(0), se)
  assert np.all(gs.var(0) > gp.var(0))  # score function: higher variance


def test_predict_shapes_and_collapse_to_mean():
  params = {"w": jnp.array([[1.0], [2.0]])}
  var = vi.init_mean_field(params, init_scale=1e-6)
  x = jnp.ones((3, 2))
  out = vi.predict(var, _apply, x, jax.random.key(0), 4)
  assert out.shape == (4, 3, 1)
  np.testing.assert_allclose(out, 3.0, atol=1e-4)
  np.testing.assert_allclose(vi.to_normal(var)["scale"]["w"], 1e-6, rtol=1e-3)


def test_learned_noise_gets_gradient():
  noise = vi.learned_gaussian_noise(init_scale=0.5)
  lp = noise.init()
  y, out = jnp.zeros((4,)), jnp.full((4, 1), 2.0)
  g = jax.grad(lambda p: jnp.sum(noise.log_likelihood(p, y, out)))(lp)
  assert float(g["raw_scale"]) > 0  # residuals of 2 >> 0.5: widen the noise
  mean, var = noise.moments(lp, out)
  np.testing.assert_allclose(var, 0.25, rtol=1e-5)


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
  flat = vi.ravel_model(params, apply_fn)
  prior, noise = vi.gaussian_prior(0.8), vi.learned_gaussian_noise(0.5)

  def value_and_grad(w0, apply):
    loss = vi.make_elbo_loss_fn(
        apply, noise.log_likelihood, prior, num_data=60,
        num_samples=num_samples, kl_estimator=getattr(vi, kl_name),
        estimator=getattr(vi, estimator_name))
    p = vi.init_elbo_params(w0, prior, noise, init_scale=0.3)
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
  flat = vi.ravel_model(params, apply_fn)
  assert flat.params.shape == (3 * 5 + 5 + 5 + 1,)
  back = flat.unravel(flat.params)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(flat.apply_fn(flat.params, batch["x"]),
                                apply_fn(params, batch["x"]))
  # q over the vector maps back to q over the tree; predict works on either.
  var = vi.init_mean_field(flat.params, init_scale=1e-6)
  var_tree = jax.tree.map(flat.unravel, var)
  assert set(var_tree) == {"loc", "raw_scale"}
  assert jax.tree.structure(var_tree["loc"]) == jax.tree.structure(params)
  out = vi.predict(var, flat.apply_fn, batch["x"], jax.random.key(0), 4)
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
  flat = vi.ravel_model(params, apply_fn)
  prior, noise = vi.gaussian_prior(1.0), vi.fixed_gaussian_noise(0.3)
  opt = optax.adam(1e-2)

  def three_steps(w0, apply):
    loss = vi.make_elbo_loss_fn(apply, noise.log_likelihood, prior, 80)
    state = train.init_train_state(vi.init_elbo_params(w0, prior, noise, 0.1),
                                   opt)
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


@pytest.mark.parametrize("case", ["bad_init_scale", "analytic_no_kl",
                                  "score_with_mc_kl", "bad_params",
                                  "ravel_empty"])
def test_errors(case):
  with pytest.raises(ValueError):
    if case == "bad_init_scale":
      vi.init_mean_field({"w": jnp.ones(2)}, init_scale=0.0)
    elif case == "analytic_no_kl":
      vi.make_elbo_loss_fn(_apply, lambda p, y, o: y, vi.scale_mixture_prior(),
                           10, kl_estimator=vi.analytic_kl)
    elif case == "score_with_mc_kl":
      vi.make_elbo_loss_fn(_apply, lambda p, y, o: y, vi.gaussian_prior(),
                           10, kl_estimator=vi.mc_kl,
                           estimator=vi.score_function)
    elif case == "ravel_empty":
      vi.ravel_model({}, _apply)
    else:
      vi.to_normal({"mean": 1})
