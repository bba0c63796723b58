"""Alerts on markets and jobs: rules from the `[alerts]` settings, evaluated into conditions, kept as episodes.

One module per job, arrows pointing down (nothing here reads or writes the store; `qortcli.steps.alerts` does):
  settings.py    `[alerts]` → typed `AlertSettings` (rules, webhook and log targets), validated with clear errors
  conditions.py  the typed `Condition` every rule yields, and the level-crossing test with hysteresis
  market.py      market rules over typed inputs (summaries, spot points, tracked suggestions) — pure
  health.py      health rules over typed inputs (job runs, data ages, stream state) — pure
  episodes.py    conditions + the open episodes → what to open, keep and close — pure
  redact.py      webhook URLs are secrets: the label shown and stored instead, and scrubbing of error text
  delivery.py    HTTP POST (JSON or plain text) with retries, backoff and a timeout; the JSON-lines log file
"""
