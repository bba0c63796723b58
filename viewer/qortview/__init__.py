"""The qortfolio viewer: a read-only Reflex dashboard of the store (pages in `pages/`, reads in `queries`)."""
