"""The Laplace log marginal likelihood (evidence) and its hyper-parameters.

With the MAP ``theta`` (the selected weights, ``[P]``), the curvature ``H``
(unit scale), the curvature factor ``s`` and the prior ``N(0, diag(delta)^-1)``:

  log p(D) ~= log p(D | theta) - 1/2 [ log det(s H + diag(delta))
              - log det diag(delta) + theta^T diag(delta) theta ]

(MacKay 1992, Eq. 4.18-4.20 after cancelling the ``(2 pi)^P`` terms; Immer et
al. 2021, Eq. 3). For Gaussian regression with noise ``sigma``:
``log p(D | theta) = -SSR / (2 sigma^2) - N K log(sigma sqrt(2 pi))`` and
``s = 1 / sigma^2`` (GGN) or ``1 / sigma^4`` (empirical Fisher); for
classification ``s = 1``. A temperature ``T`` scales both by ``1 / T``.

For a linear model with a Gaussian likelihood and the GGN (= the Hessian)
this is the exact evidence, and its stationary points in ``(delta, sigma)``
with ``theta`` at the MAP of those values are MacKay's fixed point
``delta = gamma / |theta|^2``, ``sigma^2 = SSR / (N - gamma)``,
``gamma = P - delta tr(prec^-1)`` (Bishop 2006, Eq. 3.92 and 3.95).

Prior precision structures (laplace-torch's ``prior_structure``):
``"scalar"`` ``[1]``, ``"layerwise"`` ``[L]`` (one per selected leaf) and
``"diagonal"`` ``[P]``. Post-hoc optimisation keeps ``theta`` and ``H``
fixed and runs Adam on the log hyper-parameters (laplace-torch's
``optimize_prior_precision(method="marglik")``), optionally followed by
Newton steps (exact to float precision on small problems).

References:
  MacKay (1992), *Bayesian interpolation*, Neural Computation 4(3).
  Bishop (2006), *Pattern Recognition and Machine Learning*, Sec. 3.5.
  Immer et al. (2021), *Scalable marginal likelihood estimation for model
  selection in deep learning*, ICML, Eq. 3 and Algorithm 1.
  Daxberger et al. (2021), *Laplace Redux*, Sec. 3 (post-hoc evidence).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbdl._gaussian import HALF_LOG_2PI

__all__ = ["PRIOR_STRUCTURES", "expand_prior", "prior_shape",
           "curvature_factor", "log_likelihood", "log_marginal_likelihood",
           "check_hyperparameter_fit", "negative_evidence", "evidence_steps",
           "optimize_prior_precision"]

PRIOR_STRUCTURES = ("scalar", "layerwise", "diagonal")


def prior_shape(spec, prior_structure: str) -> tuple:
  """The shape of the prior precision for ``prior_structure``."""
  if prior_structure == "scalar":
    return (1,)
  if prior_structure == "layerwise":
    return (len(spec.subset.segments),)
  if prior_structure == "diagonal":
    return (int(spec.subset.idx.size),)
  raise ValueError(f"prior_structure must be one of {PRIOR_STRUCTURES}, got "
                   f"{prior_structure!r}")


def expand_prior(spec, delta: jax.Array) -> jax.Array:
  """Prior precision ``[]``, ``[1]``, ``[L]`` or ``[P]`` -> per weight ``[P]``."""
  delta = jnp.asarray(delta)
  p = int(spec.subset.idx.size)
  sizes = [seg[2] for seg in spec.subset.segments]
  if delta.ndim == 0 or delta.shape == (1,):
    return jnp.broadcast_to(delta.reshape(()), (p,))
  if delta.shape == (p,):
    return delta
  if delta.shape == (len(sizes),):
    return jnp.repeat(delta, np.asarray(sizes), total_repeat_length=p)
  raise ValueError(f"prior_precision has shape {delta.shape}; expected (), (1,), "
                   f"({len(sizes)},) (layerwise) or ({p},) (diagonal)")


def curvature_factor(spec, sigma_noise, temperature=1.0):
  """``s``: the factor of the unit-scale curvature in the posterior precision."""
  if spec.likelihood != "regression":
    return 1.0 / temperature
  power = 2 if spec.curvature == "ggn" else 4
  return 1.0 / (temperature * sigma_noise ** power)


def log_likelihood(spec, state, sigma_noise=None):
  """``log p(D | theta_MAP)`` (tempered by ``1 / T``) at noise ``sigma_noise``."""
  if spec.likelihood != "regression":
    return -state.loss / state.temperature
  sigma = state.sigma_noise if sigma_noise is None else sigma_noise
  ll = (-state.loss / sigma ** 2
        - state.num_outputs_total * (jnp.log(sigma) + HALF_LOG_2PI))
  return ll / state.temperature


def log_marginal_likelihood(spec, state, prior_precision=None,
                            sigma_noise=None):
  """Laplace evidence at the given (or the state's) hyper-parameters; scalar.

  Args:
    spec: the approximation's static description (``Laplace.spec``).
    state: a fitted ``LaplaceState``.
    prior_precision: ``[]``, ``[1]``, ``[L]`` or ``[P]``; default the state's.
    sigma_noise: observation noise scale (regression); default the state's.
  """
  raw = jnp.asarray(state.prior_precision if prior_precision is None
                    else prior_precision)
  delta = expand_prior(spec, raw)
  sigma = state.sigma_noise if sigma_noise is None else sigma_noise
  s = curvature_factor(spec, sigma, state.temperature)
  if raw.size == 1 and spec.structure.logdet_iso is not None:
    logdet_post = spec.structure.logdet_iso(
        state.curv, s, raw.reshape(()) + s * state.damping)
  else:
    logdet_post = spec.structure.logdet(state.curv, s,
                                        delta + s * state.damping)
  logdet_prior = jnp.sum(jnp.log(delta))
  scatter = jnp.sum(delta * state.theta ** 2)
  return (log_likelihood(spec, state, sigma)
          - 0.5 * (logdet_post - logdet_prior + scatter))


def check_hyperparameter_fit(spec, prior_structure: str, fit_noise: bool):
  """Raises ValueError for a noise fit outside regression or a diagonal
  prior on a KFAC posterior."""
  if fit_noise and spec.likelihood != "regression":
    raise ValueError("fit_noise=True needs likelihood='regression', got "
                     f"{spec.likelihood!r}")
  if spec.structure.name == "kron" and prior_structure == "diagonal":
    raise ValueError("hessian_structure='kron' supports prior_structure "
                     "'scalar' or 'layerwise', not 'diagonal'")


def negative_evidence(spec, state, fit_noise: bool):
  """``neg(z)``: minus the Laplace evidence at ``z = {"log_prior": log delta,
  "log_sigma": log sigma}`` (``log_sigma`` ignored unless ``fit_noise``)."""

  def neg(z):
    sigma = jnp.exp(z["log_sigma"]) if fit_noise else state.sigma_noise
    return -log_marginal_likelihood(spec, state, jnp.exp(z["log_prior"]),
                                    sigma)

  return neg


def evidence_steps(neg, optimizer, z, opt_state, n_steps: int,
                   fit_noise: bool):
  """``n_steps`` of ``optimizer`` on ``neg(z)`` in one ``lax.scan``; pure.

  Returns ``(z, opt_state, neg values [n_steps])``; the noise coordinate gets
  a zero gradient unless ``fit_noise``.
  """

  def step(carry, _):
    z, o = carry
    val, g = jax.value_and_grad(neg)(z)
    if not fit_noise:
      g = {**g, "log_sigma": jnp.zeros_like(g["log_sigma"])}
    upd, o = optimizer.update(g, o, z)
    return (optax.apply_updates(z, upd), o), val

  (z, opt_state), hist = jax.lax.scan(step, (z, opt_state), None,
                                      length=int(n_steps))
  return z, opt_state, hist


def optimize_prior_precision(spec, state, prior_structure: str = "scalar",
                             fit_noise: bool = False, n_steps: int = 100,
                             lr: float = 1e-1, newton_steps: int = 0,
                             init_prior_prec=None):
  """Maximises the evidence in log prior precision (and log noise); pure.

  Adam on ``(log delta, log sigma)`` for ``n_steps`` steps (``lax.scan``),
  then ``newton_steps`` Newton steps (each taken only while the Hessian of
  the negative evidence is positive definite and the step improves it).

  Args:
    spec, state: as :func:`log_marginal_likelihood`.
    prior_structure: ``"scalar"``, ``"layerwise"`` or ``"diagonal"``.
    fit_noise: also fit ``sigma_noise`` (regression only).
    n_steps, lr: Adam steps and learning rate (laplace-torch: 100, 0.1).
    newton_steps: Newton refinements after Adam.
    init_prior_prec: initial prior precision (default: the state's, broadcast
      to ``prior_structure``).

  Returns:
    ``(state, history)``: the state with the fitted ``prior_precision`` (shape
    of ``prior_structure``) and ``sigma_noise``; ``history["neg_log_marglik"]``
    ``[n_steps + newton_steps]``.
  """
  shape = prior_shape(spec, prior_structure)
  check_hyperparameter_fit(spec, prior_structure, fit_noise)
  if init_prior_prec is None:
    init = state.prior_precision
    init = (jnp.full(shape, jnp.mean(init)) if jnp.size(init) not in
            (int(np.prod(shape)),) else jnp.reshape(init, shape))
  else:
    init = jnp.broadcast_to(jnp.asarray(init_prior_prec, state.theta.dtype),
                            shape)
  z0 = {"log_prior": jnp.log(init).astype(state.theta.dtype),
        "log_sigma": jnp.log(state.sigma_noise).astype(state.theta.dtype)}

  neg = negative_evidence(spec, state, fit_noise)
  opt = optax.adam(lr)
  z, _, hist = evidence_steps(neg, opt, z0, opt.init(z0), n_steps, fit_noise)

  if newton_steps:
    def flat_neg(v):
      return neg({"log_prior": v[:-1].reshape(shape),
                  "log_sigma": v[-1] if fit_noise else z0["log_sigma"]})

    def newton(v, _):
      val = flat_neg(v)
      g = jax.grad(flat_neg)(v)
      h = jax.hessian(flat_neg)(v)
      if not fit_noise:
        g = g.at[-1].set(0.0)
        h = h.at[-1, :].set(0.0).at[:, -1].set(0.0).at[-1, -1].set(1.0)
      chol = jnp.linalg.cholesky(h)
      step = jax.scipy.linalg.cho_solve((chol, True), g)
      cand = v - step
      ok = (jnp.all(jnp.isfinite(chol)) & jnp.all(jnp.isfinite(cand))
            & (flat_neg(cand) <= val))
      return jnp.where(ok, cand, v), val
    v0 = jnp.concatenate([z["log_prior"].reshape(-1),
                          jnp.reshape(z["log_sigma"], (1,))])
    v, hist2 = jax.lax.scan(newton, v0, None, length=int(newton_steps))
    z = {"log_prior": v[:-1].reshape(shape), "log_sigma": v[-1]}
    hist = jnp.concatenate([hist, hist2])
  sigma = jnp.exp(z["log_sigma"]) if fit_noise else state.sigma_noise
  new = state._replace(prior_precision=jnp.exp(z["log_prior"]),
                       sigma_noise=jnp.asarray(sigma, state.theta.dtype))
  return new, {"neg_log_marglik": hist}
