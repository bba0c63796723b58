"""The qortfolio viewer: read-only pages over the store (the page list: `qortview.pages.REGISTRY`)."""

import reflex as rx

from qortview import pages

app = rx.App(
    stylesheets=["/qort.css"],
    head_components=[rx.el.link(rel="icon", href="/favicon.ico", sizes="any"),
                     rx.el.meta(name="theme-color", content="#4C1D95")],
)
pages.register(app)
