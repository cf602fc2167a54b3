r"""Benchmark: post-hoc Laplace, jaxbdl vs laplace-torch, on the same MAP.

The problem is laplace-torch's regression example (its
``docs/regression_example.md``): ``x ~ U(0, 8)``, ``y = sin(x) + 0.3 eps``,
N = 150 (``torch.manual_seed(711)``), a 1 x 50 tanh MLP trained by Adam(1e-2)
for 1000 full-batch epochs on the MSE, then a Laplace approximation with the
prior precision and the noise fitted by the evidence: ``log_prior =
log_sigma = 1`` and Adam(0.1) for 1000 steps on the negative log marginal
likelihood, then the GLM predictive on 500 test inputs in ``[-5, 13]``.
Published: ``sigma ~ 0.28``, prior precision ``~ 0.10`` (full Hessian).

The torch worker (in ``.venv-laplace``, made by
``bench/setup_laplace_torch.sh``) makes the data and trains the MAP exactly
as the example does, and writes both to ``<out_dir>/laplace_vs_torch_map.npz``;
the jaxbdl worker copies those weights into a Flax ``networks.MLP((50, 1),
"tanh")`` (kernel = weight^T), so both libraries start from the SAME MAP.
The jaxbdl worker also runs each structure in float64 (the reference that
says whose float32 round-off is larger). For each structure (``full``,
``diag``, ``kron``, ``last_layer`` = full GGN over the output layer) each
worker times ``fit + 1000 evidence steps +
predictive`` and reports the evidence at fixed ``(delta, sigma) = (1, 0.3)``
(isolates the curvature), the fitted ``delta, sigma``, the evidence there and
the predictive mean / variance (of f).

``--task classification`` runs the same comparison on a classification
problem (laplace-torch's ``"classification"`` likelihood, no noise to fit):
three Gaussian classes in 2-D (``numpy.random.default_rng(711)``, N = 300,
class means on a circle of radius 2, unit noise), a 2-50-3 tanh MLP trained
by Adam(1e-2) for 1000 full-batch epochs on the cross-entropy, the prior
precision fitted by Adam(0.1) for 1000 steps on the evidence, then the GLM
predictive with the probit approximation on 500 test inputs; the compared
numbers are the evidence at ``delta = 1``, the fitted ``delta``, the
evidence there and the predictive class probabilities (max abs difference).

Timings: laplace-torch builds a fresh ``Laplace`` each repeat (its usage);
jaxbdl reports the first call (a fresh ``Laplace``: tracing + XLA
compilation included) and the steady state (the same ``Laplace`` object, its
jitted functions cached: what a study repeating the fit pays). Rounds
alternate torch, jaxbdl, torch, ... so machine load hits both alike; medians
and minima over all repeats of all rounds; load average before and after.

Usage (repository root):
  bash bench/setup_laplace_torch.sh
  .venv/bin/python bench/laplace_vs_torch.py [--rounds 2 --repeats 3]
      [--task classification]
  (each worker's JSON is also kept as <stem>_worker_<lib>_<r>.json)
Outputs: bench/results/laplace_vs_torch.{json,md} (regression) or
laplace_vs_torch_classification.{json,md}, and the table on stdout.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

import peers  # bench/peers.py: the scripts run as files, bench/ is on sys.path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRUCTURES = (("full", "all", "full"), ("diag", "all", "diag"),
              ("kron", "all", "kron"), ("last_layer", "last_layer", "full"))
N_STEPS = 1000
PUBLISHED = {"sigma_noise": 0.28, "prior_precision": 0.10}


TASKS = ("regression", "classification")


def _stem(args):
  """Output file stem of the task (regression keeps the original name)."""
  return ("laplace_vs_torch" if args.task == "regression" else
          f"laplace_vs_torch_{args.task}")


def _map_file(args):
  return os.path.join(args.out_dir, f"{_stem(args)}_map.npz")


def _classification_data():
  """Three Gaussian classes in 2-D: ``(x [300, 2], y [300], x_test [500, 2])``
  (float32, int64), the same on every machine (numpy's PCG64)."""
  rng = np.random.default_rng(711)
  angles = 2 * np.pi * np.arange(3) / 3
  means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], -1)
  y = rng.integers(0, 3, 300)
  x = means[y] + rng.normal(size=(300, 2))
  x_test = rng.uniform(-5, 5, (500, 2))
  return x.astype(np.float32), y.astype(np.int64), x_test.astype(np.float32)


