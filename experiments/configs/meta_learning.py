"""Config for experiments.meta_learning: MAML on sinusoid regression.

Defaults follow Finn, Abbeel & Levine (2017, Sec. 5.1): amplitude in
[0.1, 5], phase in [0, pi], x in [-5, 5], 2 hidden layers of 40 ReLU units,
MSE, inner SGD step size alpha = 0.01 (training and fine-tuning), 25 tasks per
meta-batch, Adam(1e-3), 70,000 meta-iterations, and -- as in the paper ("one
gradient update with K = 10 examples ... we fine-tune a single meta-learned
model on varying numbers of K examples") and the reference code's
``train_update_batch_size`` -- one model meta-trained on K = 10 point tasks,
fine-tuned with K = 5 and K = 10 points. Two additions, both measured
(5-shot MSE after 1 / 10 fine-tuning steps, mean +- SE over the default
4000 test tasks, seed 0, CPU):

* ``warmup_iterations``: a linear warm-up of the meta learning rate. Without
  it Adam's first steps (1e-3 against weights of std 0.01) kill 23 of the 40
  second-layer ReLUs within 250 iterations (dead on all of [-5, 5]) and 20
  stay dead; with it 6-7 are dead after 2,000 iterations. MAML 0.671 +- 0.012
  / 0.293 +- 0.008 -> 0.600 +- 0.011 / 0.272 +- 0.007 on the same test tasks
  (seed 1: 0.645 +- 0.012 / 0.265 +- 0.006); the pre-trained baseline, trained
  the same way, 2.53 / 2.26 -> 2.28 / 1.74.
* ``inner_steps = 2`` with ``step_weights = (0.5, 0.5)``: the meta-objective
  averages the query losses after inner steps 1 and 2 (the multi-step loss of
  MAML++, Antoniou et al. 2019); alpha stays fixed, nothing is learned but
  the initialisation. The paper's objective (one inner step) fits one step
  better (0.579 +- 0.011 with warm-up) but 10 steps of alpha = 0.01 SGD then
  diverge on 3 of the 4000 test tasks (MSE inf, mean undefined; without
  warm-up 68 of 20,000 tasks). Trained for a single step, the net's
  support-loss Hessian passes the SGD stability limit 2 / alpha = 200 (top
  eigenvalue > 200 on 92% of 5-shot test tasks, median 300, for a model
  trained on K = 5 with meta-batch 50); a second scored inner step penalises
  that. Two steps with only the last one scored: 0.80 / 0.24 (no
  warm-up, 20,000 tasks). Neither a larger meta-batch (50), a cosine
  schedule, nor a larger meta learning rate removed the blow-ups.

The rare divergence is not hidden: the table has the worst test task, and
results.json per-step maxima, medians and non-finite counts.
"""
import ml_collections


def get_config(arg=None):
  """Default config; ``arg="quick"`` shrinks it for the smoke test."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.hidden = (40, 40)
  config.activation = "relu"
  # The reference code draws weights from a (truncated) normal with std 0.01;
  # the default LeCun scale on x in [-5, 5] makes alpha = 0.01 SGD diverge.
  config.kernel_init = "normal"
  config.init_scale = 0.01
  config.alpha = 0.01  # inner SGD step size (train and test).
  config.inner_steps = 2  # inner steps during meta-training.
  # Weights of the query losses after inner steps 1..inner_steps (None in
  # Python, or "(0, ..., 0, 1.0)" on the command line: the last step only, the
  # paper's objective); see the module docstring.
  config.step_weights = (0.5, 0.5)
  config.first_order = False  # True: FOMAML (no second-order term).
  config.meta_batch_size = 25
  config.meta_learning_rate = 1e-3
  config.warmup_iterations = 5000  # linear warm-up of the meta learning rate.
  config.num_iterations = 70000  # as the paper.
  config.log_every = 10000  # meta-iterations per compiled scan call.
  config.train_shots = 10  # K of the training tasks (support = query size).
  config.shots = (5, 10)  # K at fine-tuning time, one table row per K.
  config.test_steps = (1, 10)  # adaptation steps reported in the table.
  config.num_test_tasks = 4000  # SE of the 5-shot 1-step mean ~0.012.
  config.num_test_points = 100  # query points per test task.
  config.num_plot_tasks = 3

  if arg == "quick":
    # The smoke test (tests/experiments_meta_learning_test.py): 400 iterations
    # still lower both training losses by >= 10 %.
    config.num_iterations = 400
    config.log_every = 200
    config.warmup_iterations = 40
    config.shots = (5,)
    config.num_test_tasks = 50
    config.num_test_points = 20
  elif arg not in (None, ""):
    raise ValueError(f"unknown config argument {arg!r}; use 'quick' or nothing")
  return config
