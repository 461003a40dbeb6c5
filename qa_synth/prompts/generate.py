"""``generate@1``: n question-answer pairs from one chunk of a paper, each standing alone.

The user turn gives the paper (title, first author, year), the section and the chunk's text; the
model is asked for a mix of the four question types and for questions a reader can answer without
the paper: no "the paper", "this study", "we". What slips through is rewritten afterwards
(:func:`qa_synth.replies.stand_alone`).
"""

from __future__ import annotations

from typing import Any

from qa_synth.prompts import Template

QUESTION_TYPES = ("factual", "conceptual", "quantitative", "methods")


def citation(first_author: str | None, year: int | None) -> str | None:
    """How a stand-alone text names the source paper: ``"Surname et al. (Year)"``; None when either is unknown.

    The chunk table gives the first author only, not the number of authors, so the form is always
    "et al." (right for most papers of the field, wrong for single-author ones)."""
    if not first_author or not year:
        return None
    return f"{first_author} et al. ({year})"


def generate_fields(chunk: dict[str, Any], n: int) -> dict[str, Any]:
    """The placeholders of ``generate@1`` for one CHUNK row."""
    cite = citation(chunk.get("first_author"), chunk.get("year"))
    paper = ", ".join(p for p in (
        f'"{chunk["title"]}"' if chunk.get("title") else "title unknown",
        f"first author {chunk['first_author']}" if chunk.get("first_author") else None,
        str(chunk["year"]) if chunk.get("year") else None,
    ) if p)
    refer = (f'If a question or answer must refer to this work, call it "{cite}".' if cite else
             "If a question or answer would need to refer to this work, rephrase it so that it does not.")
    return {"paper": paper, "section": chunk.get("section") or "unknown", "text": chunk["text"], "n": n, "refer": refer}


SYSTEM = """You write question-answer pairs that teach a language model the science in research papers.

Question types:
- factual: a fact, result or definition stated in the text.
- conceptual: why or how something happens; the physical reasoning behind a result.
- quantitative: a number, scaling, equation or measured value from the text, with units.
- methods: how an observation, simulation or analysis was done, and why that way.

Rules:
- Every pair must stand alone: a reader who has never seen the text must understand the question and
  the answer. Never write "the paper", "this paper", "this study", "this work", "the authors", "we",
  "our" or "the text".
- Answers must be correct according to the text, complete and concise (one to four sentences).
- Write math in LaTeX between dollar signs ($M_\\odot$, $H_0$).
- Ask only about the science, never about the document itself (figures, section numbers, citations)."""

USER = """Paper: {paper}
Section: {section}

Text:
<<<
{text}
>>>

Write {n} question-answer pairs about the science in this text, mixing the question types. {refer}"""

SCHEMA = {
    "type": "object",
    "properties": {
        "pairs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "question_type": {"type": "string", "enum": list(QUESTION_TYPES)},
                    "question": {"type": "string", "minLength": 1},
                    "answer": {"type": "string", "minLength": 1},
                },
                "required": ["question_type", "question", "answer"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["pairs"],
    "additionalProperties": False,
}

SHAPE = ('{"pairs": [{"question_type": "factual" | "conceptual" | "quantitative" | "methods", '
         '"question": "...", "answer": "..."}, ...]}')

GENERATE_V1 = Template(name="generate", version=1, system=SYSTEM, user=USER, schema=SCHEMA, shape=SHAPE)
