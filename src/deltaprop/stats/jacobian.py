"""Jacobian spectra, measured: the input-output Jacobian of K networks and its singular values.

For every network, every input x and every recorded depth l,

    J[l] = da[l]/dx = D[l] W[l] J[l-1],   J[0] = I,   D[l] = diag f_l'(z[l])

(Pennington, Schoenholz & Ganguli 2017, eq. 2), shapes (m, n_l, n_0) per network and
(K, m, n_l, n_0) for a stack: one batched product per layer, in the arrays' own namespace.
Its squared singular values lambda (the n_l eigenvalues of J J^T; n_l - n_0 zeros when
n_l > n_0) come from the namespace's batched ``linalg.svdvals`` and are kept on the host.

Per Jacobian (one network, one input) the spectrum's moments are means over its n_l
eigenvalues, m_k = sum_j lambda_j^k / n_l, and its variance m_2 - m_1^2; :meth:`summary`
averages them over the m inputs and the K networks, with standard errors from the spread
between networks (K >= 2; for one network, from the spread between its inputs, which
share the weights: a within-network se only).  Beside them the free-probability predictions
of :mod:`deltaprop.theory.jacobian` (infinite width; every finite-width moment is off by
O(l / n_l)).  ``deltaprop jacobian`` runs the whole study from the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _backend, _checks
from ..backprop import forward

__all__ = ["layer_jacobian", "jacobians", "squared_singular_values", "JacobianRecord",
           "record_jacobian", "JacobianStudy", "JacobianResult", "run_jacobian", "table",
           "rows", "density_figure"]


def layer_jacobian(W, df, J_prev=None):
    """J[l] = D[l] W[l] J[l-1],  D[l] = diag f_l'(z[l])   (Pennington et al. 2017, eq. 2).

    Parameters
    ----------
    W : (n_l, n_{l-1}) or (K, n_l, n_{l-1})
    df : f_l'(z[l]), (m, n_l) or (K, m, n_l): one D[l] per input.
    J_prev : J[l-1], (m, n_{l-1}, n_0) or (K, m, n_{l-1}, n_0); None for J[0] = I.

    Returns
    -------
    J[l] : (m, n_l, n_0) or (K, m, n_l, n_0)
    """
    Wm = W[..., None, :, :]  # one W[l] for the m inputs
    return df[..., :, None] * (Wm if J_prev is None else Wm @ J_prev)


def jacobians(net, x, depths=None):
    """Yield (l, J[l]) for l in ``depths`` (default 1..L), ascending: the forward pass of
    ``x`` ((m, n_0), or (K, m, n_0) for a stack) through ``net``, then :func:`layer_jacobian`
    layer by layer (every layer is computed; only the asked depths are yielded)."""
    depths = _depths(depths, net.L)
    xp = net.xp
    trace = forward(net, x)
    J = None
    for l in range(1, max(depths) + 1):
        f = net.activations[l]
        if not f.elementwise:
            raise ValueError(f"layer {l}'s activation {f.name} is not elementwise: D[l] is not "
                             "diagonal")
        J = layer_jacobian(net.W[l], f.df(trace.z[l], trace.a[l], xp), J)
        if l in depths:
            yield l, J


def squared_singular_values(J):
    """lambda = s^2, s the singular values of J (..., n_l, n_0): the n_l eigenvalues of
    J J^T, descending, with n_l - n_0 zeros appended when n_l > n_0.  Batched
    ``xp.linalg.svdvals`` in J's namespace; returned as a host NumPy array (..., n_l)."""
    xp = _backend.namespace(J)
    lam = _backend.to_numpy(xp.linalg.svdvals(J)) ** 2
    pad = J.shape[-2] - lam.shape[-1]
    return np.concatenate([lam, np.zeros((*lam.shape[:-1], pad))], axis=-1) if pad > 0 else lam


def _depths(depths, L):
    depths = tuple(range(1, L + 1)) if depths is None else tuple(sorted({int(d) for d in depths}))
    if not depths or depths[0] < 1 or depths[-1] > L:
        raise ValueError(f"depths must lie in 1..L = 1..{L}, got {list(depths)}")
    return depths


