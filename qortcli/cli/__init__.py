"""The qortcli command line: one thin command per pipeline step (modules register on `app`)."""

from qortcli.cli import collect, migrate, optimize, price, status, suggest, surface  # noqa: F401  (register commands)
from qortcli.cli import worker  # noqa: F401,E402  (register `qortcli worker`)
from qortcli.cli import check  # noqa: F401,E402  (register `qortcli check`)
from qortcli.cli import backup  # noqa: F401,E402  (register `qortcli backup`)
from qortcli.cli.app import app


def main() -> None:
    app()