# ------------------------------------------------------------------- torch ---

def worker_torch(args):
  import torch
  from torch.utils.data import DataLoader, TensorDataset
  import laplace
  from laplace import Laplace
  torch.set_default_dtype(torch.float32)

  regression = args.task == "regression"
  d_in, d_out = (1, 1) if regression else (2, 3)

  def get_model():
    torch.manual_seed(711)
    return torch.nn.Sequential(torch.nn.Linear(d_in, 50), torch.nn.Tanh(),
                               torch.nn.Linear(50, d_out))
  path = _map_file(args)
  if not os.path.exists(path):   # the example, verbatim in substance
    torch.manual_seed(711)
    if regression:
      x_train = (torch.rand(150) * 8).unsqueeze(-1)
      y_train = torch.sin(x_train) + torch.randn_like(x_train) * 0.3
      x_test = torch.linspace(-5, 13, 500).unsqueeze(-1)
    else:
      x_train, y_train, x_test = map(torch.tensor, _classification_data())
    loader = DataLoader(TensorDataset(x_train, y_train),
                        batch_size=len(x_train))
    model = get_model()
    crit = torch.nn.MSELoss() if regression else torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(1000):
      for xb, yb in loader:
        opt.zero_grad()
        crit(model(xb), yb).backward()
        opt.step()
    os.makedirs(args.out_dir, exist_ok=True)
    np.savez(path, x_train=x_train.numpy(), y_train=y_train.numpy(),
             x_test=x_test.numpy(),
             **{k.replace(".", "_"): v.detach().numpy()
                for k, v in model.state_dict().items()})
  d = np.load(path)
  model = get_model()
  model.load_state_dict({k: torch.tensor(d[k.replace(".", "_")])
                         for k in model.state_dict()})
  x_train, y_train = torch.tensor(d["x_train"]), torch.tensor(d["y_train"])
  x_test = torch.tensor(d["x_test"])
  loader = DataLoader(TensorDataset(x_train, y_train),
                      batch_size=len(x_train))
  out = {"laplace_torch": getattr(laplace, "__version__", None) or
         _dist_version("laplace-torch"), "torch": torch.__version__,
         "threads": torch.get_num_threads(), "structures": {}}
  for name, subset, hs in STRUCTURES:
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      la = Laplace(model, args.task, subset_of_weights=subset,
                   hessian_structure=hs)
      la.fit(loader)
      log_prior = torch.ones(1, requires_grad=True)
      log_sigma = torch.ones(1, requires_grad=True)
      hypers = [log_prior, log_sigma] if regression else [log_prior]

      def lml(prior, sigma):
        return (la.log_marginal_likelihood(prior, sigma) if regression
                else la.log_marginal_likelihood(prior))
      hopt = torch.optim.Adam(hypers, lr=1e-1)
      for _ in range(N_STEPS):
        hopt.zero_grad()
        neg = -lml(log_prior.exp(), log_sigma.exp())
        neg.backward()
        hopt.step()
      lml_fit = lml(log_prior.exp(), log_sigma.exp())
      if regression:
        f_mu, f_var = la(x_test)
      else:
        probs = la(x_test, pred_type="glm", link_approx="probit")
      times.append(time.perf_counter() - t0)
    with torch.no_grad():
      rec = {"seconds": times, "log_marglik_fitted": float(lml_fit),
             "prior_precision": float(log_prior.exp()),
             "log_marglik_fixed": float(lml(torch.tensor([1.0]),
                                            torch.tensor([0.3])))}
      if regression:
        rec.update(sigma_noise=float(log_sigma.exp()),
                   f_mu=f_mu.squeeze().tolist(),
                   f_var=f_var.squeeze().tolist())
      else:
        rec["probs"] = probs.tolist()
    out["structures"][name] = rec
  return out


