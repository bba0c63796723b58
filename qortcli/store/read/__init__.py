"""The read vocabulary: every step, job and viewer page reads the store through `qortcli.store.read`.

One module per domain (chains, prices, surfaces and summaries in `core`; later domains add a module and one
import line here); each function returns a typed record or frame and is served by an index.
"""

from qortcli.store.read.core import *  # noqa: F401,F403
from qortcli.store.read.core import __all__ as _core_all
from qortcli.store.read.suggestions import *  # noqa: F401,F403
from qortcli.store.read.suggestions import __all__ as _suggestions_all
from qortcli.store.read.books import *  # noqa: F401,F403,E402
from qortcli.store.read.books import __all__ as _books_all
from qortcli.store.read.live import LiveMarks, live_marks  # noqa: F401
from qortcli.store.read.vol import *  # noqa: F401,F403,E402
from qortcli.store.read.vol import __all__ as _vol_all
from qortcli.store.read.alerts import *  # noqa: F401,F403,E402  (alerts and the job runs health rules watch)
from qortcli.store.read.alerts import __all__ as _alerts_all
from qortcli.store.read.portfolios import *  # noqa: F401,F403,E402  (the optimizer's closes and allocations)
from qortcli.store.read.portfolios import __all__ as _portfolios_all
from qortcli.store.read.viewer import *  # noqa: F401,F403,E402  (runs, counts, stamps the viewer and status show)
from qortcli.store.read.viewer import __all__ as _viewer_all

__all__ = [*_core_all, *_suggestions_all, *_books_all, *_vol_all, *_alerts_all, *_portfolios_all, *_viewer_all, "LiveMarks", "live_marks"]
