"""Raw SVI smiles in total implied variance, and their arbitrage-aware fit.

Raw SVI (Gatheral 2004), in log-moneyness k = ln(K/F) and total implied variance w = σ_imp² · T:

    w(k) = a + b · { ρ (k − m) + √((k − m)² + σ²) }

Parameter bounds used everywhere here (they keep w ≥ 0 and the wings admissible):
b ≥ 0, |ρ| < 1, σ > 0, a + b σ √(1 − ρ²) ≥ 0 (the minimum of w) and Roger Lee's moment bound on the
wing slopes b (1 + |ρ|) ≤ 2, used with a margin as ≤ LEE_SLOPE_MAX = 1.9.

The fit (`fit_svi`) is the quasi-explicit reduction of Zeliade Systems (De Marco & Martini 2009):
with y = (k − m)/σ, w = a + d·y + c·√(y² + 1) with c = bσ, d = ρbσ is linear in (a, c, d), so for a
fixed (m, σ) the best (a, c, d) is a weighted linear least-squares problem under the linear
constraints 0 ≤ |d| ≤ c, c + |d| ≤ 1.9σ — a quadrilateral in (c, d) — solved exactly here by
enumerating the interior, edge and vertex candidates of its KKT conditions, vectorised over many
(m, σ) at once. The outer 2-D problem in (m, σ) is searched on a log/linear grid and then refined by
successive zoomed grids around the best few points (a multi-start search without Python loops per
candidate). Candidates are ranked by relative weighted squared error plus a heavy linear penalty on
butterfly arbitrage (Durrleman's g(k) < G_MARGIN on 121 points of the check range and 41 points
around each candidate's vertex m ± 20σ) and on negative minimum variance. The winner is verified on
the dense check grid (`butterfly_report`: 1201 points, vertex refinement, every local minimum of g
refined between its neighbours); if g < 0 anywhere, a 5-parameter penalised least-squares polish
(`_polish`) removes it.

Everything is pure numpy/scipy: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

PARAM_NAMES = ("a", "b", "rho", "m", "sigma")
LEE_SLOPE_MAX = 1.9          # b (1 + |ρ|) ≤ 1.9: Lee's moment bound (≤ 2) with a margin — at exactly 2,
                             # g(k) → 0 in the wings and can approach it from below
ARB_PENALTY = 1.0e3          # grid search: weight of max(0, G_MARGIN − g) and max(0, −w_min)/w against the fit error
G_TOL = 1.0e-9               # g(k) ≥ −G_TOL counts as arbitrage-free (floating-point noise)
G_MARGIN = 1.0e-4            # the polish aims at g ≥ G_MARGIN so that g ≥ 0 holds between its grid points
DENSE_K = np.linspace(-3.0, 3.0, 1201)  # the dense grid where butterfly arbitrage is checked by default


# --------------------------------------------------------------------------------------------------
# Raw SVI and its derivatives

def svi_total_variance(k, a, b, rho, m, sigma):
    """Raw-SVI total variance w(k) (dimensionless: σ_imp² · T); broadcasts over all arguments."""
    x = np.asarray(k, dtype=float) - m
    return a + b * (rho * x + np.sqrt(x * x + sigma * sigma))


def svi_derivatives(k, a, b, rho, m, sigma):
    """(w, ∂w/∂k, ∂²w/∂k²) of raw SVI at log-moneyness k (total variance and its k-derivatives, dimensionless);
    broadcasts."""
    x = np.asarray(k, dtype=float) - m
    root = np.sqrt(x * x + sigma * sigma)
    w = a + b * (rho * x + root)
    w1 = b * (rho + x / root)
    w2 = b * sigma * sigma / (root * root * root)
    return w, w1, w2


def durrleman_g(k, w, w1, w2):
    """Durrleman's butterfly function g(k) = (1 − k w'/2w)² − (w'²/4)(1/w + 1/4) + w''/2 (dimensionless;
    k log-moneyness, w total variance and its k-derivatives).

    The call price is convex in strike (no butterfly arbitrage) iff g ≥ 0 where w > 0; g is -inf
    where w ≤ 0 (no valid smile there).
    """
    k = np.asarray(k, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (1.0 - k * w1 / (2.0 * w)) ** 2 - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2
    return np.where(w > 0, g, -np.inf)


def svi_g(k, params):
    """Durrleman's g(k) (dimensionless) at log-moneyness k of an SVI slice given as a mapping or sequence
    (a, b, rho, m, sigma)."""
    a, b, rho, m, sigma = _as_tuple(params)
    return durrleman_g(k, *svi_derivatives(k, a, b, rho, m, sigma))


def min_total_variance(a, b, rho, sigma):
    """The minimum over k of raw-SVI total variance w (dimensionless): a + b σ √(1 − ρ²)."""
    return a + b * sigma * np.sqrt(np.clip(1.0 - rho * rho, 0.0, None))


def _as_tuple(params):
    if isinstance(params, dict):
        return tuple(float(params[n]) for n in PARAM_NAMES)
    return tuple(float(v) for v in params)


def params_dict(params) -> dict:
    """{a, b, rho, m, sigma} as plain floats (raw SVI in total variance over log-moneyness: a dimensionless,
    m and sigma in log-moneyness)."""
    return dict(zip(PARAM_NAMES, _as_tuple(params)))


def butterfly_report(params, k_grid=DENSE_K) -> dict:
    """Where an SVI slice violates g(k) ≥ 0 on `k_grid` (log-moneyness) refined near its vertex (`check_grid`):
    {ok, g_min, k_at_g_min, failing_k_ranges} (g dimensionless, k log-moneyness).

    `failing_k_ranges` lists [k_start, k_end] intervals of consecutive grid points with g < −G_TOL.
    """
    k_grid = check_grid(k_grid, params)
    g = svi_g(k_grid, params)
    # refine every local minimum of g below 1e-3 between its grid neighbours (a dip can be narrower
    # than the grid spacing): 64 extra points per minimum, vectorised
    inner = np.flatnonzero((g[1:-1] <= g[:-2]) & (g[1:-1] <= g[2:]) & (g[1:-1] < 1e-3)) + 1
    if inner.size:
        u = np.linspace(0.0, 1.0, 66)[1:-1]
        left = k_grid[inner - 1, None] + (k_grid[inner, None] - k_grid[inner - 1, None]) * u
        right = k_grid[inner, None] + (k_grid[inner + 1, None] - k_grid[inner, None]) * u
        extra = np.concatenate([left.ravel(), right.ravel()])
        k_grid = np.union1d(k_grid, extra)
        g = svi_g(k_grid, params)
    bad = g < -G_TOL
    i_min = int(np.argmin(g))
    return {"ok": not bool(bad.any()), "g_min": float(g[i_min]), "k_at_g_min": float(k_grid[i_min]),
            "failing_k_ranges": _runs(k_grid, bad)}


def check_grid(k_grid, params) -> np.ndarray:
    """`k_grid` (log-moneyness) plus 401 points within m ± 20σ of the slice's vertex: a small σ bends the smile over a
    k range narrower than any fixed grid's spacing."""
    a, b, rho, m, sigma = _as_tuple(params)
    local = m + sigma * np.sinh(np.linspace(-3.7, 3.7, 401)) / np.sinh(3.7) * 20.0
    return np.union1d(np.asarray(k_grid, dtype=float), local)


