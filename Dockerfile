# qortfolio images: `app` (the worker and the CLI) and `viewer` (the Reflex viewer, read-only).
#
#   docker compose build                    # both targets, as docker-compose.yml names them
#   docker build -t qortfolio .             # the worker/CLI image (default target: app)
#   docker build --target viewer -t qortfolio-viewer .
#
# Base images are pinned by digest (linux/amd64 + multi-arch indexes of the official images, read from
# docker-library/repo-info): python:3.11-slim-bookworm (Python 3.11.16), node:22-bookworm-slim (Node 22.23.2).
# `scripts/pin-images` resolves the current digests and rewrites these lines.
# Python packages come from hash-checked lock files (`scripts/lock`, Linux x86_64, CPython 3.11):
# docker/requirements-worker.lock (no reflex, no playwright) here, docker/requirements-viewer.lock in `viewer`;
# the project itself is then installed without dependencies (tests/test_deploy.py checks all of this).

FROM node:22-bookworm-slim@sha256:f576cc608b02e6b04bb0700e13be83eb5ceb7bb24584c3181b0f4ecfa0cd0edf AS node

FROM python:3.11-slim-bookworm@sha256:fe556eaffd0d96abd8685b83bb8a69addd0dc730fa193669a7df0d49ddcfac02 AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# a fixed non-root user that owns nothing but its home (the embedded store default, ~/.qortfolio)
RUN groupadd --system --gid 10001 qort \
    && useradd --system --uid 10001 --gid qort --create-home --home-dir /home/qort --shell /usr/sbin/nologin qort

WORKDIR /app
COPY docker/requirements-worker.lock ./docker/
RUN pip install --no-cache-dir --require-hashes -r docker/requirements-worker.lock
COPY pyproject.toml README.md ./
COPY qortcli ./qortcli
COPY jobs ./jobs
# DL3013 (pin versions): this is the project itself; every dependency is pinned and hash-checked above
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps --no-build-isolation .

COPY scripts ./scripts
COPY crontab ./crontab

USER 10001:10001
ENV HOME=/home/qort

# healthy = the store answers and the schema is readable (qortcli status exits 1 otherwise)
HEALTHCHECK --interval=60s --timeout=30s --start-period=30s --retries=3 \
    CMD ["qortcli", "status", "--runs", "0", "--json"]

# exec form: qortcli is PID 1 and receives SIGTERM: running jobs get [schedule] stop_grace (60 s), then exit 0
CMD ["qortcli", "worker"]

# --- the viewer: the same image plus reflex (its own lock) and Node 22 for Reflex's frontend build --------
FROM app AS viewer

USER 0
COPY docker/requirements-viewer.lock ./docker/
RUN pip install --no-cache-dir --require-hashes -r docker/requirements-viewer.lock
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && node --version && npm --version
COPY --chown=10001:10001 viewer ./viewer
USER 10001:10001

ENV REFLEX_USE_NPM=1 \
    REFLEX_TELEMETRY_ENABLED=false \
    QORT_VIEWER_PORT=3000
WORKDIR /app/viewer
# the frontend packages and the production build are made once, at image build time
RUN reflex init --no-agents && reflex export --frontend-only --no-zip --env prod

EXPOSE 3000
# inside the container the viewer listens on all its interfaces; docker-compose.yml publishes it on the
# host's 127.0.0.1 only (QORT_VIEWER_BIND opts in to more; README: "Exposing the viewer")
CMD ["reflex", "run", "--env", "prod", "--single-port", "--frontend-port", "3000", "--backend-port", "3000", "--backend-host", "0.0.0.0"]
