#!/usr/bin/env bash
# The main job: set up, then run the whole pipeline on the embedded store with the bundled real sample
# (a Deribit BTC+ETH chain of 2026-01-11 and ten coins' daily prices), and print the store's status.
# Store: $QORT_DB if set, else ./.qortfolio/db (embedded, git-ignored). No network needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export QORT_DB=${QORT_DB:-$PWD/.qortfolio/db}
q=.venv/bin/qortcli
set -x
$q collect sample                     # a new store gets its schema on first open (qortcli migrate shows it)
$q price --check
$q surface
$q optimize --model hrp --by-sector --max-sector 0.6
$q vol --currency BTC                 # IV rank, realised vol, cone and out-of-sample forecasts (recent BTC prices)
$q suggest --top 3 --as-of-snapshot   # the sample is recorded data: judge its expiries as of its own time
$q chain --currency BTC --strikes 8
$q market --currency BTC --rows 8
$q status
