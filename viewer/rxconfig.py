"""Reflex configuration of the qortfolio viewer (run it with `scripts/viewer`, or `reflex run` from here).

QORT_VIEWER_PORT (default 3000) is the one port of `reflex run --env prod --single-port`: it serves the
page and the backend. QORT_VIEWER_URL (`scripts/viewer --public-url`, docker-compose's viewer service) is the
address the browser uses — behind a reverse proxy, a tunnel or from another host — and becomes Reflex's
`api_url` (where the page opens its websocket) and `deploy_url`; it is built into the frontend at start.
The store comes from QORT_DB / QORT_DB_NAME like every qortcli command.
"""

import os
import sys

import reflex as rx
from reflex.plugins.sitemap import SitemapPlugin

from qortcli.errors import ConfigError
from qortcli.placeholders import refuse_placeholders

try:  # the placeholder passwords of .env.example are refused before anything starts
    refuse_placeholders("the viewer")
except ConfigError as exc:
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

_port = int(os.environ.get("QORT_VIEWER_PORT", "3000"))
_url = (os.environ.get("QORT_VIEWER_URL") or f"http://localhost:{_port}").rstrip("/")

config = rx.Config(
    app_name="qortview",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    default_color_mode="dark",
    frontend_port=_port,
    backend_port=_port,
    api_url=_url,
    deploy_url=_url,
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(appearance="dark", accent_color="purple", gray_color="mauve",
                                                         radius="medium", has_background=True))],
    disable_plugins=[SitemapPlugin],
)
