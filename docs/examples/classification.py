# From a Flax model to its posterior predictive and its calibration (classification).
import flax.linen as nn, jax, numpy as np
from sklearn.datasets import make_moons
from jaxbdl.evaluation import calibration
from jaxbdl.bayes import likelihoods, posterior, priors, registry

class Net(nn.Module):                                   # any Flax model: x [N, D] -> logits [N, C]
  @nn.compact
  def __call__(self, x):
    return nn.Dense(2)(nn.relu(nn.Dense(32)(x)))

x, y = make_moons(400, noise=0.25, random_state=0)
x, y = x.astype(np.float32), y.astype(np.int32)
model = posterior.Model(Net(), lambda hp: likelihoods.categorical(2),
                        lambda hp: priors.gaussian(hp["prior_scale"]))
config = registry.default_config()
config.num_epochs, config.ensemble.num_members = 100, 4
post = registry.build("ensemble", model, config)        # or "map", "mfvi", "swag", ...
hp = registry.default_hparams("ensemble", config, {"learning_rate": 1e-2})
state, history = jax.jit(post.fit)(jax.random.key(0), {"x": x[:300], "y": y[:300]}, hp, None)
pred = post.predict(state, x[300:], jax.random.key(1), hp)   # probs [S, 100, 2]
probs = likelihoods.mixture_summary(pred)["probs"]     # [100, 2]
print(f"accuracy {np.mean(probs.argmax(1) == y[300:]):.2f}, "
      f"NLL {float(calibration.nll(y[300:], probs)):.3f}, "
      f"ECE {float(calibration.expected_calibration_error(y[300:], probs, num_bins=10)):.3f}")