@dataclass(frozen=True)
class JacobianRecord:
    """``lam[l]``: (K, m, n_l) squared singular values at depth l (K = 1 for one network);
    ``K`` is None for a single network."""

    lam: dict
    K: int | None

    @property
    def depths(self) -> tuple:
        return tuple(self.lam)

    def moments(self, l, k) -> np.ndarray:
        """(K, m): m_k = sum_j lambda_j^k / n_l of each Jacobian at depth l."""
        return np.mean(self.lam[l] ** k, axis=-1)

    def summary(self, l, k_max=3) -> dict:
        """Depth l: ``m1``.. ``m{k_max}`` and ``variance`` (m_2 - m_1^2 of each Jacobian's
        spectrum), averaged over inputs and networks, each with its ``_se`` (module
        docstring); ``lambda_max``, the mean of the largest lambda; ``se_within_network_only``
        for K = 1."""
        per = {f"m{k}": self.moments(l, k) for k in range(1, k_max + 1)}
        per["variance"] = per["m2"] - per["m1"] ** 2
        per["lambda_max"] = self.lam[l].max(axis=-1)
        out = {}
        for key, v in per.items():  # (K, m)
            if v.shape[0] >= 2:
                v = v.mean(axis=1)  # one number per network
            v = v.reshape(-1)
            out[key] = float(v.mean())
            out[key + "_se"] = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size >= 2 \
                else math.nan
        out["se_within_network_only"] = self.lam[l].shape[0] < 2
        return out


def record_jacobian(net, x, depths=None) -> JacobianRecord:
    """Squared singular values of J[l] (:func:`jacobians`, :func:`squared_singular_values`)
    for every network of ``net`` and every input of ``x`` ((m, n_0) or (K, m, n_0); host
    arrays are moved to the network's backend) at the ``depths`` (default 1..L)."""
    xp = net.xp
    if not _backend.is_numpy(xp):
        x = _backend.asarray(x, xp, like=net.W[1])
    lam = {}
    for l, J in jacobians(net, x, depths):
        v = squared_singular_values(J)
        lam[l] = v if net.K is not None else v[None]
    return JacobianRecord(lam, net.K)


# --- the study: draw, record, predict ------------------------------------------------------


@dataclass(frozen=True)
class JacobianStudy:
    """K networks of ``sizes`` (default ``depth`` + 1 layers of ``width`` units), every layer
    with ``activation`` (the output's too, as in Pennington et al.), weights of mean-field
    variance sigma_w^2 / n_{l-1} drawn with ``init``'s law (``normal`` or ``orthogonal``, or
    any named initialiser), biases N(0, sigma_b^2); m Gaussian inputs N(0, ``input_var``)
    per network.

    ``q_star`` puts the network on the edge of chaos with that fixed point
    (:func:`deltaprop.theory.jacobian.critical_point`); otherwise give ``sigma_w2`` (and
    ``sigma_b2``, default 0).  ``input_var`` defaults to (q* - sigma_b^2) / sigma_w^2, the
    inputs at the fixed point (q^1 = q*), q* from :func:`deltaprop.theory.mean_field.
    fixed_point`.  ``depths``: the depths recorded (default every layer).  A negative or
    non-finite ``q_star``, ``sigma_w2``, ``sigma_b2`` or ``input_var`` raises a ValueError
    naming it.
    """

    width: int = 128
    depth: int = 16
    sizes: tuple | None = None
    activation: str = "tanh"
    init: str = "normal"
    q_star: float | None = None
    sigma_w2: float | None = None
    sigma_b2: float | None = None
    input_var: float | None = None
    K: int = 32
    m: int = 4
    depths: tuple | None = None
    k_max: int = 3
    seed: int = 0
    dtype: str = "float64"
    backend: str | None = None
    device: str | None = None

    def __post_init__(self):
        for name in ("q_star", "sigma_w2", "sigma_b2", "input_var"):
            _checks.check_nonnegative(name, getattr(self, name))


@dataclass(frozen=True)
class JacobianResult:
    """The record, the predictions (None where none apply, ``note`` says why) and the
    setting: ``sigma_w2``, ``sigma_b2``, ``q_star`` (the fixed point), ``chi_1`` at q*,
    ``input_var``, ``weights`` (the free-probability ensemble), ``sizes``, ``activation``."""

    record: JacobianRecord
    theory: object
    setting: dict
    note: str = ""


