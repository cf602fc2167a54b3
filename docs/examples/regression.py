# From a Flax model to its posterior predictive and its calibration (regression).
import flax.linen as nn, jax, numpy as np
from jaxbdl.bayes import likelihoods, posterior, priors, registry

class Net(nn.Module):                                   # any Flax model: x [N, D] -> [N, 1]
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(nn.tanh(nn.Dense(32)(x)))

rng = np.random.RandomState(0)
x = rng.uniform(-2, 2, (256, 1)).astype(np.float32)
y = (np.sin(2 * x[:, 0]) + 0.2 * rng.randn(256)).astype(np.float32)
model = posterior.Model(Net(), lambda hp: likelihoods.gaussian(None),   # noise learned
                        lambda hp: priors.gaussian(hp["prior_scale"]))
config = registry.default_config()
config.num_epochs = 300
post = registry.build("mfvi", model, config)            # or "map", "ensemble", "swag", ...
hp = registry.default_hparams("mfvi", config, {"learning_rate": 1e-2})
state, history = jax.jit(post.fit)(jax.random.key(0), {"x": x[:200], "y": y[:200]}, hp, None)
pred = post.predict(state, x[200:], jax.random.key(1), hp)   # mixture: mean, variance [S, 56]
summary = likelihoods.mixture_summary(pred)             # mean [56], variance [56]
test_ll = float(likelihoods.mixture_log_prob(pred, y[200:]).mean())
z = np.abs(y[200:] - summary["mean"]) / np.sqrt(summary["variance"])
print(f"test log-lik {test_ll:.2f}, 90% interval covers {np.mean(z < 1.645):.0%}")
