"""Shared layout pieces: sidebar, header with the refresh timer, tables, stat tiles, notices."""

from __future__ import annotations

import reflex as rx

from qortview import db
from qortview.figures import ACCENT, BACKGROUND, MUTED, PANEL, PRIMARY, SECONDARY, TEXT

NAV = [("Overview", "/"), ("Options chain", "/chain"), ("Volatility", "/volatility"), ("Portfolio", "/portfolio"),
       ("Suggestions", "/suggestions"), ("Market", "/market"), ("Book", "/book"), ("History", "/history")]
BORDER = "#3B3346"


def nav_link(label: str, href: str) -> rx.Component:
    return rx.link(rx.text(label, size="3", weight="medium"), href=href, color=TEXT, padding_x="12px", padding_y="8px",
                   border_radius="8px", width="100%", _hover={"background_color": PRIMARY, "color": "white"},
                   underline="none")


def sidebar() -> rx.Component:
    return rx.vstack(
        rx.hstack(rx.text("◆", color=ACCENT, size="6"), rx.heading("qortfolio", size="6", color=TEXT), align="center"),
        rx.text("read-only viewer", size="1", color=MUTED),
        rx.divider(color_scheme="purple", margin_y="8px"),
        *[nav_link(label, href) for label, href in NAV],
        width="210px", min_width="210px", padding="20px 12px", spacing="1", height="100vh", position="sticky", top="0",
        background=f"linear-gradient(180deg, {PRIMARY} 0%, #2E1065 55%, {BACKGROUND} 100%)",
        border_right=f"1px solid {BORDER}",
    )


def header(state, title: str, *extra: rx.Component) -> rx.Component:
    return rx.hstack(
        rx.heading(title, size="7", color=TEXT),
        *extra,
        rx.spacer(),
        rx.vstack(
            rx.hstack(
                rx.text("refreshed", size="1", color=MUTED),
                rx.moment(interval=int(db.refresh_seconds() * 1000), format="HH:mm:ss", tz="UTC",
                          on_change=state.tick, color=ACCENT, font_size="12px"),
                rx.text("UTC", size="1", color=MUTED),
                align="center", spacing="1",
            ),
            rx.text(state.refreshes, " loads · last data load ", state.load_ms, " ms", size="1", color=MUTED,
                    id="load-status", data_load_ms=state.load_ms.to_string(), data_loads=state.refreshes.to_string()),
            rx.text(state.store, size="1", color=MUTED),
            align="end", spacing="0",
        ),
        width="100%", align="center", padding_bottom="12px", border_bottom=f"1px solid {BORDER}", margin_bottom="16px",
    )


def error_banner(state) -> rx.Component:
    return rx.cond(state.error != "",
                   rx.callout(state.error, icon="triangle_alert", color_scheme="red", margin_bottom="12px", id="error"))


def notice(message) -> rx.Component:
    """The "no data yet — run `qortcli …`" box."""
    return rx.box(rx.text(message, color=TEXT, size="3"), padding="16px", border=f"1px dashed {SECONDARY}",
                  border_radius="10px", background_color=PANEL, class_name="empty-notice", margin_y="8px")


def panel(*children, **props) -> rx.Component:
    return rx.box(*children, padding="14px", border=f"1px solid {BORDER}", border_radius="12px",
                  background_color=PANEL, **props)


def stat(label: str, value, sub=None, **props) -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", color=MUTED, weight="medium"),
        rx.text(value, size="6", weight="bold", color=TEXT),
        rx.text(sub, size="1", color=MUTED) if sub is not None else rx.fragment(),
        spacing="0", padding="10px 14px", border_radius="10px", background_color=BACKGROUND,
        border=f"1px solid {BORDER}", min_width="140px", **props,
    )


def tone_color(tone) -> rx.Var:
    return rx.match(tone, ("ok", "#34D399"), ("complete", "#34D399"), ("failed", "#F87171"), ("running", "#FBBF24"),
                    ("missed", "#F87171"), ("interrupted", "#F87171"), ("open", ACCENT), ("settled", "#60A5FA"),
                    ("empty", MUTED), TEXT)


def table(headers: list[str], rows, n: int, toned: int | None = None, **props) -> rx.Component:
    """A table of `Row`s showing cells c0..c{n-1}; cell `toned` is coloured by the row's tone."""
    def cell(row, i):
        value = getattr(row, f"c{i}")
        if toned == i:
            return rx.table.cell(rx.text(value, color=tone_color(row.tone), weight="bold"))
        return rx.table.cell(value)

    return rx.table.root(
        rx.table.header(rx.table.row(*[rx.table.column_header_cell(h, color=ACCENT) for h in headers])),
        rx.table.body(rx.foreach(rows, lambda row: rx.table.row(*[cell(row, i) for i in range(n)]))),
        variant="surface", size="1", width="100%", **props,
    )


def layout(state, title: str, *children, extra=()) -> rx.Component:
    return rx.hstack(
        sidebar(),
        rx.box(header(state, title, *extra), error_banner(state), *children, padding="20px 28px", flex="1",
               min_width="0"),
        spacing="0", align="start", width="100%", min_height="100vh", background_color=BACKGROUND, color=TEXT,
    )


def plot(fig, **props) -> rx.Component:
    """A plotly figure that fills its container's width."""
    return rx.plotly(data=fig, use_resize_handler=True, width="100%", config={"displaylogo": False}, **props)


def selector(items, value, on_change, id: str) -> rx.Component:
    return rx.select(items, value=value, on_change=on_change, id=id, size="2", color_scheme="purple", variant="surface")
