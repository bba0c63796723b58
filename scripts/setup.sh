#!/usr/bin/env bash
# Create ./.venv (if missing) and install qortfolio into it with the given extras, e.g. `scripts/setup.sh test`.
# Idempotent: a second run only checks the install. Uses python3.11+ from PATH (or $PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=${1:-}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
echo "==> installing qortfolio ($spec) into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