def _dist_version(name):
  from importlib import metadata
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return None


# ------------------------------------------------------------------ jaxbdl ---

def worker_jaxbdl(args):
  sys.path.insert(0, REPO)
  import jax
  import jax.numpy as jnp
  from jaxbdl.nn import networks
  from jaxbdl.bayes import laplace
  d = np.load(_map_file(args))
  regression = args.task == "regression"
  net = networks.MLP((50, 1 if regression else 3), activation="tanh")
  params = {"Dense_0": {"kernel": jnp.asarray(d["0_weight"].T),
                        "bias": jnp.asarray(d["0_bias"])},
            "Dense_1": {"kernel": jnp.asarray(d["2_weight"].T),
                        "bias": jnp.asarray(d["2_bias"])}}
  apply_fn = lambda p, x: net.apply({"params": p}, x)  # noqa: E731
  x = jnp.asarray(d["x_train"])
  y = (jnp.asarray(d["y_train"][:, 0]) if regression else
       jnp.asarray(d["y_train"], jnp.int32))
  x_test = jnp.asarray(d["x_test"])
  e = math.e
  out = {"jax": jax.__version__, "device": str(jax.devices()[0]),
         "structures": {}}

  def run(la):
    # The MAP was trained on the MSE without a prior (the example), so the
    # convergence check (gradient of the log joint) is switched off.
    state = la.fit(params, x, y, prior_precision=e, sigma_noise=e,
                   map_gradient_tol=np.inf)
    state, _ = la.optimize_prior_precision(state, fit_noise=regression,
                                           n_steps=N_STEPS, lr=0.1)
    pred = la.predict(state, x_test, link_approx="probit")
    jax.block_until_ready(pred)
    return la, state, pred

  for name, subset, hs in STRUCTURES:
    def make():
      return laplace.Laplace(apply_fn, params, args.task,
                             subset_of_weights=subset, hessian_structure=hs,
                             chunk_size=150)
    t0 = time.perf_counter()
    la, state, pred = run(make())
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      _, state, pred = run(la)
      times.append(time.perf_counter() - t0)
    # Float64 reference (same weights, same steps): who is closer to it
    # says which float32 round-off is larger.
    with jax.enable_x64(True):
      p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
      la64 = laplace.Laplace(apply_fn, p64, args.task,
                             subset_of_weights=subset, hessian_structure=hs,
                             chunk_size=150)
      s64 = la64.fit(p64, x.astype(jnp.float64),
                     y.astype(jnp.float64) if regression else y,
                     prior_precision=e, sigma_noise=e,
                     map_gradient_tol=np.inf)
      fixed64 = float(la64.log_marginal_likelihood(
          s64, jnp.ones(1, jnp.float64), jnp.asarray(0.3, jnp.float64)))
      s64, _ = la64.optimize_prior_precision(s64, fit_noise=regression,
                                             n_steps=N_STEPS, lr=0.1)
      pred64 = la64.predict(s64, x_test.astype(jnp.float64),
                            link_approx="probit")
      ref64 = {"log_marglik_fixed": fixed64,
               "log_marglik_fitted": float(la64.log_marginal_likelihood(s64)),
               "prior_precision": float(s64.prior_precision[0]),
               **_predictions(s64, pred64, regression)}
    out["structures"][name] = {
        "float64": ref64,
        "seconds": times, "first_call_seconds": first,
        "log_marglik_fitted": float(la.log_marginal_likelihood(state)),
        "log_marglik_fixed": float(la.log_marginal_likelihood(
            state, jnp.ones(1), jnp.asarray(0.3))),
        "prior_precision": float(state.prior_precision[0]),
        **_predictions(state, pred, regression)}
  return out


