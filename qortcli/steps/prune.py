"""The prune step: the `[retention]` policy applied to stored option chains (see `qortcli.store.retention`).

`run_prune(db, dry_run=False, now=None)`: per currency, full chains are kept for `full_chains_days` (default
30); older ones are thinned to the last chain of each UTC day. Summaries, surfaces, suggestions, books and runs
are kept. A dry run only reports. What was removed goes into the run record (`job_runs`).
"""

from __future__ import annotations

import time
from datetime import datetime

from qortcli.errors import ConfigError
from qortcli.store import read, retention
from qortcli.store.runs import recorded_run

DEFAULT_FULL_DAYS = 30.0


def retention_settings(cfg: dict | None = None) -> dict:
    from qortcli.config import get_settings

    cfg = dict(cfg if cfg is not None else get_settings().section("retention"))
    days = cfg.get("full_chains_days", DEFAULT_FULL_DAYS)
    if isinstance(days, bool) or not isinstance(days, (int, float)) or days < 1:
        raise ConfigError(f"settings [retention] full_chains_days must be a number of days ≥ 1, got {days!r}")
    return {"full_chains_days": float(days)}


def run_prune(db, dry_run: bool = False, now: datetime | None = None, cfg: dict | None = None) -> dict:
    """Thin chains older than the retention window; returns {"step", "dry_run", "full_chains_days", "currencies":
    [{currency, cutoff, protected_from, snapshots, documents, kept_daily}], "snapshots", "documents", "seconds"}."""
    settings = retention_settings(cfg)
    clock = time.perf_counter()
    rows = []
    if dry_run:
        for cur in read.currencies(db):
            p = retention.plan(db, cur, settings["full_chains_days"], now)
            rows.append({"currency": cur, "cutoff": p.cutoff, "protected_from": p.protected_from,
                         "snapshots": len(p.remove), "documents": p.documents, "kept_daily": len(p.keep)})
    else:
        with recorded_run(db, "prune", {"full_chains_days": settings["full_chains_days"]}) as run:
            for cur in read.currencies(db):
                p = retention.plan(db, cur, settings["full_chains_days"], now)
                done = retention.apply(db, p)
                rows.append({**done, "cutoff": p.cutoff, "protected_from": p.protected_from})
            run.counts.update(snapshots=sum(r["snapshots"] for r in rows), documents=sum(r["documents"] for r in rows),
                              **{f"{r['currency']}_snapshots": r["snapshots"] for r in rows})
    return {"step": "prune", "dry_run": dry_run, "full_chains_days": settings["full_chains_days"], "currencies": rows,
            "snapshots": sum(r["snapshots"] for r in rows), "documents": sum(r["documents"] for r in rows),
            "seconds": round(time.perf_counter() - clock, 3)}
