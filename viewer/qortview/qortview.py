"""The qortfolio viewer app: five read-only pages over the store (see viewer/README in the report)."""

import reflex as rx

from qortview import db
from qortview.pages import chain, overview, portfolio, suggestions, volatility
from qortview.state import ChainState, OverviewState, PortfolioState, SuggestState, VolState

app = rx.App(stylesheets=["/qort.css"])
app.register_lifespan_task(db.warm_loop)
app.add_page(overview.page, route="/", title="qortfolio · overview", on_load=OverviewState.load)
app.add_page(chain.page, route="/chain", title="qortfolio · options chain", on_load=ChainState.load)
app.add_page(volatility.page, route="/volatility", title="qortfolio · volatility", on_load=VolState.load)
app.add_page(portfolio.page, route="/portfolio", title="qortfolio · portfolio", on_load=PortfolioState.load)
app.add_page(suggestions.page, route="/suggestions", title="qortfolio · suggestions", on_load=SuggestState.load)

# the Book page (qortcli book / risk): self-contained, its state in pages/book.py
from qortview.pages import book as book_page  # noqa: E402

app.add_page(book_page.page, route="/book", title="qortfolio · book", on_load=book_page.BookState.load)
# Market page (self-contained: its state lives in pages/market.py)
from qortview.pages import market as market_page  # noqa: E402

app.add_page(market_page.page, route="/market", title="qortfolio · market", on_load=market_page.MarketState.load)
# History page (self-contained: its state lives in pages/history.py)
from qortview.pages import history as history_page  # noqa: E402

app.add_page(history_page.page, route="/history", title="qortfolio · history", on_load=history_page.HistoryState.load)
