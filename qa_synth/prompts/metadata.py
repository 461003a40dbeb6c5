"""``metadata@1``: question-answer pairs made from a paper's metadata by fixed templates, without a model.

One pair per field the paper has (title, first author, year, arXiv id); every question names the
paper by its title (or, for the title itself, by its arXiv id), so a paper without a title gets none.
These pairs are exact by construction: they are marked ``kind='template'`` and never graded.
"""

from __future__ import annotations

import re
from typing import Any

METADATA_TEMPLATE = "metadata@1"
METADATA_MODEL = "template"
TEMPLATES = {  # field: (question, answer); a pair needs the title and the field's value (the title's: the arXiv id)
    "title": ("What is the title of the arXiv paper {arxiv_id}?", 'The arXiv paper {arxiv_id} is titled "{title}".'),
    "first_author": ('Who is the first author of the paper titled "{title}"?', 'The first author of "{title}" is {first_author}.'),
    "year": ('In what year was the paper titled "{title}" first released?', '"{title}" was first released in {year}.'),
    "arxiv_id": ('What is the arXiv identifier of the paper titled "{title}"?', 'The arXiv identifier of "{title}" is {arxiv_id}.'),
}
FIELDS = tuple(TEMPLATES)
_ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5}|[a-z][a-z.-]*/\d{7})$", re.IGNORECASE)


def arxiv_id(paper_id: str) -> str | None:
    """The paper's arXiv id, or None when its id is not one (``sha256:...`` papers came from bare files)."""
    return paper_id if _ARXIV_ID.match(paper_id) else None


def metadata_pairs(paper_id: str, title: str | None, first_author: str | None, year: int | None) -> tuple[list[dict[str, Any]], list[str]]:
    """``(pairs, missing)``: one ``{"field", "question", "answer"}`` per field that can be asked about,
    in :data:`FIELDS` order, and the fields that could not (their metadata, or the title naming the
    paper, is missing)."""
    values = {"title": title, "first_author": first_author, "year": year, "arxiv_id": arxiv_id(paper_id)}
    pairs = [{"field": field, "question": question.format(**values), "answer": answer.format(**values)}
             for field, (question, answer) in TEMPLATES.items()
             if title and values["arxiv_id" if field == "title" else field]]
    made = {p["field"] for p in pairs}
    return pairs, [f for f in FIELDS if f not in made]
