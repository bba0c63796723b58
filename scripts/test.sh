#!/usr/bin/env bash
# Set up and run the whole test suite: the package with its test/bench/viewer extras, the viewer's
# toolchain (bun from the npm registry, Debian's chromium when running as root), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "test,bench,viewer"
if [ -x scripts/viewer ]; then
  scripts/viewer --setup-only || echo "!! viewer setup failed: the browser test will be skipped with its reason"
fi
exec .venv/bin/python -m pytest "$@"
