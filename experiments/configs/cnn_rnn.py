"""Config for experiments.cnn_rnn: CNN and LSTM/GRU on digits, RNN forecasting."""
import ml_collections


def get_config(arg=None):
  """Default config (a few minutes on 2 CPU cores); ``arg="quick"`` shrinks it."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_seeds = 3  # vmapped.
  config.split_seed = 0  # fixed train/test split of the 1797 digits.
  config.test_fraction = 0.2

  config.cnn = ml_collections.ConfigDict()
  config.cnn.features = (16, 32)
  config.cnn.hidden = 64
  config.cnn.dropout_rate = 0.25
  config.cnn.pool = "max"
  config.cnn.learning_rate = 2e-3
  config.cnn.num_epochs = 40
  config.cnn.batch_size = 64
  config.cnn.prior_scale = 0.0  # 0: flat prior (maximum likelihood).

  # Digits read row by row: T = 8 steps of D = 8 pixels.
  config.rnn_digits = ml_collections.ConfigDict()
  config.rnn_digits.cells = ("lstm", "gru")
  config.rnn_digits.hidden_size = 64
  config.rnn_digits.learning_rate = 3e-3
  config.rnn_digits.num_epochs = 40
  config.rnn_digits.batch_size = 64

  # Next-value forecasting of noisy sinusoids.
  config.forecast = ml_collections.ConfigDict()
  config.forecast.cells = ("lstm", "gru")
  config.forecast.hidden_size = 32
  config.forecast.num_train = 512
  config.forecast.num_test = 256
  config.forecast.length = 50
  config.forecast.noise_std = 0.1
  config.forecast.warmup = 10  # steps excluded from loss and MSE.
  config.forecast.learning_rate = 3e-3
  config.forecast.num_epochs = 60
  config.forecast.batch_size = 32

  if arg == "quick":
    config.num_seeds = 1
    config.cnn.features = (8, 16)
    config.cnn.hidden = 32
    config.cnn.num_epochs = 3
    config.rnn_digits.hidden_size = 16
    config.rnn_digits.num_epochs = 3
    config.rnn_digits.cells = ()  # Same code path as the CNN; saves a compile.
    config.forecast.cells = ("gru",)
    config.forecast.hidden_size = 8
    config.forecast.num_train = 64
    config.forecast.num_test = 32
    config.forecast.length = 20
    config.forecast.warmup = 5
    config.forecast.num_epochs = 5
    config.forecast.batch_size = 16
  elif arg not in (None, ""):
    raise ValueError(f"unknown config argument {arg!r}; use 'quick' or nothing")
  return config
