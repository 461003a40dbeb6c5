"""sagecorpus corpus building: ingest, extract, curate, run (see DESIGN.md)."""

__version__ = "0.1.0"
