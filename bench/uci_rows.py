"""Turns an ``experiments.uci_regression`` results.json into a table file.

  .venv/bin/python bench/uci_rows.py WORKDIR/results.json bench/results/NAME.json

Writes ``{"rows": [...], "provenance": <the run's provenance>, "source":
...}`` with one row per (data set, method): test RMSE and LL (mean ± SE over
splits, original units), the mean validation LL that ranks methods
(standardised units, held-out rows of the training splits), the published
VI column and seconds, so ``python -m scripts.regen_docs`` renders it.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import reference_results as ref  # noqa: E402
from jaxbdl.evaluation import results as results_lib  # noqa: E402


def rows_of(res: dict) -> list[dict]:
  rows = []
  for name, by_method in res["datasets"].items():
    best = res.get("best_by_validation", {}).get(name, {}).get("method")
    for method, r in by_method.items():
      vi = ref.RMSE.get(name, {}).get("vi"), ref.LOG_LIKELIHOOD.get(
          name, {}).get("vi")
      rows.append({
          "dataset": name, "method": method,
          "rmse": f"{r['rmse_mean']:.3f} ± {r['rmse_se']:.3f}",
          "ll": f"{r['ll_mean']:.3f} ± {r['ll_se']:.3f}",
          "valid_ll": r.get("valid_ll_mean", float("nan")),
          "chosen_on_validation": method == best,
          "published_vi": ("-" if vi[0] is None else
                           f"{vi[0][0]:.2f} / {vi[1][0]:.2f}"),
          "seconds": r["seconds"] + r.get("grid_seconds", 0.0)})
  return rows


def main(argv):
  if len(argv) != 3:
    sys.exit("usage: uci_rows.py RESULTS_JSON OUT_JSON")
  with open(argv[1]) as f:
    res = json.load(f)
  out = {"rows": rows_of(res), "source": os.path.abspath(argv[1]),
         "provenance": res.get("provenance")}
  results_lib.atomic_write_json(argv[2], out)


if __name__ == "__main__":
  main(sys.argv)
