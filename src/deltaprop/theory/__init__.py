"""Theory of the backward pass at initialisation, one concept per module.

* :mod:`.gaussian`         E[f], E[f'], E[f'^2], E[f f'], E[f^2] under N(mu, s^2);
* :mod:`.forward`          mean-field recursion for the mean, variance and unit covariance
                           of z[l] (mu_w = 0 and mu_w != 0);
* :mod:`.output`           moments of delta[L] from the loss;
* :mod:`.independence`     the E[delta] question's independence approximation, layer by layer;
* :mod:`.mean_field`       the gradient-independence recursion, chi, the variance map's
                           fixed points, gradient depth scale, edge of chaos;
* :mod:`.exact_last_layer` the question's exact last-hidden-layer formula and its conditions;
* :mod:`.signal`           signal propagation: the length and correlation (C-) maps, c*,
                           chi_c, the depth scales xi_q and xi_c, the phase, the calculator
                           of ``deltaprop theory``;
* :mod:`.jacobian`         the input-output Jacobian's spectrum in the free-probability
                           limit: m_1 = chi_1^L, the variance of the squared singular
                           values, Gaussian against orthogonal weights (``deltaprop jacobian``);
* :mod:`.weight_grads`     the weight-gradient second moment per layer: given the forward
                           pass, factorised, Glorot & Bengio's linear regime (eq. 14);
* :mod:`.batch_gradient`   E[delta[l]^2], E||db[l]||^2, E||dW[l]||^2 of a whole batch at
                           initialisation: pairs of samples, exact for Gaussian weights;
* :mod:`.finite_width`     the spread of E[delta[l]^2] between networks at finite width
                           (Hanin 2018): exact for ReLU at one input, leading order in 1/n
                           otherwise; how many networks a precision takes.

Every function states its formula and assumptions in its docstring.  NumPy (and SciPy for
the roots of the mean-field fixed points and edge of chaos) only.
"""

from .batch_gradient import batch_gradient_theory
from .exact_last_layer import ForwardCross, exact_mean, independence_gap, question_formula
from .forward import (
                      InputStats,
                      data_input_stats,
                      forward_recursion,
                      gaussian_input_stats,
                      raw_variance,
)
from .gaussian import bivariate, expect, expectations
from .independence import independence_backward
from .jacobian import critical_point, derivative_moments, free_moments, jacobian_theory
from .mean_field import (
                      FixedPoint,
                      chi,
                      chi_at_fixed_point,
                      edge_of_chaos,
                      fixed_point,
                      fixed_points,
                      gradient_depth_scale,
                      mean_field_backward,
)
from .output import output_delta_moments
from .signal import (
                      SignalTheory,
                      c_star,
                      correlation_fixed_points,
                      correlation_iteration,
                      correlation_map,
                      correlation_slope,
                      length_map,
                      signal_theory,
)
from .weight_grads import linear_regime

__all__ = ["expect", "expectations", "bivariate", "InputStats", "gaussian_input_stats",
           "data_input_stats", "forward_recursion", "raw_variance", "output_delta_moments",
           "independence_backward", "mean_field_backward", "chi", "chi_at_fixed_point",
           "gradient_depth_scale", "edge_of_chaos", "fixed_point", "fixed_points",
           "FixedPoint", "ForwardCross", "question_formula",
           "exact_mean", "independence_gap", "length_map", "correlation_map",
           "correlation_slope", "correlation_fixed_points", "c_star", "correlation_iteration",
           "signal_theory", "SignalTheory", "critical_point", "derivative_moments",
           "free_moments", "jacobian_theory", "batch_gradient_theory", "linear_regime"]
