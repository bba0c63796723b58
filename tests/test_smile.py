"""Smile statistics from marks and from the SVI fit (qortcli.quant.smile) on the bundled sample's recorded BTC
chain (2026-01-11 21:18 UTC), checked against independent computations written here (Deribit's published
deltas, brentq on the fitted smile, hand interpolation in total variance)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from chain_fixtures import recorded_chain
from qortcli.quant import smile
from qortcli.quant import surface as sf
from qortcli.quant import svi

TENORS = (7, 30, 60, 90, 180)


@lru_cache(maxsize=1)
def chain() -> pd.DataFrame:
    return recorded_chain("BTC")


@lru_cache(maxsize=1)
def fit():
    c = chain()
    frame = pd.DataFrame({"expiry": c["expiry"], "t_years": c["t_years"], "strike": c["strike_usd"],
                          "option_type": c["option_type"], "forward": c["forward_usd"], "iv": c["mark_iv"]})
    return sf.fit_surface(frame[frame["t_years"] > 0], days_per_year=365.0)


def test_marks_atm_and_25_delta_from_the_recorded_rows():
    c = chain()
    stats = {s.expiry_code: s for s in smile.marks_expiry_stats(c)}
    assert len(stats) == c["expiry_code"].nunique() and all(s.source == "marks" for s in stats.values())
    checked = 0
    for code, g in c.groupby("expiry_code"):
        s = stats[code]
        f = float(g["forward_usd"].median())
        assert s.forward_usd == pytest.approx(f)
        by_k = g.groupby("strike_usd")["mark_iv"].mean()
        lo, hi = by_k[by_k.index <= f].index.max(), by_k[by_k.index > f].index.min()
        w = math.log(f / lo) / math.log(hi / lo)
        assert s.atm_iv == pytest.approx(by_k[lo] + w * (by_k[hi] - by_k[lo]), abs=1e-12)
        # 25Δ call: mark IV linear in Deribit's published delta between the two calls around 0.25
        calls = g[g["is_call"]].sort_values("delta_deribit")
        d, v = calls["delta_deribit"].to_numpy(), calls["mark_iv"].to_numpy()
        if d.min() <= 0.25 <= d.max():
            i = np.searchsorted(d, 0.25)
            want = v[i - 1] + (0.25 - d[i - 1]) / (d[i] - d[i - 1]) * (v[i] - v[i - 1])
            assert s.call25_iv == pytest.approx(want, abs=1e-12)
            assert s.rr25 == pytest.approx(s.call25_iv - s.put25_iv, abs=1e-15)
            assert s.bf25 == pytest.approx(0.5 * (s.call25_iv + s.put25_iv) - s.atm_iv, abs=1e-15)
            assert s.strike_call25_usd == pytest.approx(f * math.exp(s.k_call25))
            checked += 1
    assert checked >= 8


def test_svi_25_delta_solves_the_forward_delta_on_the_fitted_smile():
    for s, sl in zip(smile.svi_expiry_stats(fit()), [x for x in fit()["slices"] if x["params"]]):
        assert s.source == "svi"
        p = tuple(sl["params"][n] for n in svi.PARAM_NAMES)

        def d1(k):
            w = svi.svi_total_variance(k, *p)
            return -k / math.sqrt(w) + math.sqrt(w) / 2

        kc = brentq(lambda k: norm.cdf(d1(k)) - 0.25, -3, 3)
        kp = brentq(lambda k: norm.cdf(d1(k)) - 1 + 0.25, -3, 3)
        vol = lambda k: math.sqrt(svi.svi_total_variance(k, *p) / sl["t_years"])  # noqa: E731
        assert s.k_call25 == pytest.approx(kc, abs=1e-9) and s.k_put25 == pytest.approx(kp, abs=1e-9)
        assert s.rr25 == pytest.approx(vol(kc) - vol(kp), abs=1e-9)
        assert s.atm_iv == pytest.approx(vol(0.0), rel=1e-12)


def test_the_two_sources_carry_their_names_and_differ_on_the_front_expiry():
    """The issue's example: the bundled sample's front expiry has RR25 0.16 vol pts from the marks and 0.90
    from the SVI fit. Both figures stay, each under its own name."""
    term = smile.summary_stats(chain(), fit(), TENORS, 365.0).term_structure
    front = term[0]
    marks = smile.marks_expiry_stats(chain())[0]
    fitted = smile.svi_expiry_stats(fit())[0]
    assert front.expiry_code == marks.expiry_code == "12JAN26"
    assert front.rr25_marks == marks.rr25 and front.rr25_svi == fitted.rr25
    assert round(100 * front.rr25_marks, 2) == 0.16 and round(100 * front.rr25_svi, 2) == 0.90
    assert abs(front.rr25_svi - front.rr25_marks) > 0.005


def test_constant_maturity_interpolates_fixed_delta_total_variance():
    stats = smile.marks_expiry_stats(chain())
    (cm,) = smile.constant_maturity(stats, [30], 365.0)
    t = 30 / 365
    before = max((s for s in stats if s.t_years <= t), key=lambda s: s.t_years)
    after = min((s for s in stats if s.t_years > t), key=lambda s: s.t_years)
    lam = (t - before.t_years) / (after.t_years - before.t_years)

    def interp(a, b):
        return math.sqrt(((1 - lam) * a * a * before.t_years + lam * b * b * after.t_years) / t)

    atm = interp(before.atm_iv, after.atm_iv)
    call = interp(before.call25_iv, after.call25_iv)
    put = interp(before.put25_iv, after.put25_iv)
    assert cm.atm_iv == pytest.approx(atm, rel=1e-12) and not cm.extrapolated
    assert cm.rr25 == pytest.approx(call - put, abs=1e-12)
    assert cm.bf25 == pytest.approx(0.5 * (call + put) - atm, abs=1e-12)
    # beyond the last expiry: flat vols, flagged
    (far,) = smile.constant_maturity(stats, [3650], 365.0)
    assert far.extrapolated and far.atm_iv == pytest.approx(stats[-1].atm_iv)


def test_summary_stats_has_exactly_the_contract_fields():
    summary = smile.summary_stats(chain(), fit(), TENORS, 365.0)
    fields = summary.fields()
    expected = {f"{m}_{t}d_{src}" for m in ("atm_iv", "rr25", "bf25") for t in TENORS for src in ("marks", "svi")}
    expected |= {"vs_vol_30d_svi", "term_slope_marks", "term_slope_svi", "term_structure"}
    assert set(fields) == expected
    assert summary.atm_iv_30d_marks == fields["atm_iv_30d_marks"] == summary["atm_iv_30d_marks"]
    for src in ("marks", "svi"):
        assert fields[f"term_slope_{src}"] == pytest.approx(fields[f"atm_iv_90d_{src}"] - fields[f"atm_iv_7d_{src}"])
    # the 30-day variance-swap vol: the fitted smiles' model-free vols, total variance linear in T
    fitted = [s for s in fit()["slices"] if s["params"]]
    vs = smile.variance_swap_vols(fitted)
    t = np.array([s["t_years"] for s in fitted])
    assert fields["vs_vol_30d_svi"] == pytest.approx(math.sqrt(np.interp(30 / 365, t, vs * vs * t) / (30 / 365)))
    # without a surface the SVI fields are None, the marks ones are not
    bare = smile.summary_stats(chain(), None, TENORS, 365.0).fields()
    assert not smile.summary_stats(chain(), None, TENORS, 365.0).has_surface
    assert all(bare[k] is None for k in bare if k.endswith("_svi")) and bare["atm_iv_30d_marks"] > 0
    assert {p["expiry_code"] for p in bare["term_structure"]} == set(chain()["expiry_code"])


def test_missing_columns_are_a_clear_error():
    with pytest.raises(ValueError, match="lacks columns"):
        smile.marks_expiry_stats(chain().drop(columns=["mark_iv"]))
