"""Config for ``experiments/nngp_regression.py``: NNGP vs RBF GP vs networks.

``get_config()`` is the full study (the gap data take ~1-2 minutes on 2 CPU
cores; UCI data sets via ``--data_dir`` add per data set);
``get_config("quick")`` is the tiny variant used by the smoke test.
"""
import ml_collections


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg == "quick"`` shrinks everything."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Methods compared: "nngp_gp", "rbf_gp", "map_net", "mfvi_bnn".
  c.methods = ("nngp_gp", "rbf_gp", "map_net", "mfvi_bnn")

  # (a) 1-D gap data: jaxbdl.data.gap_regression (x in [-1,-0.3] U [0.3,1],
  # y = sin(2 pi x) + noise_std * eps).
  c.gap = ml_collections.ConfigDict()
  c.gap.num_train = 100
  c.gap.num_test = 500         # fresh points from the training distribution
  c.gap.num_gap_test = 200     # points inside the gap
  c.gap.noise_std = 0.1
  c.gap.num_grid = 200

  # NNGP kernel (jaxbdl.gaussian_processes.nngp) and its initial hyper-parameters.
  c.nngp = ml_collections.ConfigDict()
  c.nngp.depth = 3
  c.nngp.activation = "relu"
  c.nngp.init_sigma_w2 = 2.0
  c.nngp.init_sigma_b2 = 0.1
  # RBF kernel (jaxbdl.gaussian_processes.kernels) initial hyper-parameters (one lengthscale).
  c.rbf = ml_collections.ConfigDict()
  c.rbf.init_lengthscale = 1.0
  c.rbf.init_variance = 1.0
  # Type-II maximum likelihood (jaxbdl.gaussian_processes.gp.optimise_hyperparameters).
  c.gp = ml_collections.ConfigDict()
  c.gp.init_noise_variance = 0.1
  c.gp.num_steps = 300
  c.gp.learning_rate = 0.05
  c.gp.jitter = 1e-6
  c.gp.max_train = 1000        # random subset of larger training sets

  # Networks (jaxbdl.nn.networks.MLP), shared by MAP and mean-field VI.
  c.net = ml_collections.ConfigDict()
  # tanh: with zero initial biases a 1-D ReLU net starts with every kink at
  # x = 0 and (measured) stays near-linear on the gap data.
  c.net.hidden = (50, 50)
  c.net.activation = "tanh"
  c.net.prior_scale = 1.0      # Gaussian prior std on the weights
  c.net.init_noise_scale = 0.5  # learned homoscedastic noise std (std. units)
  c.net.min_noise_scale = 1e-3
  c.net.batch_size = 25
  c.net.gap_num_epochs = 1500   # epochs on the gap data (N = 100)
  c.net.uci_num_epochs = 200    # epochs on UCI data
  c.net.learning_rate = 3e-3
  # Mean-field VI (jaxbdl.bayes.mfvi): extra settings.
  c.vi = ml_collections.ConfigDict()
  c.vi.init_scale = 1e-3       # initial posterior std
  c.vi.train_samples = 1
  c.vi.predict_samples = 100

  # (b) UCI: at most this many standard splits per data set (0: all).
  c.uci_num_splits = 0

  if arg == "quick":
    c.gap.num_train = 40
    c.gap.num_test = 50
    c.gap.num_gap_test = 20
    c.gap.num_grid = 50
    c.nngp.depth = 2
    c.gp.num_steps = 60
    c.gp.max_train = 64
    c.net.hidden = (16, 16)
    c.net.learning_rate = 1e-2
    c.net.batch_size = 20
    c.net.gap_num_epochs = 400
    c.net.uci_num_epochs = 100
    c.vi.predict_samples = 10
    c.uci_num_splits = 2
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; use 'quick' or nothing")
  return c
