"""Q&A synthesis from curated papers: chunk, generate, grade, select (see DESIGN.md)."""
