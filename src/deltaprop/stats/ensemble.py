"""Ensembles over initialisations: weight priors, stacked draws, Gaussian inputs and targets.

The E[delta] question's expectations are over the weights *and* the inputs.  A :class:`Prior` gives,
per layer l = 1..L, the raw per-entry mean and variance of W[l] and of b[l]; :func:`draw`
samples a stack of K networks from it as one stacked computation (``Network.init(K=K)``),
and the theory (:mod:`deltaprop.theory`) reads the same numbers, so measurement and
prediction always describe one distribution.

Parametrisations, one name each: ``weight_std`` is the raw standard deviation of one entry
(the question's sigma_w; its square is a :class:`Prior`'s ``weight_var``) and ``weight_mean``
its mean (mu_w); ``sigma_w2`` is the width-scaled variance, Var(W[l]_jk) = sigma_w2 / n_{l-1}
(and ``sigma_b2`` the bias variance); a named initialiser (``glorot_normal``, ``he_normal``,
``orthogonal``, ...) fixes the variance from the fans, or, given with ``weight_std`` or
``sigma_w2``, only the law (uniform, normal, orthogonal) that they scale.  Biases are
N(bias_mean, sigma_b2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _backend
from .._checks import check_finite, check_nonnegative
from ..init import canonical
from ..network import Network, per_layer

__all__ = ["Prior", "prior", "empirical_prior", "draw", "gaussian_inputs", "gaussian_targets",
           "init_variance"]


@dataclass(frozen=True)
class Prior:
    """Per-layer (slot 0 = None) raw weight mean/variance and bias mean/variance."""

    sizes: tuple
    weight_mean: tuple
    weight_var: tuple
    bias_mean: tuple
    bias_var: tuple
    init: str = "normal"
    scaled: bool = False  # weight_var set by weight_std or sigma_w2, not by the initialiser

    def __post_init__(self):
        for name in ("weight_var", "bias_var"):
            check_nonnegative(name, getattr(self, name)[1:])
        for name in ("weight_mean", "bias_mean"):
            check_finite(name, getattr(self, name)[1:])

    @property
    def L(self) -> int:
        return len(self.sizes) - 1

    def sigma_w2(self, l) -> float:
        """Mean-field variance n_{l-1} Var(W[l])."""
        return self.sizes[l - 1] * self.weight_var[l]


def init_variance(name, n_in, n_out) -> tuple[float, float]:
    """(Var(W_jk), Var(b_j)) of a named initialiser with fans n_in, n_out (zero mean).

    ``standard``, U(-1/sqrt(n_in), 1/sqrt(n_in)): 1 / (3 n_in).  ``orthogonal`` (gain 1):
    1 / max(n_in, n_out), exactly -- a unit row (n_out <= n_in) or column (n_out >= n_in)
    has its squared length 1 spread over max(n_in, n_out) exchangeable entries.
    """
    key = canonical(name)
    table = {
        "normal": 1.0, "uniform": 0.05**2 / 3, "glorot_uniform": 2 / (n_in + n_out),
        "glorot_normal": 2 / (n_in + n_out), "he_uniform": 2 / n_in, "he_normal": 2 / n_in,
        "lecun_uniform": 1 / n_in, "lecun_normal": 1 / n_in, "standard": 1 / (3 * n_in),
        "orthogonal": 1 / max(n_in, n_out),
    }
    if key == "epsilon":
        eps2 = 6 / (n_in + n_out)
        return eps2 / 3, eps2 / 3
    if key not in table:
        raise ValueError(f"initialiser {name!r} is deterministic: no weight distribution")
    return table[key], 0.0


def prior(sizes, *, init=None, weight_mean=0.0, weight_std=None, sigma_w2=None, sigma_b2=0.0,
          bias_mean=0.0) -> Prior:
    """The weight distribution of an ensemble.

    At most one of ``weight_std`` (raw per-entry standard deviation, scalar or per layer) or
    ``sigma_w2`` (mean-field variance, Var = sigma_w^2 / n_{l-1}) sets the weight variance;
    without them ``init`` (a named initialiser, default ``"glorot_normal"``) sets it from
    the fans.  With one of them, ``init`` names only the law that they scale (``uniform``,
    ``orthogonal``, ...; default normal).  ``weight_mean`` is added to every weight (the
    question's mu_w); biases ~ N(bias_mean, sigma_b2).  A negative or non-finite
    ``weight_std``, ``sigma_w2`` or ``sigma_b2`` raises a ValueError naming it.
    """
    sizes = tuple(int(n) for n in sizes)
    L = len(sizes) - 1
    if weight_std is not None and sigma_w2 is not None:
        raise ValueError("give only one of weight_std and sigma_w2")
    scaled = weight_std is not None or sigma_w2 is not None
    if scaled and init is not None and canonical(init) in ("epsilon", "debug"):
        raise ValueError(f"initialiser {init!r} takes no weight_std or sigma_w2")
    mw, sd, s2, sb2, mb = (per_layer(v, L, k) for k, v in (
        ("weight_mean", weight_mean), ("weight_std", weight_std), ("sigma_w2", sigma_w2),
        ("sigma_b2", sigma_b2), ("bias_mean", bias_mean)))
    for key, values in (("weight_std", sd), ("sigma_w2", s2), ("sigma_b2", sb2)):
        check_nonnegative(key, values)
    for key, values in (("weight_mean", mw), ("bias_mean", mb)):
        check_finite(key, values)
    weight_var, bias_var = [None], [None]
    name = canonical(init) if scaled and init is not None else "normal"
    for l in range(1, L + 1):
        n_in, n_out = sizes[l - 1], sizes[l]
        if weight_std is not None:
            vw, vb = float(sd[l - 1]) ** 2, 0.0
        elif sigma_w2 is not None:
            vw, vb = float(s2[l - 1]) / n_in, 0.0
        else:
            name = canonical(init or "glorot_normal")
            vw, vb = init_variance(name, n_in, n_out)
        weight_var.append(vw)
        bias_var.append(vb + float(sb2[l - 1]))
    return Prior(sizes, (None, *map(float, mw)), tuple(weight_var), (None, *map(float, mb)),
                 tuple(bias_var), name, scaled and name != "normal")


def empirical_prior(net: Network) -> Prior:
    """The per-layer mean and variance of the entries of a (trained) network's W and b."""
    mw, vw, mb, vb = [None], [None], [None], [None]
    for l in range(1, net.L + 1):
        W, b = _backend.to_numpy(net.W[l]), _backend.to_numpy(net.b[l])
        mw.append(float(W.mean()))
        vw.append(float(W.var()))
        mb.append(float(b.mean()))
        vb.append(float(b.var()))
    return Prior(tuple(net.sizes), tuple(mw), tuple(vw), tuple(mb), tuple(vb), "empirical")


def draw(p: Prior, activations, output=None, *, K=None, seed=0, dtype="float64",
         backend=None, device=None) -> Network:
    """A stack of K networks (or one with K=None) drawn from the prior.

    Named initialisers draw with their own law (uniform, normal or orthogonal) plus
    ``weight_mean``, scaled to weight_var when the prior is ``scaled``; otherwise
    W[l] ~ N(weight_mean[l], weight_var[l]) and b[l] ~ N(bias_mean[l], bias_var[l]).
    """
    common = dict(seed=seed, K=K, dtype=dtype, backend=backend, device=device,
                  mean=list(p.weight_mean[1:]), bias_mean=list(p.bias_mean[1:]),
                  bias_std=[math.sqrt(v) for v in p.bias_var[1:]])
    if p.init in ("normal", "empirical"):
        return Network.init(p.sizes, activations, output, init="normal",
                            std=[math.sqrt(v) for v in p.weight_var[1:]], **common)
    if p.init == "epsilon":  # epsilon draws its biases itself (U(-eps, eps))
        common.pop("bias_std")
    if p.scaled:
        common["std"] = [math.sqrt(v) for v in p.weight_var[1:]]
    return Network.init(p.sizes, activations, output, init=p.init, **common)


def gaussian_inputs(m, n0, mean=0.0, var=1.0, seed=0, K=None) -> np.ndarray:
    """x with i.i.d. N(mean, var) entries: (m, n0), or (K, m, n0) fresh per network."""
    rng = np.random.default_rng(seed)
    shape = (m, n0) if K is None else (K, m, n0)
    return mean + math.sqrt(var) * rng.standard_normal(shape)


def gaussian_targets(m, n_out, mean=0.0, var=1.0, seed=1, K=None) -> np.ndarray:
    """y with i.i.d. N(mean, var) entries, drawn independently of x (the question's E[y])."""
    return gaussian_inputs(m, n_out, mean, var, seed, K)