def _parameters(s: JacobianStudy):
    """(sigma_w^2, sigma_b^2, q*, chi_1 at q*, input variance), checked."""
    from ..theory.jacobian import critical_point
    from ..theory.mean_field import chi_at_fixed_point, fixed_point

    if s.q_star is not None:
        if s.sigma_w2 is not None or s.sigma_b2 is not None:
            raise ValueError("give q_star (a critical point) or sigma_w2 and sigma_b2, not both")
        w2, b2 = critical_point(s.activation, s.q_star)
    elif s.sigma_w2 is None:
        raise ValueError("give q_star (the critical point with that fixed point) or sigma_w2")
    else:
        w2, b2 = float(s.sigma_w2), float(s.sigma_b2 or 0.0)
    if not (w2 > 0 and b2 >= 0 and math.isfinite(w2 + b2)):
        raise ValueError(f"sigma_w^2 must be > 0 and sigma_b^2 >= 0, finite; got {w2}, {b2}")
    q = fixed_point(w2, b2, s.activation)
    chi = chi_at_fixed_point(w2, b2, s.activation)
    v = s.input_var
    if v is None:
        if not math.isfinite(q):
            raise ValueError(f"the fixed point is q* = {q}: give input_var")
        v = (q - b2) / w2
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"the input variance must be finite and >= 0, got {v}")
    return w2, b2, q, chi, v


def run_jacobian(s: JacobianStudy) -> JacobianResult:
    """Draw the K networks and their inputs, record the spectra, predict them
    (:func:`deltaprop.theory.jacobian.jacobian_theory` with q_in = the input variance)."""
    from ..theory.jacobian import jacobian_theory, weight_law
    from .ensemble import draw, gaussian_inputs, prior

    for name in ("K", "m", "width", "depth", "k_max"):
        v = getattr(s, name)
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v}")
    if s.k_max < 2:
        raise ValueError("k_max must be >= 2 (the variance needs m_2)")
    sizes = tuple(s.sizes) if s.sizes is not None else (s.width,) * (s.depth + 1)
    L = len(sizes) - 1
    w2, b2, q, chi, v = _parameters(s)
    p = prior(sizes, init=s.init, sigma_w2=w2, sigma_b2=b2)
    net = draw(p, [s.activation] * L, K=s.K, seed=s.seed, dtype=s.dtype, backend=s.backend,
               device=s.device)
    x = gaussian_inputs(s.m, sizes[0], var=v, seed=s.seed + 1, K=s.K)
    rec = record_jacobian(net, x, s.depths)
    weights = weight_law(p.init)
    setting = {"sizes": list(sizes), "activation": s.activation, "init": p.init,
               "weights": weights, "sigma_w2": w2, "sigma_b2": b2, "q_star": q, "chi_1": chi,
               "input_var": v, "K": s.K, "m": s.m, "seed": s.seed}
    if weights is None:
        return JacobianResult(rec, None, setting, f"no prediction for init {p.init}")
    square = len(set(sizes)) == 1
    th = jacobian_theory([s.activation] * L, [w2] * L, [b2] * L, v, weights, k_max=s.k_max,
                         square=square)
    note = "" if square else "unequal widths: only m_1 is predicted (the free moments " \
                             "assume square layers)"
    return JacobianResult(rec, th, setting, note)


# --- reports -------------------------------------------------------------------------------


def _z(pred, mean, se):
    return (pred - mean) / se if se > 0 and math.isfinite(se) else math.nan


def rows(result: JacobianResult) -> list[dict]:
    """One dict per recorded depth: ``depth``, ``q`` (q^l predicted), the measured ``m1``,
    ``m2``, ``m3``..., ``variance``, ``lambda_max`` with their ``_se``; the predictions
    ``m1_predicted``, ``m2_predicted``, ..., ``variance_predicted`` and ``chi_1_power``
    (chi_1^l at q*, mean field).  Non-finite numbers are the strings "inf", "-inf", "nan"."""
    th, out = result.theory, []
    k_max = 0 if th is None or th.m is None else th.m.shape[1]
    for l in result.record.depths:
        r = {"depth": l, **result.record.summary(l, max(k_max, 2))}
        r["chi_1_power"] = result.setting["chi_1"] ** l
        if th is not None:
            r["q"] = th.q[l - 1]
            r["m1_predicted"] = float(th.m1[l - 1])
            if th.m is not None:
                r.update({f"m{k}_predicted": float(th.m[l - 1, k - 1])
                          for k in range(1, k_max + 1)})
                r["variance_predicted"] = float(th.variance[l - 1])
        out.append({k: v if isinstance(v, bool | int) or math.isfinite(v) else str(float(v))
                    for k, v in r.items()})
    return out


