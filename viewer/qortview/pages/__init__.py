"""The viewer's pages: one module each, listed once in `REGISTRY` (menu order).

A page module exposes `page() -> rx.Component` and its state class (default attribute `STATE`), whose `load`
event is the page's on_load. Adding a page is one line here, e.g.

    PageSpec("/history", "History", "qortview.pages.history", state="HistoryState"),

`optional=True` pages are registered when their module is present and skipped otherwise (for a page shipped
apart from the viewer). The live chain is the chain page itself (the stream's marks over the snapshot's). A state mixing in `qortview.state.Base` with `PAGE`
set gets the load-once / refresh-only-what-changed protocol; one with its own `load`/`tick` keeps them.
`register(app)` fills the menus (`components.NAV`) first, then adds every page to the app.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

import reflex as rx

from qortview import components


@dataclass(frozen=True)
class PageSpec:
    """One page: its route, its menu label, the module with `page()` and the name of its state class."""

    route: str
    label: str
    module: str
    state: str = "STATE"
    optional: bool = False

    @property
    def title(self) -> str:
        return f"qortfolio · {self.label.lower()}"


REGISTRY: list[PageSpec] = [
    PageSpec("/", "Overview", "qortview.pages.overview"),
    PageSpec("/chain", "Options chain", "qortview.pages.chain"),
    PageSpec("/volatility", "Volatility", "qortview.pages.volatility"),
    PageSpec("/market", "Market", "qortview.pages.market"),
    PageSpec("/book", "Book", "qortview.pages.book"),
    PageSpec("/portfolio", "Portfolio", "qortview.pages.portfolio"),
    PageSpec("/suggestions", "Suggestions", "qortview.pages.suggestions"),
    PageSpec("/history", "History", "qortview.pages.history", state="HistoryState"),
]


def available(specs: list[PageSpec] | None = None) -> list[PageSpec]:
    """The specs whose module is present (an optional page's missing module is skipped)."""
    out = []
    for spec in REGISTRY if specs is None else specs:
        if spec.optional and importlib.util.find_spec(spec.module) is None:
            continue
        out.append(spec)
    return out


def register(app: rx.App, specs: list[PageSpec] | None = None) -> None:
    """Add the pages of `specs` (default REGISTRY) to `app`, with their menu entries."""
    specs = available(specs)
    components.NAV[:] = [(s.label, s.route) for s in specs]
    for spec in specs:
        module = importlib.import_module(spec.module)
        state = getattr(module, spec.state)
        app.add_page(module.page, route=spec.route, title=spec.title, on_load=state.load)