def _predictions(state, pred, regression):
  """The compared predictive numbers (and the fitted noise) as lists."""
  if regression:
    return {"sigma_noise": float(state.sigma_noise),
            "f_mu": np.asarray(pred["mean"]).tolist(),
            "f_var": np.asarray(pred["f_variance"]).tolist()}
  return {"probs": np.asarray(pred["probs"]).tolist()}


# ------------------------------------------------------------------ driver ---

def _run_worker(which, args):
  py = args.torch_python if which == "torch" else args.jaxbdl_python
  return peers.run_worker(__file__, which, py, [
      "--repeats", args.repeats, "--out_dir", args.out_dir,
      "--task", args.task], cwd=REPO)


def _abs(a, b):
  return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))


def _rel(a, b):
  a, b = np.asarray(a, float), np.asarray(b, float)
  return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def _git(*a):
  try:
    return subprocess.run(["git", *a], capture_output=True, text=True,
                          cwd=REPO).stdout.strip()
  except OSError:
    return None


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--worker", choices=("torch", "jaxbdl"))
  p.add_argument("--task", choices=TASKS, default="regression")
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--tolerance", type=float, default=1e-3,
                 help="relative agreement asked of every compared number")
  p.add_argument("--jaxbdl_python", default=sys.executable,
                 help="interpreter with jaxbdl's environment (default: this)")
  p.add_argument("--torch_python",
                 default=os.path.join(REPO, ".venv-laplace", "bin", "python"))
  p.add_argument("--out_dir", default=os.path.join(REPO, "bench", "results"))
  args = p.parse_args()
  if args.worker:
    fn = worker_torch if args.worker == "torch" else worker_jaxbdl
    print(json.dumps(fn(args)))
    return
  if args.rounds < 1 or args.repeats < 1:
    p.error("--rounds and --repeats must be >= 1")
  load_before = os.getloadavg()
  started = datetime.datetime.now(datetime.timezone.utc).isoformat()
  rounds = {"torch": [], "jaxbdl": []}
  for r in range(args.rounds):
    for which in ("torch", "jaxbdl"):
      rounds[which].append(_run_worker(which, args))
      os.makedirs(args.out_dir, exist_ok=True)
      with open(os.path.join(args.out_dir, f"{_stem(args)}_worker_{which}"
                             f"_{r}.json"), "w") as f:   # survives a crash
        json.dump(rounds[which][-1], f)
      print(f"round {r} {which} done, load {os.getloadavg()[0]:.2f}",
            file=sys.stderr)
  load_after = os.getloadavg()
  t, j = rounds["torch"][0], rounds["jaxbdl"][0]
  rows, checks = [], {}
  for name, _, _ in STRUCTURES:
    ts = [s for rr in rounds["torch"] for s in rr["structures"][name]["seconds"]]
    js = [s for rr in rounds["jaxbdl"]
          for s in rr["structures"][name]["seconds"]]
    jf = [rr["structures"][name]["first_call_seconds"]
          for rr in rounds["jaxbdl"]]
    tt, jj = t["structures"][name], j["structures"][name]
    keys = {"f_mu (max rel)": "f_mu", "f_var (max rel)": "f_var",
            "probs (max abs)": "probs"}
    compared = ["log_marglik_fixed", "log_marglik_fitted", "prior_precision"]
    compared += (["sigma_noise", "f_mu (max rel)", "f_var (max rel)"]
                 if args.task == "regression" else ["probs (max abs)"])

    def diff(k, a, b):
      a, b = a[keys.get(k, k)], b[keys.get(k, k)]
      return _abs(a, b) if k.endswith("(max abs)") else _rel(a, b)
    agree = {k: diff(k, jj, tt) for k in compared}
    r64 = jj["float64"]
    checks[name] = {k: {"diff": v, "ok": v < args.tolerance,
                        "torch_vs_float64": diff(k, tt, r64),
                        "jaxbdl_vs_float64": diff(k, jj, r64)}
                    for k, v in agree.items()}
    rows.append({
        "structure": name,
        "torch s (median)": float(np.median(ts)), "torch s (min)": min(ts),
        "jaxbdl s (median)": float(np.median(js)), "jaxbdl s (min)": min(js),
        "jaxbdl first call s (median)": float(np.median(jf)),
        "speed-up (medians)": float(np.median(ts) / np.median(js)),
        "speed-up incl. compile": float(np.median(ts) / np.median(jf)),
        "torch delta": tt["prior_precision"], "jaxbdl delta":
            jj["prior_precision"],
        **({"torch sigma": tt["sigma_noise"],
            "jaxbdl sigma": jj["sigma_noise"]}
           if args.task == "regression" else {}),
        "float64 delta": r64["prior_precision"],
        **({"float64 sigma": r64["sigma_noise"]}
           if args.task == "regression" else {}),
        "torch log ML": tt["log_marglik_fitted"],
        "jaxbdl log ML": jj["log_marglik_fitted"],
        "float64 log ML": r64["log_marglik_fitted"],
        ("max rel diff" if args.task == "regression" else "max diff"):
            max(agree.values())})
  sys.path.insert(0, REPO)
  from jaxbdl.evaluation import results as results_lib
  problem = (
      "laplace-torch regression example (N=150, 1x50 tanh, same MAP "
      "weights)" if args.task == "regression" else
      "3 Gaussian classes in 2-D (N=300, 2-50-3 tanh, same MAP weights; "
      "probit link)")
  published = (
      f" Published (full): sigma ~ {PUBLISHED['sigma_noise']}, delta ~ "
      f"{PUBLISHED['prior_precision']}." if args.task == "regression" else "")
  head = (
      f"{problem}, fit + {N_STEPS} evidence steps + GLM predictive on 500 "
      f"inputs; median (min) over {args.rounds} alternating rounds x "
      f"{args.repeats} repeats; {platform.processor() or platform.machine()},"
      f" {os.cpu_count()} CPUs; jax {j['jax']} ({j['device']}), torch "
      f"{t['torch']} ({t['threads']} threads), laplace-torch "
      f"{t['laplace_torch']}; float32 both; load average "
      f"{load_before[0]:.2f} before, {load_after[0]:.2f} after.{published} "
      f"Agreement tolerance {args.tolerance:g} (relative; class probabilities"
      f" absolute; float32 logdet / Adam round-off).\n\n")
  table = head + results_lib.markdown_table(rows, precision=4)
  os.makedirs(args.out_dir, exist_ok=True)
  results_lib.atomic_write_json(
      os.path.join(args.out_dir, f"{_stem(args)}.json"),
      {"rows": rows, "agreement": checks, "rounds": rounds,
       "provenance": {
           "commit": _git("rev-parse", "HEAD"),
           "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
           "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
           "platform": platform.platform(), "cpus": os.cpu_count(),
           "loadavg_before": load_before, "loadavg_after": load_after,
           "started_utc": started,
           "finished_utc": datetime.datetime.now(
               datetime.timezone.utc).isoformat(),
           "versions": {"jax": j["jax"], "torch": t["torch"],
                        "laplace_torch": t["laplace_torch"]}},
       "args": {k: v for k, v in vars(args).items() if k != "worker"}})
  results_lib.atomic_write_text(
      os.path.join(args.out_dir, f"{_stem(args)}.md"), table)
  print(table)
  print(json.dumps(checks, indent=1))


if __name__ == "__main__":
  main()
