"""The viewer's pages (one module each)."""
