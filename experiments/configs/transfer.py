"""Config for experiments.transfer: digits 0-4 -> few-shot digits 5-9."""
import ml_collections


def get_config(arg=None):
  """Default config (a few minutes on 2 CPU cores); ``arg="quick"`` shrinks it."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_seeds = 5  # few-shot draws and initialisations, vmapped.
  config.split_seed = 0  # fixed train/test split of the digits.
  config.test_fraction = 0.2
  config.source_classes = (0, 1, 2, 3, 4)
  config.target_classes = (5, 6, 7, 8, 9)
  config.shots = (1, 5, 10, 50)  # labelled target examples per class.
  # Training images of each target class held out to choose the adaptation
  # hyper-parameters (reported as valid_accuracy); few-shot sets are drawn
  # from the rest. The test images are never used for choosing.
  config.valid_per_class = 40
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

  # Adaptation: full-batch Adam on the (tiled) few-shot set. frozen and
  # finetune re-initialise the layers from `cut` up (CNN.layer_names:
  # convs_0, convs_1, dense, head): "dense" = a new MLP head on the conv
  # features. "head" (a linear head on the penultimate features) transfers
  # badly: after pre-training on 5 classes those are specialised (lower rank,
  # more dead ReLUs; see results.json "features").
  # Learning rates by mean validation accuracy over k (3 seeds; lr 1e-3,
  # 3e-3, 1e-2; finetune body scale 0.1, 1); steps: the fewest within 0.005
  # of the best validation accuracy over 25..300 steps. The test images were
  # not used for choosing.
  config.adapt = ml_collections.ConfigDict()
  config.adapt.cut = "dense"
  config.adapt.learning_rate = ml_collections.ConfigDict(
      dict(frozen=3e-3, finetune=3e-3, scratch=3e-3))
  config.adapt.num_steps = ml_collections.ConfigDict(
      dict(frozen=100, finetune=50, scratch=50))
  config.adapt.body_lr_scale = 1.0  # finetune: body lr = scale * lr.

  if arg == "quick":
    config.num_seeds = 1
    config.shots = (1, 2)
    config.cnn.features = (8, 16)
    config.cnn.hidden = 32
    config.pretrain.num_epochs = 3
    config.valid_per_class = 20
    config.adapt.num_steps = ml_collections.ConfigDict(
        dict(frozen=20, finetune=20, scratch=20))
  elif arg not in (None, ""):
    raise ValueError(f"unknown config argument {arg!r}; use 'quick' or nothing")
  return config
