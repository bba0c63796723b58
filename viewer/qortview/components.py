"""The frame every page shares: navigation (a sidebar, a top menu below 900 px), the page header with its
selectors, data ages and load status, panels, stat tiles, scrollable tables and plots (CSS: assets/qort.css).

A page is `layout(State, title, *children, extra=(selectors...), route="/x")`; its state mixes in
`qortview.state.Base` (error, ages, load status). `NAV` is built from the page registry
(`qortview.pages.REGISTRY`), so a new page appears in both menus by registering it.
"""

from __future__ import annotations

import reflex as rx

from qortview import db
from qortview.figures import ACCENT, BACKGROUND, MUTED, PANEL, PLOT_CONFIG, PRIMARY, SECONDARY, TEXT  # noqa: F401

BORDER = "#3B3346"
# (label, route) of the pages in menu order; filled by qortview.pages.register (a page not registered there
# can still be added to the app, it just has no menu entry)
NAV: list[tuple[str, str]] = []


def _links(route: str) -> rx.Component:
    return rx.el.nav(*[rx.el.a(label, href=href, class_name="active" if href == route else "") for label, href in NAV],
                     class_name="qv-nav")


def _brand() -> rx.Component:
    return rx.el.a(rx.el.span("◆", class_name="qv-brand-mark"), rx.el.span("qortfolio", class_name="qv-brand-name"),
                   href="/", class_name="qv-brand")


def sidebar(route: str = "") -> rx.Component:
    return rx.el.aside(_brand(), rx.el.div("read-only viewer", class_name="qv-side-note", margin_top="2px"),
                       _links(route), class_name="qv-sidebar")


def topbar(route: str = "") -> rx.Component:
    return rx.el.header(_brand(), _links(route), class_name="qv-topbar")


def ages(state) -> rx.Component:
    """The page's data times and ages ("… ago" counts live in the browser); amber when older than the
    schedule says it should be."""
    def chip(a) -> rx.Component:
        return rx.el.span(
            rx.el.span(a.label), rx.el.b(a.at_text),
            rx.cond(a.iso != "", rx.moment(date=a.iso, from_now=True, interval=30000, class_name="qv-ago"), rx.fragment()),
            rx.cond(a.stale, rx.el.span("· stale (", a.rule, ")"), rx.fragment()),
            class_name=rx.cond(a.stale, "qv-age stale", "qv-age"), title=a.note)

    return rx.el.div(rx.foreach(state.ages, chip), class_name="qv-ages", id="ages")


def header(state, title: str, *extra: rx.Component) -> rx.Component:
    return rx.el.div(
        rx.el.h1(title, class_name="qv-title"),
        rx.el.div(*extra, class_name="qv-selectors"),
        rx.el.div(
            rx.el.span(rx.cond(state.loaded, rx.el.span(state.refreshes, " loads · ", state.load_ms, " ms"), "loading…"),
                       id="load-status", data_load_ms=state.load_ms.to_string(), data_loads=state.refreshes.to_string(),
                       data_version=state.version_short),
            rx.el.span(state.store),
            class_name="qv-status"),
        class_name="qv-header")


def error_banner(state) -> rx.Component:
    return rx.fragment(rx.cond(state.error != "", rx.el.div(state.error, class_name="qv-error", id="error")),
                       rx.cond(state.load_note != "", rx.el.p(state.load_note, class_name="qv-warn", id="load-note")))


def notice(message) -> rx.Component:
    """The "no data yet — run `qortcli …`" box."""
    return rx.el.div(message, class_name="qv-empty empty-notice")


def panel(*children, title=None, sub=None, **props) -> rx.Component:
    """A panel; `title` (h3) and `sub` (its note: units, source, in/out of sample) above the children."""
    head = []
    if title is not None:
        head.append(rx.el.h3(title))
    if sub is not None:
        head.append(rx.el.p(sub, class_name="qv-sub"))
    class_name = "qv-panel " + props.pop("class_name", "")
    return rx.el.div(*head, *children, class_name=class_name.strip(), **props)


def grid(*children, cols: int = 2, **props) -> rx.Component:
    """Columns on a wide screen, stacked below 900 px."""
    return rx.el.div(*children, class_name=f"qv-grid qv-cols-{cols}", **props)


def row(*children, **props) -> rx.Component:
    return rx.el.div(*children, class_name="qv-row", **props)


def stack(*children, **props) -> rx.Component:
    return rx.el.div(*children, class_name="qv-stack", **props)


