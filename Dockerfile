# qortfolio image: the `qortcli` package (worker, CLI) and, in the `viewer` target, the Reflex viewer.
#
#   docker compose build                    # both targets, as docker-compose.yml names them
#   docker build -t qortfolio .             # the worker/CLI image (default target: app)
#   docker build --target viewer -t qortfolio-viewer .
#
# The package is installed exactly as CI installs it (non-editable here): `pip install ".[viewer]"`
# (tests/test_deploy.py checks this line against pyproject.toml).

FROM python:3.11-slim AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# a fixed non-root user that owns nothing but its home (the embedded store default, ~/.qortfolio)
RUN groupadd --system --gid 10001 qort \
    && useradd --system --uid 10001 --gid qort --create-home --home-dir /home/qort --shell /usr/sbin/nologin qort

WORKDIR /app
COPY pyproject.toml README.md ./
COPY qortcli ./qortcli
COPY jobs ./jobs
# DL3013 (pin versions): this installs the project itself; its dependencies are pinned by pyproject's ranges
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[viewer]"

COPY --chown=10001:10001 viewer ./viewer
COPY scripts ./scripts
COPY crontab ./crontab

USER 10001:10001
ENV HOME=/home/qort

# healthy = the store answers and the schema is readable (qortcli status exits 1 otherwise)
HEALTHCHECK --interval=60s --timeout=30s --start-period=30s --retries=3 \
    CMD ["qortcli", "status", "--runs", "0", "--json"]

# exec form: qortcli is PID 1 and receives SIGTERM, finishes the running job and exits
CMD ["qortcli", "worker"]

# --- the viewer: the same image plus Node 22 for Reflex's frontend build -----------------------
FROM app AS viewer

USER 0
COPY --from=node:22-bookworm-slim /usr/local/bin/node /usr/local/bin/node
COPY --from=node:22-bookworm-slim /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && node --version && npm --version
USER 10001:10001

ENV REFLEX_USE_NPM=1 \
    REFLEX_TELEMETRY_ENABLED=false \
    QORT_VIEWER_PORT=3000
WORKDIR /app/viewer
# the frontend packages and the production build are made once, at image build time
RUN reflex init --no-agents && reflex export --frontend-only --no-zip --env prod

EXPOSE 3000
CMD ["reflex", "run", "--env", "prod", "--single-port", "--frontend-port", "3000", "--backend-port", "3000"]
