"""The backward-pass laboratory: record, predict and compare the statistics of delta.

* :mod:`.moments`, :mod:`.histogram`: streaming accumulators that merge exactly;
* :mod:`.record`: :func:`record` runs forward/backward passes batch by batch and keeps
  per-layer, per-unit moments of delta, z, a, f'(z) and the weight gradients;
* :mod:`.ensemble`: weight priors and stacked draws of K networks;
* :mod:`.report`: predictions of :mod:`deltaprop.theory` beside the measurement;
* :mod:`.study`: the whole study (``deltaprop stats``); :mod:`.callback`: during training;
* :mod:`.weight_grads`: the weight-gradient second moment beside its theory (Glorot &
  Bengio's eq. 14); :mod:`.layer_stats`: per-layer E[delta^2], ||db||, ||dW||,
  ||W - W_0|| / ||W_0|| after every epoch, the theory at initialisation beside epoch 0;
* :mod:`.independent`: the forward pass back-propagated through an independent copy of the
  weights (gradient independence, measured);
* :mod:`.jacobian`: the input-output Jacobian's singular values per depth (dynamical
  isometry, ``deltaprop jacobian``);
* :mod:`.plots`: figures (matplotlib, imported lazily).
"""

from .callback import RecordCallback
from .ensemble import Prior, draw, empirical_prior, gaussian_inputs, gaussian_targets, prior
from .histogram import Histogram
from .independent import permuted_copy, record_independent
from .jacobian import JacobianResult, JacobianStudy, record_jacobian, run_jacobian
from .layer_stats import LayerStatsCallback
from .moments import Moments
from .record import Record, deltas, record, record_pass
from .report import compare, predict_moments, table, z_scores
from .study import Study, StudyResult, run_study, study_network

#: the shape of ``deltaprop stats``'s default study (read by bench/run.py)
DEFAULT_STUDY = {"sizes": [64, 64, 64, 64, 64, 10], "hidden": "tanh", "output": "identity",
                 "loss": "mse", "m": 1024, "K": 16, "dtype": "float64"}

__all__ = ["DEFAULT_STUDY", "RecordCallback", "LayerStatsCallback", "Moments", "Histogram",
           "Record", "record",
           "record_pass", "deltas", "Prior", "prior", "empirical_prior", "draw",
           "gaussian_inputs", "gaussian_targets", "predict_moments", "compare", "table", "z_scores",
           "Study", "StudyResult", "run_study", "study_network", "record_independent",
           "permuted_copy", "JacobianStudy", "JacobianResult", "record_jacobian",
           "run_jacobian"]
