"""The qortcli command line: one thin command per pipeline step (modules register on `app`)."""

from qortcli.cli import collect, migrate, optimize, price, status, suggest, surface  # noqa: F401  (register commands)
from qortcli.cli import worker  # noqa: F401,E402  (register `qortcli worker`)
from qortcli.cli import prune  # noqa: F401,E402  (register `qortcli prune`)
from qortcli.cli import book  # noqa: F401,E402  (register `qortcli book`)
from qortcli.cli import risk  # noqa: F401,E402  (register `qortcli risk`)
from qortcli.cli import market  # noqa: F401,E402  (register `qortcli market`)
from qortcli.cli import stream  # noqa: F401,E402  (register `qortcli stream`)
from qortcli.cli import vol  # noqa: F401,E402  (register `qortcli vol`)
from qortcli.cli import check  # noqa: F401,E402  (register `qortcli check`)
from qortcli.cli import backup  # noqa: F401,E402  (register `qortcli backup`)
from qortcli.cli import alerts  # noqa: F401,E402  (register `qortcli alerts`)
from qortcli.cli import chain  # noqa: F401,E402  (register `qortcli chain`)
from qortcli.cli.app import app


def main() -> None:
    app()
