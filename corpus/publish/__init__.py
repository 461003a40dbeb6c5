"""Show and share a run: dataset cards, licences, Hub upload (and reports)."""
