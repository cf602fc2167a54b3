"""Data sets: the UCI 20-split regression benchmark, scikit-learn data, toys.

Three families, all returned as float32 / int32 arrays (numpy for files and
scikit-learn data, ``jax.Array`` for the key-driven synthetic generators, which
are pure and jittable):

* **UCI regression benchmark** in the standard layout of Hernández-Lobato &
  Adams (2015) and Gal & Ghahramani (2016): :func:`load_uci` reads a folder,
  :func:`uci_split` standardises one split with *training* statistics and
  :func:`uci_stacked_splits` stacks splits on a leading axis ``[S, ...]`` so
  that all splits train as one ``jax.vmap``-ed program. The data path is always
  given by the caller; nothing is downloaded or copied.
* **scikit-learn shipped data** (no downloads): :func:`load_digits`,
  :func:`load_breast_cancer`, :func:`load_diabetes`, plus
  :func:`train_test_split_arrays` and :func:`standardise`.
* **Synthetic**: :func:`gap_regression` (1-D regression with a hole in the
  inputs, for in-between uncertainty), :func:`sinusoid_tasks` (the MAML
  sinusoid task distribution of Finn et al. 2017) and
  :func:`noisy_sinusoid_sequences` (next-value forecasting for RNNs).

Validation happens here, at the boundary: a missing file, a NaN, a ragged row
or an index out of range raises ``FileNotFoundError`` / ``ValueError`` with a
message naming the file, row and column.
One module each (``uci``, ``sklearn_sets``, ``toys``; validation and
standardisation in ``preprocessing``); every public name is re-exported here,
so ``from jaxbdl import data; data.load_uci(...)`` is the way to call them.


References:
  Hernández-Lobato & Adams (2015), Probabilistic backpropagation for scalable
    learning of Bayesian neural networks, ICML (the UCI splits).
  Gal & Ghahramani (2016), Dropout as a Bayesian approximation, ICML.
  Finn, Abbeel & Levine (2017), Model-agnostic meta-learning, ICML, Sec. 5.1.
"""
from jaxbdl.data.preprocessing import check_finite
from jaxbdl.data.preprocessing import check_shape
from jaxbdl.data.preprocessing import standardise
from jaxbdl.data.preprocessing import train_test_split_arrays
from jaxbdl.data.sklearn_sets import load_breast_cancer
from jaxbdl.data.sklearn_sets import load_diabetes
from jaxbdl.data.sklearn_sets import load_digits
from jaxbdl.data.toys import GapData
from jaxbdl.data.toys import gap_regression
from jaxbdl.data.toys import noisy_sinusoid_sequences
from jaxbdl.data.toys import sine_2pi
from jaxbdl.data.toys import sinusoid_tasks
from jaxbdl.data.uci import UCIDataset
from jaxbdl.data.uci import UCISplit
from jaxbdl.data.uci import list_uci_datasets
from jaxbdl.data.uci import load_uci
from jaxbdl.data.uci import uci_split
from jaxbdl.data.uci import uci_stacked_splits

__all__ = [
    "preprocessing", "uci", "sklearn_sets", "toys",
    "UCIDataset", "UCISplit", "load_uci", "uci_split", "uci_stacked_splits",
    "list_uci_datasets", "load_digits", "load_breast_cancer", "load_diabetes",
    "train_test_split_arrays", "standardise", "GapData", "gap_regression",
    "sine_2pi",
    "sinusoid_tasks", "noisy_sinusoid_sequences", "check_finite",
    "check_shape",
]