def stat(label: str, value, sub=None, **props) -> rx.Component:
    return rx.el.div(rx.el.div(label, class_name="qv-stat-label"), rx.el.div(value, class_name="qv-stat-value"),
                     rx.el.div(sub, class_name="qv-stat-sub") if sub is not None else rx.fragment(),
                     class_name="qv-stat", **props)


def note(*text, warn: bool = False, **props) -> rx.Component:
    return rx.el.p(*text, class_name="qv-warn" if warn else "qv-note", **props)


def tone_class(tone) -> rx.Var:
    return rx.match(tone, ("ok", "tone-ok"), ("complete", "tone-ok"), ("failed", "tone-failed"),
                    ("running", "tone-running"), ("missed", "tone-missed"), ("interrupted", "tone-interrupted"),
                    ("stale", "tone-stale"), ("open", "tone-open"), ("settled", "tone-settled"), ("empty", "tone-empty"), "")


def table(headers: list[str], rows, n: int, toned: int | None = None, numeric: tuple = (), wrap: tuple = (),
          tall: bool = False, **props) -> rx.Component:
    """A table of `Row`s (cells c0..c{n-1}) scrolling inside its panel; cell `toned` is coloured by the row's
    tone, `numeric` cells are right-aligned, `wrap` cells may wrap (long errors, reasons)."""
    def cell(r, i):
        value = getattr(r, f"c{i}")
        cls = " ".join(c for c in ("num" if i in numeric else "", "wrap" if i in wrap else "") if c)
        if toned == i:
            return rx.el.td(rx.el.span(value, class_name=tone_class(r.tone)), class_name=cls)
        return rx.el.td(value, class_name=cls)

    element_id = props.pop("id", None)
    return rx.el.div(
        rx.el.table(rx.el.thead(rx.el.tr(*[rx.el.th(h, class_name="num" if i in numeric else "")
                                           for i, h in enumerate(headers)])),
                    rx.el.tbody(rx.foreach(rows, lambda r: rx.el.tr(*[cell(r, i) for i in range(n)]))),
                    class_name="qv-table", id=element_id),
        class_name="qv-scroll tall" if tall else "qv-scroll", **props)


def layout(state, title: str, *children, extra=(), route: str = "") -> rx.Component:
    """The page frame around `children` (selectors in `extra`, `route` highlights the menu entry)."""
    return rx.el.div(
        sidebar(route),
        topbar(route),
        rx.el.main(header(state, title, *extra), error_banner(state), ages(state), refresh_clock(state), *children,
                   class_name="qv-main"),
        class_name="qv-shell",
    )


def _figure(fig):
    """A state var holding a figure as a plain dict (`figures.plain`), typed for the plotly component."""
    import plotly.graph_objects as go

    return fig.to(go.Figure) if isinstance(fig, rx.Var) else fig


BUNDLES = {"cartesian": "cartesian", "gl3d": "gl3d"}


def plot(fig, ready=None, bundle: str = "cartesian", **props) -> rx.Component:
    """A plotly figure filling its container's width (resizes with it). `bundle`: plotly's partial build the page
    loads — "cartesian" (scatter, bar, heatmap: a third of the full library) or "gl3d" (3D traces plus scatter, for a
    page with a 3D chart: one bundle instead of two). `ready` (a state var): mount the chart only once the page's
    data is in, so the library's download and parse never delay the data."""
    component = getattr(rx.plotly, BUNDLES[bundle])
    chart = component(data=_figure(fig), template=None, use_resize_handler=True, width="100%", config=PLOT_CONFIG,
                      **props)
    body = rx.cond(ready, chart, rx.fragment()) if ready is not None else chart
    return rx.box(body, class_name="qv-plot")


def plot3d(fig, ready=None, **props) -> rx.Component:
    """A 3D plotly figure (surface, scatter3d) in a box whose height follows its width (the scene keeps its
    proportions, and its labels, on a phone)."""
    chart = rx.plotly.gl3d(data=_figure(fig), template=None, use_resize_handler=True, width="100%", height="100%",
                           config=PLOT_CONFIG, **props)
    body = rx.cond(ready, chart, rx.fragment()) if ready is not None else chart
    return rx.box(body, class_name="qv-plot qv-plot3d")


def selector(items, value, on_change, id: str) -> rx.Component:
    return rx.select(items, value=value, on_change=on_change, id=id, size="2", color_scheme="purple", variant="surface")


def refresh_clock(state) -> rx.Component:
    """The refresh timer: fires `state.tick` every QORT_VIEWER_REFRESH_S (the first, on mount, is a no-op)."""
    return rx.moment(interval=int(db.refresh_seconds() * 1000), on_change=state.tick, display="none")
