"""The IV-vs-forecast rules of `qortcli.quant.strategies` on constructed regimes: thresholds from `[suggest]`,
the tenor setting, staleness, missing inputs and settings, and the strategies they select."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from qortcli.config import get_settings
from qortcli.quant import strategies as strat


@pytest.fixture(scope="module")
def cfg():
    return get_settings().section("suggest")


def regime(**kw) -> dict:
    base = {"atm_iv_marks": 0.45, "atm_iv_marks_percentile": 0.5, "iv_history_n": 100, "rv_30d": 0.45,
            "rv_age_days": 0.5, "term_front_atm_iv_marks": 0.45, "term_back_atm_iv_marks": 0.45, "rr25_marks": 0.0,
            "forecast_tenor_days": 30, "atm_iv_30d_marks": 0.45, "forecast_rv_30d": 0.45, "forecast_model": "har",
            "forecast_qlike": 0.25, "forecast_implied_qlike": 0.32, "forecast_n_scored": 188,
            "forecast_as_of": datetime(2026, 8, 21, tzinfo=timezone.utc), "forecast_age_days": 0.4,
            "forecast_source": "marks", "forecast_reason": None}
    base.update(kw)
    return base


def rules(reg: dict, cfg: dict) -> dict[str, strat.Rule]:
    return {r.name: r for r in strat.evaluate_rules(reg, cfg)}


def test_packaged_thresholds(cfg):
    assert cfg["iv_vs_forecast_tenor_days"] == 30 and cfg["forecast_max_age_days"] == 3
    assert cfg["iv_vs_forecast_rich"] == 0.05 and cfg["iv_vs_forecast_cheap"] == -0.03
    assert cfg["rank_scale"]["iv_rich_vs_forecast"] == 0.05 and cfg["rank_scale"]["iv_cheap_vs_forecast"] == 0.05


def test_rich_and_cheap_against_the_forecast(cfg):
    rich = rules(regime(atm_iv_30d_marks=0.52, forecast_rv_30d=0.44), cfg)["iv_rich_vs_forecast"]
    assert rich.evaluated and rich.fired
    assert rich.inputs["iv_minus_forecast"] == pytest.approx(0.08)
    assert rich.strength == pytest.approx((0.08 - 0.05) / 0.05)
    assert rich.inputs["forecast_model"] == "har" and rich.inputs["forecast_qlike"] == 0.25
    assert rich.inputs["forecast_implied_qlike"] == 0.32 and rich.inputs["forecast_n_scored"] == 188
    assert rich.thresholds == {"iv_vs_forecast_rich": 0.05, "iv_vs_forecast_tenor_days": 30, "forecast_max_age_days": 3}
    assert set(rich.strategies) == {"short_strangle", "iron_condor", "covered_call"}

    both = rules(regime(atm_iv_30d_marks=0.40, forecast_rv_30d=0.44), cfg)
    assert both["iv_cheap_vs_forecast"].fired and not both["iv_rich_vs_forecast"].fired
    assert both["iv_cheap_vs_forecast"].strength == pytest.approx((0.04 - 0.03) / 0.05)
    assert set(both["iv_cheap_vs_forecast"].strategies) == {"long_straddle", "long_strangle", "protective_put"}

    calm = rules(regime(atm_iv_30d_marks=0.46, forecast_rv_30d=0.44), cfg)      # +2 points: inside the band
    assert calm["iv_rich_vs_forecast"].evaluated and not calm["iv_rich_vs_forecast"].fired
    assert calm["iv_cheap_vs_forecast"].evaluated and not calm["iv_cheap_vs_forecast"].fired
    # thresholds come from the settings, not the code
    loose = rules(regime(atm_iv_30d_marks=0.46, forecast_rv_30d=0.44), dict(cfg, iv_vs_forecast_rich=0.01))
    assert loose["iv_rich_vs_forecast"].fired


def test_ranked_strategies_include_the_forecast_rule(cfg):
    ranked = strat.rank_strategies(strat.evaluate_rules(regime(atm_iv_30d_marks=0.60, forecast_rv_30d=0.44), cfg), 5)
    top = {r["strategy"]: r for r in ranked}
    assert "iv_rich_vs_forecast" in top["short_strangle"]["rules"]
    assert top["short_strangle"]["score"] == pytest.approx((0.16 - 0.05) / 0.05)


def test_the_iv_at_the_forecast_tenor(cfg):
    # no atm_iv_30d_marks: the regime's atm_iv_marks is the same 30-day figure when iv_tenor_days is 30
    reg = regime(atm_iv_marks=0.55, forecast_rv_30d=0.44)
    del reg["atm_iv_30d_marks"]
    rich = rules(reg, cfg)["iv_rich_vs_forecast"]
    assert rich.fired and rich.inputs["atm_iv_30d_marks"] == 0.55
    # a 7-day tenor reads the 7-day keys and never the 30-day level
    seven = dict(cfg, iv_vs_forecast_tenor_days=7)
    r7 = rules(regime(atm_iv_7d_marks=0.40, forecast_rv_7d=0.50, forecast_tenor_days=7), seven)
    assert r7["iv_cheap_vs_forecast"].fired and r7["iv_cheap_vs_forecast"].inputs["forecast_rv_7d"] == 0.50
    missing = rules(regime(forecast_rv_7d=0.50, forecast_tenor_days=7), seven)["iv_cheap_vs_forecast"]
    assert not missing.evaluated and missing.inputs["atm_iv_7d_marks"] is None


def test_no_forecast_stale_forecast_and_missing_settings_are_not_evaluated(cfg):
    none = rules(regime(forecast_rv_30d=None, forecast_reason="n/a: no stored vol forecast: run `qortcli vol`"), cfg)
    assert not none["iv_rich_vs_forecast"].evaluated and not none["iv_rich_vs_forecast"].fired
    assert none["iv_rich_vs_forecast"].note == "n/a: no stored vol forecast: run `qortcli vol`"
    absent = {k: v for k, v in regime().items() if not k.startswith("forecast")}
    note = rules(absent, cfg)["iv_cheap_vs_forecast"].note
    assert note == "no 30d realised-vol forecast in the regime"
    stale = rules(regime(atm_iv_30d_marks=0.70, forecast_rv_30d=0.44, forecast_age_days=4.5), cfg)["iv_rich_vs_forecast"]
    assert not stale.evaluated and not stale.fired
    assert stale.note == "forecast made 4.5 days before the snapshot (> forecast_max_age_days 3): stale, not used"
    old = {k: v for k, v in cfg.items() if k not in ("iv_vs_forecast_rich", "forecast_max_age_days")}
    lacking = rules(regime(atm_iv_marks=0.70, atm_iv_30d_marks=0.70, forecast_rv_30d=0.44), old)
    for name in ("iv_rich_vs_forecast", "iv_cheap_vs_forecast"):
        assert not lacking[name].evaluated
        assert lacking[name].note == "settings [suggest] lack iv_vs_forecast_rich, forecast_max_age_days"
    assert lacking["iv_above_high"].fired                      # the other rules are unaffected
