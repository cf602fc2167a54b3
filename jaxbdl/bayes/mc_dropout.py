"""MC dropout (Gal & Ghahramani 2016): dropout at training AND test time.

Training is MAP with dropout on (the objective of their Eq. 1, weight decay =
a Gaussian prior); the predictive is the mixture over ``T =
config.num_predict_samples`` stochastic passes (their Eq. 7-8), chunked over
inputs (``config.predict_batch_size``). The module must be a
``networks.MLP``; its dropout rate is the traced hyper-parameter
``hp["dropout_rate"]`` (``config.dropout_inputs`` also drops input features,
as in their UCI network).

The concrete-dropout relations between weight decay, prior length-scale and
model precision (their Sec. 4.2, Eq. 10) are :func:`weight_decay_from_precision`
and :func:`precision_from_weight_decay`.

References:
  Y. Gal, Z. Ghahramani (2016), Dropout as a Bayesian approximation:
    representing model uncertainty in deep learning, ICML.
"""
from __future__ import annotations

from typing import Any

from jaxbdl.nn import networks
from jaxbdl._checks import check_positive
from jaxbdl.bayes import map_estimate
from jaxbdl.bayes import posterior as post_lib

__all__ = ["make", "weight_decay_from_precision", "precision_from_weight_decay"]


def _check_rate(p: Any) -> None:
  if isinstance(p, (int, float)) and not 0.0 <= p < 1.0:
    raise ValueError(f"dropout_rate must be in [0, 1), got {p!r}")


def weight_decay_from_precision(tau: Any, length_scale: Any,
                                dropout_rate: Any, num_data: Any) -> Any:
  """``lambda = (1 - p) l^2 / (2 N tau)`` (Gal & Ghahramani 2016, Sec. 4.2).

  ``lambda`` multiplies ``||W||^2`` in the per-datum loss ``(1/N) sum_n E_n +
  lambda ||W||^2``; ``tau > 0`` is the model precision, ``l > 0`` the prior
  length-scale, ``p`` in ``[0, 1)`` the dropout rate, ``N > 0``.
  """
  for name, v in (("tau", tau), ("length_scale", length_scale),
                  ("num_data", num_data)):
    check_positive(name, v)
  _check_rate(dropout_rate)
  return (1.0 - dropout_rate) * length_scale ** 2 / (2.0 * num_data * tau)


def precision_from_weight_decay(weight_decay: Any, length_scale: Any,
                                dropout_rate: Any, num_data: Any) -> Any:
  """``tau = (1 - p) l^2 / (2 N lambda)``: the inverse relation."""
  for name, v in (("weight_decay", weight_decay),
                  ("length_scale", length_scale), ("num_data", num_data)):
    check_positive(name, v)
  _check_rate(dropout_rate)
  return (1.0 - dropout_rate) * length_scale ** 2 / (2.0 * num_data
                                                     * weight_decay)


def make(model: post_lib.Model, config) -> post_lib.Posterior:
  """MC dropout over ``model.module`` (a ``networks.MLP``)."""
  if not isinstance(model.module, networks.MLP):
    raise ValueError("mc_dropout needs a networks.MLP module, got "
                     f"{type(model.module).__name__}")
  inputs = bool(config.get("dropout_inputs", False))

  def module_for(hp):
    return model.module.clone(dropout_rate=hp["dropout_rate"],
                              dropout_inputs=hp.get("dropout_inputs", inputs))

  return map_estimate.point_method(
      "mc_dropout", model, config, stochastic=True,
      num_predict=int(config.num_predict_samples), module_for=module_for)