def _runs(x: np.ndarray, mask: np.ndarray) -> list[list[float]]:
    """Intervals [x_start, x_end] of consecutive True values of `mask` (vectorised)."""
    if not mask.any():
        return []
    m = mask.astype(np.int8)
    edges = np.diff(np.concatenate(([0], m, [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [[float(x[s]), float(x[e])] for s, e in zip(starts, ends)]


# --------------------------------------------------------------------------------------------------
# Quasi-explicit inner solve, vectorised over candidate (m, σ)

def _inner_solve(k, w, W, m, s):
    """Best (a, c, d) for each candidate (m[j], s[j]) under 0 ≤ |d| ≤ c, c + |d| ≤ LEE·s.

    k, w, W: (n,) log-moneyness, total variance, weights. m, s: (M,). Returns a, b, rho, sse (M,):
    sse = Σ W (w_fit − w)² at the constrained optimum. The 3×3 normal equations are solved in closed
    form (adjugate), all candidates at once; the constrained optimum is the best feasible one of the
    9 KKT candidates (interior, 4 edges, 4 vertices of the (c, d) quadrilateral).
    """
    y = (k[None, :] - m[:, None]) / s[:, None]          # (M, n)
    z = np.sqrt(y * y + 1.0)
    Wy = W * y
    Wz = W * z
    Ww = W * w
    A00 = W.sum()
    A01, A02 = Wy.sum(1), Wz.sum(1)
    A11, A12, A22 = (Wy * y).sum(1), (Wy * z).sum(1), (Wz * z).sum(1)
    B0, B1, B2 = Ww.sum(), Ww @ y.T, Ww @ z.T
    const = float(Ww @ w)
    ridge = 1e-12 * (A00 + A11 + A22)
    A00r, A11r, A22r = A00 + ridge, A11 + ridge, A22 + ridge
    # adjugate of the symmetric 3×3 (θ = (a, d, c), design columns 1, y, z)
    C00 = A11r * A22r - A12 * A12
    C01 = A02 * A12 - A01 * A22r
    C02 = A01 * A12 - A11r * A02
    C11 = A00r * A22r - A02 * A02
    C12 = A01 * A02 - A00r * A12
    C22 = A00r * A11r - A01 * A01
    det = A00r * C00 + A01 * C01 + A02 * C02
    det = np.where(np.abs(det) > 1e-300, det, 1e-300)
    I00, I01, I02, I11, I12, I22 = C00 / det, C01 / det, C02 / det, C11 / det, C12 / det, C22 / det
    au = I00 * B0 + I01 * B1 + I02 * B2
    du = I01 * B0 + I11 * B1 + I12 * B2
    cu = I02 * B0 + I12 * B1 + I22 * B2
    lee = LEE_SLOPE_MAX * s
    zero = np.zeros_like(s)
    cand_a, cand_d, cand_c = [au], [du], [cu]
    # edges e·(d, c) = h: d − c = 0, d + c = 0, d + c = lee, −d + c = lee
    for e1, e2, h in ((1.0, -1.0, zero), (1.0, 1.0, zero), (1.0, 1.0, lee), (-1.0, 1.0, lee)):
        ea = I01 * e1 + I02 * e2
        ed = I11 * e1 + I12 * e2
        ec = I12 * e1 + I22 * e2
        lam = (e1 * du + e2 * cu - h) / (e1 * ed + e2 * ec)
        cand_a.append(au - ea * lam)
        cand_d.append(du - ed * lam)
        cand_c.append(cu - ec * lam)
    # vertices (c, d) with the best a for each
    for c, d in ((zero, zero), (lee / 2, lee / 2), (lee, zero), (lee / 2, -lee / 2)):
        cand_a.append((B0 - A01 * d - A02 * c) / A00r)
        cand_d.append(d)
        cand_c.append(c)
    a, d, c = np.stack(cand_a), np.stack(cand_d), np.stack(cand_c)        # (9, M)
    tol = 1e-12 + 1e-9 * lee
    feasible = (c >= -tol) & (np.abs(d) <= c + tol) & (c + np.abs(d) <= lee + tol)
    f = (A00 * a * a + A11 * d * d + A22 * c * c + 2 * (A01 * a * d + A02 * a * c + A12 * d * c)
         - 2 * (B0 * a + B1 * d + B2 * c) + const)
    f = np.where(feasible, f, np.inf)
    best = np.argmin(f, axis=0)
    idx = np.arange(s.size)
    a, d, c, sse = a[best, idx], d[best, idx], np.clip(c[best, idx], 0.0, None), np.maximum(f[best, idx], 0.0)
    b = c / s
    safe_c = np.where(c > 0, c, 1.0)
    rho = np.where(c > 0, np.clip(d / safe_c, -0.999999, 0.999999), 0.0)
    return a, b, rho, sse


def _score(k, w, W, m, s, k_arb):
    """Inner solve plus the arbitrage penalty for candidates (m, s); returns (a, b, rho, objective)."""
    a, b, rho, sse = _inner_solve(k, w, W, m, s)
    # g on the shared coarse grid plus, per candidate, points around its own vertex m ± 20σ
    kk = np.concatenate([np.broadcast_to(k_arb, (m.size, k_arb.size)), m[:, None] + s[:, None] * _LOCAL_U], axis=1)
    wk, w1, w2 = svi_derivatives(kk, a[:, None], b[:, None], rho[:, None], m[:, None], s[:, None])
    g = durrleman_g(kk, wk, w1, w2)
    neg_g = np.minimum(np.where(np.isfinite(g), g, -1e3) - G_MARGIN, 0.0)
    wmin = min_total_variance(a, b, rho, s)
    scale = np.maximum(np.abs(w).max(), 1e-12)           # penalise negative variance relative to the data
    penalty = -neg_g.min(1) - np.minimum(wmin, 0.0) / scale     # linear: any violation outweighs the fit
    # relative weighted squared error (scale-free) plus the arbitrage penalty
    return a, b, rho, sse / max(float((W * w * w).sum()), 1e-300) + ARB_PENALTY * penalty


_LOCAL_U = np.sinh(np.linspace(-3.7, 3.7, 41)) / np.sinh(3.7) * 20.0


@dataclass
class SVIFit:
    """The result of `fit_svi`: params (a, b, rho, m, sigma), weighted SSE, butterfly check and the method."""

    params: dict
    sse: float
    butterfly: dict
    method: str
    info: dict = field(default_factory=dict)


def fit_svi(k, w, weights=None, *, k_check=None, n_m: int = 17, n_s: int = 13, n_zoom: int = 6,
            n_starts: int = 2, polish: bool = False) -> SVIFit:
    """Fit raw SVI to total variances `w` at log-moneyness `k` (arrays, same length ≥ 5).

    `weights` (≥ 0, same length) multiply the squared total-variance residuals; default equal.
    `polish=True` always runs the final 5-parameter least-squares polish (otherwise only when the
    grid optimum has arbitrage). `k_check` is the grid on which Durrleman's g ≥ 0 is enforced and
    verified (default: [−3, 3] widened to cover the data by 1.0 on each side, 1201 points). Returns an
    `SVIFit`; its `butterfly["ok"]` is False only if no arbitrage-free slice was found.
    """
    k = np.asarray(k, dtype=float)
    w = np.asarray(w, dtype=float)
    W = np.ones_like(k) if weights is None else np.asarray(weights, dtype=float)
    if k.shape != w.shape or k.shape != W.shape or k.ndim != 1:
        raise ValueError("k, w and weights must be 1-D arrays of the same length")
    if k.size < 5:
        raise ValueError(f"SVI needs at least 5 points, got {k.size}")
    W = W / W.sum()
    k_lo, k_hi = float(k.min()), float(k.max())
    span = max(k_hi - k_lo, 1e-3)
    if k_check is None:
        k_check = np.linspace(min(-3.0, k_lo - 1.0), max(3.0, k_hi + 1.0), 1201)
    k_check = np.asarray(k_check, dtype=float)
    k_arb = np.linspace(k_check[0], k_check[-1], 121)     # coarser grid while searching

    # Global grid over (m, log σ), then zoom around the best few distinct points
    m_axis = np.linspace(k_lo - 0.5 * span, k_hi + 0.5 * span, n_m)
    ls_axis = np.linspace(np.log(max(1e-4, 0.005 * span)), np.log(2.0 * span + 0.05), n_s)
    mm, ll = np.meshgrid(m_axis, ls_axis, indexing="ij")
    m_c, ls_c = mm.ravel(), ll.ravel()
    dm, dls = m_axis[1] - m_axis[0], ls_axis[1] - ls_axis[0]
    a, b, rho, obj = _score(k, w, W, m_c, np.exp(ls_c), k_arb)
    n_eval = m_c.size
    centres = _best_distinct(m_c, ls_c, obj, n_starts, dm, dls)
    zoom = np.linspace(-1.0, 1.0, 7)
    for _ in range(n_zoom):
        zm, zl = np.meshgrid(zoom, zoom, indexing="ij")
        m_c = (centres[:, 0, None] + zm.ravel()[None, :] * dm).ravel()
        ls_c = (centres[:, 1, None] + zl.ravel()[None, :] * dls).ravel()
        a2, b2, rho2, obj2 = _score(k, w, W, m_c, np.exp(ls_c), k_arb)
        n_eval += m_c.size
        centres = _best_distinct(m_c, ls_c, obj2, n_starts, dm / 3, dls / 3)
        dm, dls = dm / 3.0, dls / 3.0
        a, b, rho, obj = a2, b2, rho2, obj2
    j = int(np.argmin(obj))
    params = (float(a[j]), float(b[j]), float(rho[j]), float(m_c[j]), float(np.exp(ls_c[j])))
    method = "quasi-explicit"
    report = butterfly_report(params, k_check)
    # If the grid optimum is not arbitrage-free (or has negative variance), polish all five
    # parameters jointly by penalised least squares; keep the polish if it is admissible and better.
    if polish or not report["ok"] or min_total_variance(params[0], params[1], params[2], params[4]) < 0:
        polished = _polish(k, w, W, params, k_check)
        rep2 = butterfly_report(polished, k_check)
        admissible = (min_total_variance(polished[0], polished[1], polished[2], polished[4]) >= 0
                      and polished[1] * (1 + abs(polished[2])) <= LEE_SLOPE_MAX + 1e-9)
        sse_grid = float((W * (svi_total_variance(k, *params) - w) ** 2).sum())
        sse_pol = float((W * (svi_total_variance(k, *polished) - w) ** 2).sum())
        if admissible and ((rep2["ok"] and (sse_pol <= sse_grid or not report["ok"]))
                           or (not report["ok"] and rep2["g_min"] > report["g_min"])):
            params, report, method = polished, rep2, "quasi-explicit+polish"
    fit_w = svi_total_variance(k, *params)
    sse = float((W * (fit_w - w) ** 2).sum())
    return SVIFit(params=params_dict(params), sse=sse, butterfly=report, method=method,
                  info={"candidates_evaluated": int(n_eval)})


def _best_distinct(m_c, ls_c, obj, n, dm, dls):
    """Centres (n, 2) of the n best candidates at least one grid step apart (best first)."""
    order = np.argsort(obj)
    chosen: list[tuple[float, float]] = []
    for i in order[: 20 * n]:
        p = (m_c[i], ls_c[i])
        if all(abs(p[0] - q[0]) > dm * 0.99 or abs(p[1] - q[1]) > dls * 0.99 for q in chosen):
            chosen.append(p)
            if len(chosen) == n:
                break
    return np.asarray(chosen)


def _polish(k, w, W, params, k_check):
    """5-parameter least squares from `params` with exterior penalties pushing g(k) ≥ G_MARGIN,
    w_min ≥ 0 and b(1 + |ρ|) ≤ LEE_SLOPE_MAX.

    The g penalty sits on a 201-point version of `k_check` plus every point of the dense `k_check`
    where g < G_MARGIN (narrow dips fall between coarse points); while the dense grid still shows
    g < 0 the dips are added again and the penalty weight raised tenfold (up to four rounds). The
    finite-difference Jacobian is computed for all five bumps in one vectorised call.
    """
    sw = np.sqrt(W)
    scale = max(float(np.mean(w)), 1e-12)
    kg = np.linspace(k_check[0], k_check[-1], 201)
    lo = np.array([-np.inf, 0.0, -0.999, -np.inf, 1e-5])
    hi = np.array([np.inf, LEE_SLOPE_MAX, 0.999, np.inf, 10.0])
    x = np.clip(np.asarray(params, dtype=float), lo + 1e-12, hi - 1e-12)

    def batch(P, kg, lam):                              # P (q, 5) → residuals (q, r)
        a, b, rho, m, s = (P[:, i, None] for i in range(5))
        wk, w1, w2 = svi_derivatives(kg[None, :], a, b, rho, m, s)
        g = durrleman_g(kg[None, :], wk, w1, w2)
        g = np.where(np.isfinite(g), g, -1e3)
        fit = (svi_total_variance(k[None, :], a, b, rho, m, s) - w) / scale
        wmin = min_total_variance(a, b, rho, s) / scale
        lee = np.maximum(b * (1 + np.abs(rho)) - LEE_SLOPE_MAX, 0.0)
        return np.concatenate([sw * fit, lam * np.minimum(g - G_MARGIN, 0.0),
                               lam * np.minimum(wmin, 0.0), lam * lee], axis=1)

    def jac(x, kg, lam):
        h = 1e-7 * np.maximum(np.abs(x), 1e-3)
        P = np.vstack([x, x + np.diag(h)])
        R = batch(P, kg, lam)
        return ((R[1:] - R[0]) / h[:, None]).T

    lam = 10.0
    for _ in range(4):
        x = least_squares(lambda p, kg=kg, lam=lam: batch(p[None, :], kg, lam)[0], x,
                          jac=lambda p, kg=kg, lam=lam: jac(p, kg, lam), bounds=(lo, hi), method="trf",
                          x_scale="jac", max_nfev=60, ftol=1e-7).x
        report = butterfly_report(x, k_check)
        if report["ok"]:
            break
        dense = check_grid(k_check, x)
        kg = np.union1d(kg, np.append(dense[svi_g(dense, x) < G_MARGIN], report["k_at_g_min"]))
        lam *= 10.0
    return tuple(float(v) for v in x)
