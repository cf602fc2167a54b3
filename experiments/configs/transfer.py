"""Config for experiments.transfer: digits 0-4 -> few-shot digits 5-9."""
import ml_collections


def get_config(arg=None):
  """Default config (a few minutes on 2 CPU cores); ``arg="quick"`` shrinks it."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_seeds = 3  # few-shot draws and head inits, vmapped.
  config.split_seed = 0  # fixed train/test split of the digits.
  config.test_fraction = 0.2
  config.source_classes = (0, 1, 2, 3, 4)
  config.target_classes = (5, 6, 7, 8, 9)
  config.shots = (1, 5, 10, 50)  # labelled target examples per class.
  config.methods = ("frozen", "finetune", "scratch")
  # An existing checkpoint of source-task CNN params to reuse ("" = pre-train
  # and save to <workdir>/pretrained).
  config.pretrained_checkpoint = ""

  config.cnn = ml_collections.ConfigDict()
  config.cnn.features = (16, 32)
  config.cnn.hidden = 64
  config.cnn.pool = "max"
  config.cnn.dropout_rate = 0.0

  config.pretrain = ml_collections.ConfigDict()
  config.pretrain.learning_rate = 2e-3
  config.pretrain.num_epochs = 30
  config.pretrain.batch_size = 64

  # Adaptation: full-batch Adam on the (tiled) few-shot set.
  config.adapt = ml_collections.ConfigDict()
  config.adapt.num_steps = 50
  config.adapt.learning_rate = ml_collections.ConfigDict(
      dict(frozen=1e-2, finetune=1e-3, scratch=1e-3))

  if arg == "quick":
    config.num_seeds = 1
    config.shots = (1, 2)
    config.cnn.features = (8, 16)
    config.cnn.hidden = 32
    config.pretrain.num_epochs = 3
    config.adapt.num_steps = 20
  elif arg not in (None, ""):
    raise ValueError(f"unknown config argument {arg!r}; use 'quick' or nothing")
  return config
