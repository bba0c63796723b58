"""End-to-end helpers (seeding a store with the pipeline's output for the viewer's browser test)."""
