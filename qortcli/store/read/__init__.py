"""The read vocabulary: every step, job and viewer page reads the store through `qortcli.store.read`.

One module per domain (chains, prices, surfaces and summaries in `core`; later domains add a module and one
import line here); each function returns a typed record or frame and is served by an index.
"""

from qortcli.store.read.core import *  # noqa: F401,F403
from qortcli.store.read.core import __all__ as _core_all
from qortcli.store.read.live import LiveMarks, live_marks  # noqa: F401

__all__ = list(_core_all)
