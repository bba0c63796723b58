#!/usr/bin/env bash
# Set up and run the whole test suite: the package with its test/bench/viewer extras, the viewer's
# toolchain (bun from the npm registry, the Reflex frontend build), then pytest (arguments pass through).
# Browser tests need Debian's chromium (`apt-get install -y chromium`; .ci/run installs it): without it
# they are skipped with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "test,bench,viewer"
if ! QORT_PYTHON="$PWD/.venv/bin/python" scripts/viewer --setup-only; then
  echo "!! viewer setup failed: the browser test will be skipped with its reason" >&2
fi
exec .venv/bin/python -m pytest "$@"
