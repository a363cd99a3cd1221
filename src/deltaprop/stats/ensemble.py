"""Ensembles over initialisations: weight priors, stacked draws, Gaussian inputs and targets.

The E[delta] question's expectations are over the weights *and* the inputs.  A :class:`Prior` gives,
per layer l = 1..L, the raw per-entry mean and variance of W[l] and of b[l]; :func:`draw`
samples a stack of K networks from it as one stacked computation (``Network.init(K=K)``),
and the theory (:mod:`deltaprop.theory`) reads the same numbers, so measurement and
prediction always describe one distribution.

Parametrisations: ``std`` is the raw standard deviation of one entry (the question's sigma_w);
``sigma_w2`` is the mean-field variance, Var(W[l]_jk) = sigma_w^2 / n_{l-1}; a named
initialiser (``glorot_normal``, ``he_normal``, ``orthogonal``, ...) fixes the variance from
the fans, or, given with ``std`` or ``sigma_w2``, only the law (uniform, normal, orthogonal)
that they scale.  Biases are N(bias_mean, sigma_b^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _backend
from ..init import canonical
from ..network import Network, per_layer

__all__ = ["Prior", "prior", "empirical_prior", "draw", "gaussian_inputs", "gaussian_targets",
           "init_variance"]


@dataclass(frozen=True)
class Prior:
    """Per-layer (slot 0 = None) raw weight mean/variance and bias mean/variance."""

    sizes: tuple
    mean_w: tuple
    var_w: tuple
    mean_b: tuple
    var_b: tuple
    init: str = "normal"
    scaled: bool = False  # var_w set by std or sigma_w2, not by the initialiser's fans

    @property
    def L(self) -> int:
        return len(self.sizes) - 1

    def sigma_w2(self, l) -> float:
        """Mean-field variance n_{l-1} Var(W[l])."""
        return self.sizes[l - 1] * self.var_w[l]


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


def prior(sizes, *, init=None, mean_w=0.0, std=None, sigma_w2=None, sigma_b2=0.0,
          bias_mean=0.0) -> Prior:
    """The weight distribution of an ensemble.

    At most one of ``std`` (raw per-entry standard deviation, scalar or per layer) or
    ``sigma_w2`` (mean-field variance, Var = sigma_w^2 / n_{l-1}) sets the weight variance;
    without them ``init`` (a named initialiser, default ``"glorot_normal"``) sets it from
    the fans.  With one of them, ``init`` names only the law that they scale (``uniform``,
    ``orthogonal``, ...; default normal).  ``mean_w`` is added to every weight (the question's
    mu_w); biases ~ N(bias_mean, sigma_b2).
    """
    sizes = tuple(int(n) for n in sizes)
    L = len(sizes) - 1
    if std is not None and sigma_w2 is not None:
        raise ValueError("give only one of std and sigma_w2")
    scaled = std is not None or sigma_w2 is not None
    if scaled and init is not None and canonical(init) in ("epsilon", "debug"):
        raise ValueError(f"initialiser {init!r} takes no std or sigma_w2")
    mw, sd, s2 = (per_layer(v, L, k) for k, v in
                  (("mean_w", mean_w), ("std", std), ("sigma_w2", sigma_w2)))
    sb2, mb = per_layer(sigma_b2, L, "sigma_b2"), per_layer(bias_mean, L, "bias_mean")
    var_w, var_b = [None], [None]
    name = canonical(init) if scaled and init is not None else "normal"
    for l in range(1, L + 1):
        n_in, n_out = sizes[l - 1], sizes[l]
        if std is not None:
            vw, vb = float(sd[l - 1]) ** 2, 0.0
        elif sigma_w2 is not None:
            vw, vb = float(s2[l - 1]) / n_in, 0.0
        else:
            name = canonical(init or "glorot_normal")
            vw, vb = init_variance(name, n_in, n_out)
        if vw < 0 or sb2[l - 1] < 0:
            raise ValueError("variances must be >= 0")
        var_w.append(vw)
        var_b.append(vb + float(sb2[l - 1]))
    return Prior(sizes, (None, *map(float, mw)), tuple(var_w), (None, *map(float, mb)),
                 tuple(var_b), name, scaled and name != "normal")


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
    ``mean_w``, scaled to var_w when the prior is ``scaled``; otherwise
    W[l] ~ N(mean_w[l], var_w[l]) and b[l] ~ N(mean_b[l], var_b[l]).
    """
    common = dict(seed=seed, K=K, dtype=dtype, backend=backend, device=device,
                  mean=list(p.mean_w[1:]), bias_mean=list(p.mean_b[1:]),
                  bias_std=[math.sqrt(v) for v in p.var_b[1:]])
    if p.init in ("normal", "empirical"):
        return Network.init(p.sizes, activations, output, init="normal",
                            std=[math.sqrt(v) for v in p.var_w[1:]], **common)
    if p.init == "epsilon":  # epsilon draws its biases itself (U(-eps, eps))
        common.pop("bias_std")
    if p.scaled:
        common["std"] = [math.sqrt(v) for v in p.var_w[1:]]
    return Network.init(p.sizes, activations, output, init=p.init, **common)


def gaussian_inputs(m, n0, mean=0.0, var=1.0, seed=0, K=None) -> np.ndarray:
    """x with i.i.d. N(mean, var) entries: (m, n0), or (K, m, n0) fresh per network."""
    rng = np.random.default_rng(seed)
    shape = (m, n0) if K is None else (K, m, n0)
    return mean + math.sqrt(var) * rng.standard_normal(shape)


def gaussian_targets(m, n_out, mean=0.0, var=1.0, seed=1, K=None) -> np.ndarray:
    """y with i.i.d. N(mean, var) entries, drawn independently of x (the question's E[y])."""
    return gaussian_inputs(m, n_out, mean, var, seed, K)
