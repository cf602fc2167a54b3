"""Monte Carlo gradients: distributions, estimators, control variates,
relaxations of discrete variables, multi-sample bounds, quadrature references.

The entry points re-export everything of their concept: ``distributions``
(every family), ``estimators``, ``control_variates``, ``relaxations``. The
modules behind them hold one concept each: the protocols
(``distribution_protocol``, ``estimator_protocol``,
``control_variate_protocol``), the families (``location_scale``,
``discrete``, ``implicit_reparameterized``, ``multivariate_normal``), the
measure-valued estimators, the baselines and the delta method, the Concrete
relaxations (``concrete``).

Submodules load on first use (see jaxbdl/_lazy.py)."""
from jaxbdl import _lazy

__all__ = ["distributions", "estimators", "control_variates", "relaxations",
           "multisample", "quadrature",
           "distribution_protocol", "location_scale", "discrete",
           "implicit_reparameterized", "multivariate_normal",
           "estimator_protocol", "measure_valued_estimators",
           "control_variate_protocol", "baselines", "delta_method",
           "concrete"]
__getattr__, __dir__ = _lazy.attach(__name__, __all__)
