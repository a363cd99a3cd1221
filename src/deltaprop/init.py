"""Initialisers: draw W[l] (n_l, n_{l-1}) and b[l] (n_l,) on the host with NumPy.

Every random initialiser draws zero-mean weights with a scale set by the fans
(``n_in = n_{l-1}``, ``n_out = n_l``) or by ``std``, then adds ``mean`` (the mu_w of
the E[delta] question).  Biases are N(bias_mean, bias_std^2) (zeros by default), except for the two
course initialisers, which fill the whole bias-node matrix theta = [b | W] of Brawer:

* ``epsilon``: theta ~ U(-eps, eps), eps = sqrt(6) / sqrt(n_in + n_out) unless given
  (Ng's ``randInitializeWeights``);
* ``debug``: theta = sin(1 .. n_out (n_in + 1)) / 10 in column-major order
  (Ng's ``debugInitializeWeights``): deterministic, for gradient checking by hand.

Two more laws:

* ``standard``: W_jk ~ U(-1/sqrt(n_in), 1/sqrt(n_in)), Var = 1 / (3 n_in): the "commonly
  used heuristic" of Glorot & Bengio (2010, eq. 1) that their normalised initialisation
  (``glorot_uniform``) replaces;
* ``orthogonal``: W = gain Q with Q Haar-distributed and orthonormal rows (n_out <= n_in,
  W W^T = gain^2 I) or columns (n_out >= n_in, W^T W = gain^2 I) (Saxe et al. 2014, scaled
  and rectangular).  Every entry has E[W_jk^2] = gain^2 / max(n_in, n_out) (a row, or
  column, of unit length spread over max(n_in, n_out) exchangeable entries).  gain = 1, or
  ``std`` sqrt(max(n_in, n_out)) when a per-entry ``std`` is given, so that ``std`` means
  the same for every initialiser (for a square layer gain^2 = sigma_w^2 = n std^2).

All draws are float64 NumPy arrays; :class:`deltaprop.network.Network` casts and moves
them, so every backend and dtype starts from the same numbers.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import registry_key

__all__ = ["INITIALIZERS", "init_layer", "names", "orthogonal"]


def _normal(scale):
    return lambda rng, n_out, n_in, std: rng.normal(0.0, _pick(std, scale(n_in, n_out)),
                                                   (n_out, n_in))


def _uniform(scale):
    # U(-r, r) has std r / sqrt(3)
    def draw(rng, n_out, n_in, std):
        r = math.sqrt(3) * std if std is not None else scale(n_in, n_out)
        return rng.uniform(-r, r, (n_out, n_in))

    return draw


def _pick(std, default):
    return default if std is None else std


def orthogonal(rng, n_out, n_in, gain=1.0):
    """W = gain Q, Q (n_out, n_in) Haar-distributed with orthonormal rows or columns.

    Q is the QR factor of an (max, min) standard normal matrix with each column's sign
    set by the sign of R's diagonal (Mezzadri 2007: without it Q is not Haar), transposed
    when n_out < n_in.  W W^T = gain^2 I (n_out <= n_in), W^T W = gain^2 I (n_out >= n_in);
    E[W_jk^2] = gain^2 / max(n_in, n_out).
    """
    big, small = max(n_out, n_in), min(n_out, n_in)
    Q, R = np.linalg.qr(rng.standard_normal((big, small)))
    Q = Q * np.where(np.diag(R) < 0, -1.0, 1.0)
    return gain * (Q if n_out >= n_in else Q.T)


def _orthogonal(rng, n_out, n_in, std):
    gain = 1.0 if std is None else std * math.sqrt(max(n_in, n_out))
    return orthogonal(rng, n_out, n_in, gain)


#: name -> draw(rng, n_out, n_in, std) -> zero-mean W of shape (n_out, n_in)
INITIALIZERS = {
    "normal": _normal(lambda i, o: 1.0),
    "uniform": _uniform(lambda i, o: 0.05),
    "glorot_uniform": _uniform(lambda i, o: math.sqrt(6 / (i + o))),
    "glorot_normal": _normal(lambda i, o: math.sqrt(2 / (i + o))),
    "he_uniform": _uniform(lambda i, o: math.sqrt(6 / i)),
    "he_normal": _normal(lambda i, o: math.sqrt(2 / i)),
    "lecun_uniform": _uniform(lambda i, o: math.sqrt(3 / i)),
    "lecun_normal": _normal(lambda i, o: math.sqrt(1 / i)),
    "standard": _uniform(lambda i, o: 1 / math.sqrt(i)),
    "orthogonal": _orthogonal,
    "epsilon": None,  # theta-level, below
    "debug": None,
}
_ALIASES = {"xavier": "glorot_uniform", "glorot": "glorot_uniform", "he": "he_normal",
            "kaiming": "he_normal", "lecun": "lecun_normal", "xavier_uniform": "glorot_uniform",
            "xavier_normal": "glorot_normal", "kaiming_normal": "he_normal",
            "kaiming_uniform": "he_uniform", "sin": "debug"}


def names() -> list[str]:
    """Names of all initialisers."""
    return list(INITIALIZERS)


def canonical(name: str) -> str:
    """Registry key for ``name`` (``-`` or ``_``, aliases such as ``xavier`` and ``kaiming``)."""
    return registry_key(name, INITIALIZERS, "initialiser", _ALIASES)


def debug_theta(n_out: int, n_in: int) -> np.ndarray:
    """theta = reshape(sin(1 .. n_out (n_in+1)), (n_out, n_in+1), column-major) / 10."""
    return np.sin(np.arange(1, n_out * (n_in + 1) + 1, dtype=np.float64)).reshape(
        (n_out, n_in + 1), order="F") / 10


def init_layer(name, rng, n_out, n_in, *, mean=0.0, std=None, bias_mean=0.0, bias_std=0.0,
               epsilon=None):
    """Draw (W, b) for one layer: W (n_out, n_in), b (n_out,), float64.

    Parameters
    ----------
    name : str
        An initialiser of :data:`INITIALIZERS`.
    rng : numpy.random.Generator
    mean, std : float
        Weight mean (added after drawing) and weight std (overrides the fan-based scale).
    bias_mean, bias_std : float
        Biases ~ N(bias_mean, bias_std^2); ignored by ``epsilon`` and ``debug``.
    epsilon : float, optional
        Half-width of the ``epsilon`` initialiser.
    """
    key = canonical(name)
    if key == "debug":
        theta = debug_theta(n_out, n_in)
        return theta[:, 1:].copy(), theta[:, 0].copy()
    if key == "epsilon":
        eps = math.sqrt(6) / math.sqrt(n_in + n_out) if epsilon is None else epsilon
        theta = rng.uniform(-eps, eps, (n_out, n_in + 1))
        return theta[:, 1:] + mean, theta[:, 0].copy()
    if std is not None and std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    W = INITIALIZERS[key](rng, n_out, n_in, std) + mean
    b = np.full(n_out, float(bias_mean))
    if bias_std:
        b = b + rng.normal(0.0, bias_std, n_out)
    return W, b
