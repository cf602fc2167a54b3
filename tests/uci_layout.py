"""Test helper: writes tiny data sets in the UCI 20-split layout."""
import numpy as np


def write_uci_folder(root, name="toy", rows=60, n_splits=3, nan=False,
                     index_files=True):
  """Writes a tiny data set in the standard layout; returns its folder."""
  folder = root / name
  folder.mkdir(parents=True)
  rng = np.random.RandomState(0)
  x = rng.randn(rows, 3)
  y = x[:, 0] - 0.5 * x[:, 1] ** 2 + 0.1 * rng.randn(rows)
  table = np.concatenate([x, 10.0 + 3.0 * y[:, None]], axis=1)
  if nan:
    table[5, 1] = np.nan
  np.savetxt(folder / "data.txt", table)
  (folder / "n_splits.txt").write_text(f"{n_splits}\n")
  if index_files:
    (folder / "index_features.txt").write_text("0\n1\n2\n")
    (folder / "index_target.txt").write_text("3\n")
    n_test = rows // 10
    for k in range(n_splits):
      perm = np.random.RandomState(k).permutation(rows)
      np.savetxt(folder / f"index_train_{k}.txt", perm[n_test:], fmt="%d")
      np.savetxt(folder / f"index_test_{k}.txt", perm[:n_test], fmt="%d")
  return folder
