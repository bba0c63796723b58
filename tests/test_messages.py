"""Issue 14.11: the misleading messages, mended (the others are rows of tests/test_bad_inputs.py)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from typer.testing import CliRunner

from qortcli.cli import app
from qortcli.errors import StepError
from qortcli.steps.collect import run_collect_prices

from conftest import FIXTURES

runner = CliRunner()


def test_offline_price_collection_does_not_blame_delisting(embedded_db):
    """Every symbol failing (here: the whole batch raises like requests does offline) is reported as Yahoo
    being unreachable, not as coins "possibly delisted"."""

    def offline(symbols, **kwargs):
        raise ConnectionError("Failed to resolve 'query2.finance.yahoo.com' ([Errno -3] Temporary failure in name resolution)")

    with pytest.raises(StepError) as caught:
        run_collect_prices(embedded_db, sector="Digital Assets", download=offline, today=date(2026, 12, 1))
    message = str(caught.value)
    assert "Yahoo Finance is most likely unreachable (offline, blocked or rate-limiting)" in message
    assert "rather than every coin delisted" in message and "name resolution" in message


def test_top_zero_says_what_it_asked_for(qort_env):
    book = FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json"
    assert runner.invoke(app, ["collect", "deribit", "--from-file", str(book)]).exit_code == 0
    assert runner.invoke(app, ["price"]).exit_code == 0
    result = runner.invoke(app, ["suggest", "--as-of-snapshot", "--top", "0"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "--top 0: no rule-based suggestion asked for" in result.stdout and "no rule fired" not in result.stdout
    as_json = json.loads(runner.invoke(app, ["suggest", "--as-of-snapshot", "--top", "0", "--json"]).stdout)
    assert as_json["currencies"][0]["suggestions"] == [] and as_json["currencies"][0]["top"] == 0
