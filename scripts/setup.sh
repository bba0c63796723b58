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
# The versions of docker/requirements-viewer.lock (what the images run; scripts/lock) pin every package they
# list, so CI tests those versions; the lock is for Linux x86_64 CPython 3.11: elsewhere (or with
# QORT_UNLOCKED=1) pyproject.toml's ranges alone apply.
pins=()
platform=$(.venv/bin/python -c 'import platform, sys; print(f"{platform.system()}-{platform.machine()}-{sys.version_info[0]}.{sys.version_info[1]}")')
if [ -z "${QORT_UNLOCKED:-}" ] && [ "$platform" = "Linux-x86_64-3.11" ] && [ -f docker/requirements-viewer.lock ]; then
  mkdir -p .venv/tmp
  grep -E '^[A-Za-z0-9_.-]+==' docker/requirements-viewer.lock | sed 's/ *\\$//' > .venv/tmp/lock-pins.txt
  pins=(-c .venv/tmp/lock-pins.txt)
  echo "==> installing qortfolio ($spec) into .venv, versions pinned by docker/requirements-viewer.lock"
else
  echo "==> installing qortfolio ($spec) into .venv ($platform: the lock is for Linux-x86_64-3.11; ranges of pyproject.toml)"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${pins[@]}" -e "$spec"
