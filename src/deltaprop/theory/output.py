"""Moments of the output error vector delta[L] at initialisation.

Assumptions: z[L]_k ~ N(m, q) (from :mod:`.forward`), targets y_k independent of z[L]
with E[y] = ``y_mean`` and E[y^2] = ``y_second`` (per component; the same for every k).

* MSE, output f:  delta = (f(z) - y) f'(z)
      E[delta]   = E[f f'] - E[y] E[f']
      E[delta^2] = E[f^2 f'^2] - 2 E[y] E[f f'^2] + E[y^2] E[f'^2]
  (linear output: E[delta] = m - E[y],  E[delta^2] = q + m^2 - 2 m E[y] + E[y^2]).
* Sigmoid cross-entropy: delta = f(z) - y
      E[delta] = E[f] - E[y],   E[delta^2] = E[f^2] - 2 E[y] E[f] + E[y^2].
* Softmax cross-entropy: not elementwise; returns ``None`` (callers anchor the backward
  recursions at the measured output moments instead).
"""

from __future__ import annotations

from .. import activations as _act
from .. import losses as _losses
from .._checks import check_nonnegative
from .gaussian import expect, expectations, numpy_pair

__all__ = ["output_delta_moments"]


def output_delta_moments(loss, f_out, mean, var, y_mean, y_second):
    """(E[delta[L]_k], E[delta[L]_k^2]) under the module's assumptions, or ``None``."""
    check_nonnegative("var", var)
    check_nonnegative("y_second", y_second)
    loss, act = _losses.get(loss), _act.get(f_out)
    if not act.elementwise:
        return None
    E = expectations(act, mean, var)
    if loss.name == "mse":
        if act.name == "identity":
            return mean - y_mean, var + mean**2 - 2 * mean * y_mean + y_second
        _, f, df = numpy_pair(act)
        e_f2df2 = float(expect(lambda z: (f(z) * df(z)) ** 2, mean, var))
        e_fdf2 = float(expect(lambda z: f(z) * df(z) ** 2, mean, var))
        return (float(E["fdf"] - y_mean * E["df"]),
                e_f2df2 - 2 * y_mean * e_fdf2 + y_second * float(E["df2"]))
    if loss.name == "sigmoid-cross-entropy":
        return float(E["f"] - y_mean), float(E["f2"] - 2 * y_mean * E["f"] + y_second)
    return None
