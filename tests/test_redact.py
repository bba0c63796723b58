"""Issue 13.8: credentials are redacted everywhere, for every URL kind.

A unit table for `qortcli.redact.redact`, then the secrets test of the issue's acceptance: runs with a
credential in each URL kind (the Deribit --url with userinfo and with a token, MongoDB URLs in every
casing and misspelling, postgres://, query-string secrets, a bare user:password@host), and a grep of every
output line, every log line and every stored document (the store and a `migrate --to` copy of it) for
the secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qortcli.errors import StepError
from qortcli.redact import redact, redact_obj

from conftest import FIXTURES
from replay_server import deribit_server

SECRET = "s3cretPW9"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, kept", [
    (f"mongodb://qort:{SECRET}@db.example:27017/qortfolio?authSource=admin", "mongodb://qort:***@db.example:27017"),
    (f"mongodb+srv://qort:{SECRET}@cluster0.example.mongodb.net/q?retryWrites=true", "cluster0.example.mongodb.net"),
    (f"MONGODB://qort:{SECRET}@host/db", "MONGODB://qort:***@host"),
    (f"mongdb://qort:{SECRET}@host/db", "mongdb://qort:***@host"),
    (f"postgres://qort:{SECRET}@pg:5432/db", "postgres://qort:***@pg:5432"),
    (f"mongodb://qort:p@ss{SECRET}@host/db", "mongodb://qort:***@host"),              # an unencoded @ in the password
    (f"https://{SECRET}@api.example.com/v2", "https://***@api.example.com"),          # token-only userinfo
    (f"mongodb:qort:{SECRET}@host", "@host"),                                         # no // after the scheme
    (f"qort:{SECRET}@host:27017", "qort:***@host:27017"),
    (f"mongodb://h/?tls=true&tlsCertificateKeyFilePassword={SECRET}&w=1", "tls=true&tlsCertificateKeyFilePassword=***&w=1"),
    (f"mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:{SECRET}",
     "authMechanism=MONGODB-AWS&authMechanismProperties=***"),
    (f"http://127.0.0.1:9/api?token={SECRET}&currency=BTC", "token=***&currency=BTC"),
    (f"error: MongoDB at mongodb://u:{SECRET}@127.0.0.1:1 is unreachable", "is unreachable"),
])
def test_redact_masks_the_secret_and_keeps_the_rest(text, kept):
    out = redact(text)
    assert SECRET not in out and kept in out


@pytest.mark.parametrize("text", ["/tmp/qortfolio/db", "BTC-27MAR26-90000-C", "a=b&c=d", "21:18:57 user@example.org",
                                  "mongodb://db.example:27017/qortfolio", "snapshot BTC-20260111T211857Z"])
def test_redact_leaves_text_without_credentials_alone(text):
    assert redact(text) == text


def test_redact_obj_and_error_lines():
    doc = {"url": f"https://u:{SECRET}@h/x", "nested": [{"to": f"mongodb://u:{SECRET}@h"}], "n": 3}
    assert SECRET not in json.dumps(redact_obj(doc)) and redact_obj(doc)["n"] == 3
    assert SECRET not in str(StepError(f"cannot connect to postgres://u:{SECRET}@h"))


def _store_texts(path: Path) -> list[str]:
    from qortcli.store import connect

    db = connect(str(path))
    try:
        return [repr(doc) for name in db.list_collection_names() for doc in db[name].find({})]
    finally:
        db.close()


def test_no_credential_reaches_any_output_log_or_document(tmp_path, monkeypatch):
    from qortcli.cli import app

    monkeypatch.setenv("QORT_MONGO_TIMEOUT_MS", "300")
    book = json.loads((FIXTURES / "goodtrading_book_summary_BTC_option_20260313.json").read_text())
    small = dict(book, result=book["result"][:40])
    store, copy = tmp_path / "db", tmp_path / "copy"
    runner = CliRunner()
    outputs: list[str] = []
    with deribit_server(small) as server:
        userinfo_url = server.url.replace("http://", f"http://qort:{SECRET}@") + "/api/v2"
        token_url = server.url.replace("http://", f"http://{SECRET}@") + "/api/v2"
        runs = [
            (["--db", str(store), "collect", "deribit", "--currency", "BTC", "--url", userinfo_url], 0),
            (["--db", str(store), "collect", "deribit", "--currency", "BTC,ETH", "--url", userinfo_url, "--json"], 1),
            (["--db", str(store), "collect", "deribit", "--currency", "ETH", "--url", token_url], 1),
            (["--db", f"mongodb://qort:{SECRET}@127.0.0.1:1/q?tlsCertificateKeyFilePassword={SECRET}", "status"], 1),
            (["--db", f"MONGODB://qort:{SECRET}@127.0.0.1:1/q", "status"], 2),
            (["--db", f"mongdb://qort:{SECRET}@127.0.0.1:1/q", "status", "--json"], 2),
            (["--db", f"postgres://qort:{SECRET}@127.0.0.1:5432/q", "status"], 2),
            (["--db", f"mongodb:qort:{SECRET}@127.0.0.1", "status"], 2),
            (["--db", str(store), "migrate", "--to", f"mongodb://qort:{SECRET}@127.0.0.1:1/q?authMechanism=MONGODB-AWS"
              f"&authMechanismProperties=AWS_SESSION_TOKEN:{SECRET}"], 1),
            (["--db", str(store), "status"], 0),
            (["--db", str(store), "status", "--json"], 0),
            (["--db", str(store), "migrate", "--to", str(copy)], 0),
        ]
        for args, code in runs:
            result = runner.invoke(app, args)
            assert result.exit_code == code, (args, result.output)
            outputs.append(result.output)
        # logs: a subprocess with -vv (every logger at DEBUG through the root handler)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
        proc = subprocess.run([sys.executable, "-m", "qortcli", "-vv", "--db", str(store), "collect", "deribit",
                               "--currency", "BTC,ETH", "--url", userinfo_url], capture_output=True, text=True,
                              timeout=120, env=env)
        assert proc.returncode == 1 and "DEBUG" in proc.stderr, proc.stderr[-2000:]
        outputs += [proc.stdout, proc.stderr]
    for text in outputs:
        assert SECRET not in text
    assert any("qort:***@" in text for text in outputs) and any("***@127.0.0.1" in text for text in outputs)
    stored = _store_texts(store) + _store_texts(copy)
    assert any("'step': 'collect'" in doc for doc in stored)           # the runs and their errors are there...
    assert any("Method not found" in doc for doc in stored)
    assert not [doc for doc in stored if SECRET in doc]               # ...without the secret
