"""Published UCI regression results (mean, standard error) on the standard splits.

Copied from ``shared/data/uci/README.md`` (the data folder beside the
repository), which reprints:

* ``vi``: variational inference of Graves (2011), and ``pbp``: probabilistic
  backpropagation (Hernández-Lobato & Adams 2015), both as reprinted in
  Gal & Ghahramani (2016), "Dropout as a Bayesian approximation", arXiv v6,
  Table 1;
* ``mc_dropout``: MC dropout from the 2018 grid-search re-run published with
  the reference code of Gal & Ghahramani (2016).

Units: test RMSE in original target units; test log-likelihood in nats per
test point (original units). Each entry is ``(mean, standard error)``.
"""
from __future__ import annotations

SOURCES = {
    "vi": "Graves (2011) VI, as reprinted in Gal & Ghahramani (2016, arXiv v6, "
          "Table 1)",
    "pbp": "PBP (Hernandez-Lobato & Adams 2015), as reprinted in Gal & "
           "Ghahramani (2016, arXiv v6, Table 1)",
    "mc_dropout": "MC dropout, 2018 grid-search re-run published with the "
                  "reference code of Gal & Ghahramani (2016)",
}

RMSE = {
    "concrete": {"vi": (7.19, 0.12), "pbp": (5.67, 0.09),
                 "mc_dropout": (4.82, 0.16)},
    "energy": {"vi": (2.65, 0.08), "pbp": (1.80, 0.05),
               "mc_dropout": (0.54, 0.01)},
    "kin8nm": {"vi": (0.10, 0.00), "pbp": (0.10, 0.00),
               "mc_dropout": (0.08, 0.00)},
    "power-plant": {"vi": (4.33, 0.04), "pbp": (4.12, 0.03),
                    "mc_dropout": (4.01, 0.04)},
    "wine-quality-red": {"vi": (0.65, 0.01), "pbp": (0.64, 0.01),
                         "mc_dropout": (0.62, 0.01)},
    "yacht": {"vi": (6.89, 0.67), "pbp": (1.02, 0.05),
              "mc_dropout": (0.67, 0.05)},
}

LOG_LIKELIHOOD = {
    "concrete": {"vi": (-3.39, 0.02), "pbp": (-3.16, 0.02),
                 "mc_dropout": (-2.93, 0.02)},
    "energy": {"vi": (-2.39, 0.03), "pbp": (-2.04, 0.02),
               "mc_dropout": (-1.21, 0.01)},
    "kin8nm": {"vi": (0.90, 0.01), "pbp": (0.90, 0.01),
               "mc_dropout": (1.14, 0.01)},
    "power-plant": {"vi": (-2.89, 0.01), "pbp": (-2.84, 0.01),
                    "mc_dropout": (-2.80, 0.01)},
    "wine-quality-red": {"vi": (-0.98, 0.01), "pbp": (-0.97, 0.01),
                         "mc_dropout": (-0.93, 0.01)},
    "yacht": {"vi": (-3.43, 0.16), "pbp": (-1.63, 0.02),
              "mc_dropout": (-1.25, 0.01)},
}

DATASETS = tuple(RMSE)