def table(result: JacobianResult) -> str:
    """Per depth: m_1 = E[lambda] measured (se), free prediction, z, chi_1^l; the variance of
    lambda measured (se), predicted, z; z = (prediction - measurement) / se."""
    s, rec = result.setting, result.record
    K = rec.K or 1
    head = (f"{'depth':>5} {'m1 measured':>12} {'se':>8} {'m1 free':>9} {'z':>6} "
            f"{'chi_1^l':>9} {'var measured':>13} {'se':>8} {'var free':>9} {'z':>6}")
    lines = [f"Jacobian spectra: {s['activation']}, {s['init']} weights, sizes "
             f"{_sizes(s['sizes'])}, sigma_w^2 = {s['sigma_w2']:.6g}, sigma_b^2 = "
             f"{s['sigma_b2']:.4g}, q* = {s['q_star']:.4g}, chi_1 = {s['chi_1']:.6g}, inputs "
             f"N(0, {s['input_var']:.4g}); {s['m']} inputs x {K} network{'s' if K > 1 else ''}",
             "lambda = squared singular values of J = D[l] W[l] ... D[1] W[1]; m1 = E[lambda], "
             "var = E[lambda^2] - m1^2 (per Jacobian)", head, "-" * len(head)]
    th = result.theory
    for l in rec.depths:
        r = rec.summary(l, 2)
        line = f"{l:>5} {r['m1']:>12.5g} {r['m1_se']:>8.2g} "
        if th is None:
            line += f"{'-':>9} {'':>6} "
        else:
            p = float(th.m1[l - 1])
            line += f"{p:>9.5g} {_z(p, r['m1'], r['m1_se']):>6.1f} "
        line += f"{s['chi_1'] ** l:>9.5g} {r['variance']:>13.5g} {r['variance_se']:>8.2g} "
        if th is None or th.variance is None:
            line += f"{'-':>9}"
        else:
            p = float(th.variance[l - 1])
            line += f"{p:>9.5g} {_z(p, r['variance'], r['variance_se']):>6.1f}"
        lines.append(line)
    if th is None or result.note:
        lines.append(f"note: {result.note}")
    lines.append("free = the free-probability limit (Pennington, Schoenholz & Ganguli 2017), "
                 "infinite width; finite widths shift each moment by O(l / n)")
    if K < 2:
        lines.append("K = 1: the se is within one network (its inputs share the weights)")
    return "\n".join(lines)


def _sizes(sizes):
    return f"{sizes[0]} x {len(sizes) - 1} layers" if len(set(sizes)) == 1 else \
        "-".join(map(str, sizes))


def density_figure(result: JacobianResult, depths=None, title=None):
    """The density of log10 lambda at up to four depths (default: spread over the record),
    the free m_1 as a line, and the linear limit (q* -> 0): the Fuss-Catalan density for
    gaussian weights at sigma_w^2 = 1, lambda = 1 for orthogonal weights.  A matplotlib
    Figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..theory.jacobian import fuss_catalan_density

    rec, th = result.record, result.theory
    if depths is None:
        d = rec.depths
        depths = sorted({d[round(i * (len(d) - 1) / 3)] for i in range(4)}) if len(d) > 4 else d
    fig, axes = plt.subplots(1, len(depths), figsize=(3.2 * len(depths), 3.0), squeeze=False)
    for ax, l in zip(axes[0], depths, strict=True):
        lam = rec.lam[l].reshape(-1)
        t = np.log10(lam[lam > 0])
        ax.hist(t, bins=60, density=True, color="C0", alpha=0.6, label="measured")
        if th is not None:
            ax.axvline(math.log10(float(th.m1[l - 1])), color="k", lw=1, ls=":",
                       label="free m1")
        if result.setting["weights"] == "gaussian":
            x, rho = fuss_catalan_density(l)
            ax.plot(np.log10(x), rho * x * math.log(10), "C3", lw=1.2,
                    label="Fuss-Catalan (q*->0)")
        elif result.setting["weights"] == "orthogonal":
            ax.axvline(0.0, color="C3", lw=1.2, label="q*->0: lambda = 1")
        ax.set_title(f"depth {l}", fontsize=9)
        ax.set_xlabel("log10 lambda")
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=7)
    s = result.setting
    fig.suptitle(title or f"{s['activation']}, {s['init']} weights, q* = {s['q_star']:.3g}: "
                 "squared singular values of J", fontsize=10)
    fig.tight_layout()
    return fig
