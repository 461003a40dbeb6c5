"""Chunk papers into overlapping windows for Q&A generation: :func:`chunk_text` (pure) and the ``qa_chunk`` stage.

**Size.** By characters (default, after the reference recipe: about 1,800 characters with about 600
of overlap) or by tokens of a tokenizer from a local folder (``unit: tokens``; sizes are then in
tokens, e.g. 450 / 150 / 150). A chunk ends between ``size - slack`` and ``size`` units after its
start; its successor starts about ``overlap`` units before that end (within ``slack / 2`` either way),
or where the chunk ends when that is the start of a section.

**Where a chunk is cut.** Inside each window the best boundary wins, latest for an end and nearest the
overlap target for a start: a section (a Markdown ``#`` heading line: our texts have them) before a
paragraph (blank line) before a sentence end before a line break before a word boundary; a cut
between two characters only when a window holds no blank at all. A chunk never ends on its section's
heading alone (the boundary after a heading counts as a word boundary), and its text has no leading or
trailing whitespace. Token counts come from the tokenizer run over the whole document; the same text
re-tokenised alone may differ by a token at each edge.

**Math is never cut.** ``$…$``, ``$$…$$``, ``\\[…\\]`` and ``\\(…\\)`` spans (escaped ``\\$`` is not a
delimiter) hold no cut. As in TeX, a math span does not cross a blank line: a delimiter with no closing
one before the next blank line is taken as a literal character, so an unpaired ``$`` (a price in PDF
text) never swallows the rest of the paper. When a whole window falls inside one formula, the cut goes
to the formula's end: that chunk is longer than ``size`` (counted as ``oversize`` in the paper's
decision) and its successor starts after the formula when no boundary lies in its overlap window.

**Offsets are exact**: ``chunk.text == text[chunk.start:chunk.end]``. The same text and settings give
the same chunks.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from corpus.curate.stages import DocumentStage
from corpus.extract.latex import latex_to_unicode
from corpus.run.stage import OUT, StageConfig, path_field, per_process, register_stage
from schemas import CHUNK, PAPER, read_table

# boundary priorities (higher is better); FORBIDDEN: inside a formula
SECTION, PARAGRAPH, SENTENCE, LINE, WORD, CHAR, FORBIDDEN = 6, 5, 4, 3, 2, 1, -1

_HEADING = re.compile(r"^#{1,6}[ \t]+(\S[^\n]*?)[ \t#]*$", re.MULTILINE)
_BREAK = re.compile(r"\s+")
_SENTENCE = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[^\sa-z])")
_ABBREVIATION = re.compile(r"(?:\bal|\be\.g|\bi\.e|\bcf|\bvs|\betc|\bFigs?|\bEqs?|\bRefs?|\bSecs?|\bSect|\bTab|\bNo|\bapprox|\bresp|\bca|\b[A-Z])\.$")
# math openers outside math (a backslash escape is skipped whole, so ``\$`` is no opener)
_OPENER = re.compile(r"\\[\[(]|\\.|\$\$?", re.DOTALL)
# the rest of a math span after its opener, up to and including its closer; no blank line inside
_NO_BLANK = r"\n(?![ \t]*\n)"
_CLOSERS = {
    "$": re.compile(rf"(?:[^$\\\n]|\\.|{_NO_BLANK})*+\$", re.DOTALL),
    "$$": re.compile(rf"(?:[^$\\\n]|\\.|\$(?!\$)|{_NO_BLANK})*+\$\$", re.DOTALL),
    "\\[": re.compile(rf"(?:[^\\\n]|\\[^\]]|{_NO_BLANK})*+\\\]", re.DOTALL),
    "\\(": re.compile(rf"(?:[^\\\n]|\\[^)]|{_NO_BLANK})*+\\\)", re.DOTALL),
}


def math_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` of every math span of ``text`` (see the module docstring), in order."""
    spans, i = [], 0
    while (m := _OPENER.search(text, i)) is not None:
        opener = m.group()
        closer = _CLOSERS.get(opener)
        if closer is None:  # a backslash escape outside math
            i = m.end()
            continue
        body = closer.match(text, m.end())
        if body is None:  # never closed before a blank line: a literal character
            i = m.end()
            continue
        spans.append((m.start(), body.end()))
        i = body.end()
    return spans


def headings(text: str) -> list[tuple[int, str]]:
    """``(offset of the heading line, heading text)`` of every Markdown heading, in order."""
    return [(m.start(), m.group(1).strip()) for m in _HEADING.finditer(text)]


def boundaries(text: str, spans: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Priority of a cut before each position ``0..len(text)`` (int8; see the module constants)."""
    n = len(text)
    prio = np.full(n + 1, CHAR, dtype=np.int8)
    for m in _BREAK.finditer(text):
        p = m.end()
        if p < n:
            newlines = m.group().count("\n")
            prio[p] = PARAGRAPH if newlines >= 2 else LINE if newlines == 1 else WORD
    for m in _SENTENCE.finditer(text):
        p = m.end()
        if prio[p] < SENTENCE and not _ABBREVIATION.search(text, max(0, m.start() - 8), m.start() + 1):
            prio[p] = SENTENCE
    for m in _HEADING.finditer(text):
        prio[m.start()] = SECTION
        after = _BREAK.match(text, m.end())
        if after is not None and after.end() < n:  # never end a chunk on its heading alone
            prio[after.end()] = WORD
    for s, e in math_spans(text) if spans is None else spans:
        prio[s + 1:e] = FORBIDDEN
    prio[n] = SECTION
    return prio


@dataclass(frozen=True)
class Span:
    """One chunk: ``text[start:end]``, the heading of the section it starts in, and its length in units."""

    start: int
    end: int
    section: str | None
    units: int


class _Units:
    """Cumulative units before each character position: characters, or tokens (by start offset)."""

    def __init__(self, n: int, token_starts: np.ndarray | None = None):
        self.n = n
        positions = np.arange(n + 1, dtype=np.int64)
        self.cum = positions if token_starts is None else np.searchsorted(token_starts, positions, side="left")

    def between(self, a: int, b: int) -> int:
        return int(self.cum[b] - self.cum[a])

    def first_after(self, p: int, k: int) -> int:
        """Smallest q with ``between(p, q) >= k`` (at most n)."""
        return min(int(np.searchsorted(self.cum, self.cum[p] + k, side="left")), self.n)

    def last_after(self, p: int, k: int) -> int:
        """Largest q with ``between(p, q) <= k``."""
        return int(np.searchsorted(self.cum, self.cum[p] + k, side="right")) - 1

    def first_before(self, p: int, k: int) -> int:
        """Smallest q with ``between(q, p) <= k``."""
        return int(np.searchsorted(self.cum, self.cum[p] - k, side="left"))

    def last_before(self, p: int, k: int) -> int:
        """Largest q with ``between(q, p) >= k`` (-1 if none)."""
        return int(np.searchsorted(self.cum, self.cum[p] - k, side="right")) - 1


def _best(prio: np.ndarray, lo: int, hi: int, target: int | None) -> int | None:
    """The best boundary in ``[lo, hi]``: highest priority, then the latest (``target`` None) or the
    nearest ``target`` (ties: the earlier); None when every position there is inside a formula."""
    seg = prio[lo:hi + 1]
    if len(seg) == 0:
        return None
    top = seg.max()
    if top == FORBIDDEN:
        return None
    where = np.flatnonzero(seg == top) + lo
    if target is None:
        return int(where[-1])
    return int(where[np.argmin(np.abs(where - target))])


def _allowed_from(prio: np.ndarray, p: int) -> int:
    """The first position at or after ``p`` that is not inside a formula (a formula's end)."""
    return p + int(np.argmax(prio[p:] != FORBIDDEN))


def chunk_text(text: str, size: int = 1800, overlap: int = 600, slack: int = 600,
               token_starts: np.ndarray | None = None) -> list[Span]:
    """Cut ``text`` into overlapping chunks (see the module docstring).

    ``size``, ``overlap`` and ``slack`` are in characters, or in tokens when ``token_starts`` (the
    sorted character offsets where the document's tokens start) is given.
    """
    check_sizes(size, overlap, slack)
    n = len(text)
    first = len(text) - len(text.lstrip())
    if first == n:
        return []
    units = _Units(n, token_starts)
    prio = boundaries(text)
    heads = headings(text)
    heading_at = [h[0] for h in heads]
    spans: list[Span] = []
    start = first
    while True:
        if units.between(start, n) <= size:
            cut = n
        else:
            lo, hi = units.first_after(start, size - slack), units.last_after(start, size)
            cut = _best(prio, max(lo, start + 1), max(hi, start + 1), None)
            if cut is None:  # the window lies inside one formula: end with it
                cut = _allowed_from(prio, max(lo, start + 1))
        end = start + len(text[start:cut].rstrip())
        i = bisect_right(heading_at, start) - 1
        spans.append(Span(start, end, heads[i][1] if i >= 0 else None, units.between(start, end)))
        if cut >= n:
            return spans
        lo = max(units.first_before(cut, overlap + slack // 2), start + 1)
        # a chunk that ends where a section begins is followed by one that starts there: no overlap across it
        hi = cut if prio[cut] == SECTION else units.last_before(cut, max(overlap - slack // 2, 0))
        target = min(max(units.first_before(cut, overlap), lo), cut)
        nxt = _best(prio, lo, hi, target) if lo <= hi else None
        if nxt is None:  # no overlap window, or all of it inside one formula: start after that formula
            nxt = _allowed_from(prio, lo if lo <= hi else cut)
        start = nxt + len(text[nxt:]) - len(text[nxt:].lstrip()) if text[nxt:nxt + 1].isspace() else nxt
        if start >= n:
            return spans


def check_sizes(size: int, overlap: int, slack: int) -> None:
    """Refuse sizes that cannot make progress: a chunk is at least ``size - slack`` long and its
    successor starts at most ``overlap + slack / 2`` before its end."""
    if size < 1 or overlap < 0 or slack < 0:
        raise ValueError(f"chunk sizes must be positive (size {size}, overlap {overlap}, slack {slack})")
    if overlap + slack // 2 >= size - slack:
        raise ValueError(f"overlap ({overlap}) + slack/2 ({slack // 2}) must be below size - slack ({size - slack}): "
                         "each chunk must start after the one before it")


# ---------------------------------------------------------------------------------------------- stage


class ChunkConfig(StageConfig):
    documents: str = path_field(f"{OUT}/corpus.parquet", "documents to chunk (the curated corpus)")
    papers: str | None = path_field(f"{OUT}/papers.parquet",
                                    "papers table for each chunk's title, first author and year (none: no metadata)")
    unit: Literal["chars", "tokens"] = Field("chars", description="what size, overlap and slack count: characters, or "
                                                                  "tokens of `tokenizer`")
    tokenizer: str | None = path_field(None, "local folder of a fast tokenizer (AutoTokenizer.from_pretrained); needed "
                                             "for unit tokens")
    size: int = Field(1800, ge=1, description="most units in a chunk (more only when one formula fills its end window)")
    overlap: int = Field(600, ge=0, description="units a chunk shares with the one before it (about: see slack)")
    slack: int = Field(600, ge=0, description="how far before `size` a chunk may end, and around `overlap` its "
                                              "successor may start, to land on a better boundary")
    min_chars: int = Field(300, ge=1, description="papers with fewer characters of text give no chunk (decision too_short)")

    @model_validator(mode="after")
    def _consistent(self):
        check_sizes(self.size, self.overlap, self.slack)
        if self.unit == "tokens" and not self.tokenizer:
            raise ValueError("unit tokens needs `tokenizer`: a local folder with a fast tokenizer")
        return self


def load_tokenizer(folder: str):
    """A fast tokenizer from a local folder (never downloaded); a clear error otherwise."""
    from transformers import AutoTokenizer

    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: tokenizer folder not found")
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        raise ValueError(f"{folder}: cannot load a tokenizer: {e}") from e
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{folder}: {type(tok).__name__} is not a fast tokenizer (character offsets are needed)")
    return tok


def token_starts(tokenizer, text: str) -> np.ndarray:
    """Sorted character offsets where the tokens of ``text`` start (no special tokens)."""
    enc = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
    return np.sort(np.fromiter((s for s, e in enc.offsets if e > s), dtype=np.int64))


def _unicode(value: str | None) -> tuple[str | None, str | None]:
    """arXiv metadata as Unicode, and the error if its TeX could not be read (the raw value is kept)."""
    if value is None:
        return None, None
    try:
        return latex_to_unicode(value) or None, None
    except Exception as e:  # noqa: BLE001 - one odd name must not stop a run
        return value, f"{type(e).__name__}: {e}"


@register_stage
class Chunk(DocumentStage):
    """Cut each paper into overlapping chunks, with the metadata a stand-alone Q&A pair needs."""

    name = "qa_chunk"
    verb = "qa chunk"
    config_class = ChunkConfig
    description = ("Chunk papers for Q&A (about 1,800 characters, 600 overlap, or tokens): section, paragraph, then "
                   "sentence boundaries, never inside math; title, first author (Unicode) and year on every chunk.")
    output = "qa/chunks.parquet"

    def outputs(self):
        return {self.output: CHUNK, self.decisions_file: super().outputs()[self.decisions_file]}

    def requirements(self):
        return {"transformers": "qa"} if self.config.unit == "tokens" else {}

    def validate(self) -> None:
        if self.config.unit == "tokens":
            load_tokenizer(self.config.tokenizer)

    def prepare(self):
        super().prepare()
        if self.config.papers is not None and not Path(self.path(self.config.papers)).is_file():
            raise FileNotFoundError(f"{self.path(self.config.papers)}: papers table not found (set papers to none to "
                                    "chunk without titles, authors and years)")

    def _metadata(self, ids: list[str]) -> dict[str, dict]:
        if self.config.papers is None or not ids:
            return {}
        table = read_table(self.path(self.config.papers), PAPER, columns=["paper_id", "title", "first_author", "submitted"])
        table = table.filter(pc.is_in(table.column("paper_id"), value_set=pa.array(ids, pa.large_string())))
        return {r["paper_id"]: r for r in table.to_pylist()}

    def process(self, items):
        c = self.config
        tokenizer = per_process(f"tokenizer:{c.tokenizer}", lambda: load_tokenizer(c.tokenizer)) if c.unit == "tokens" else None
        docs = list(self.documents(items))
        papers = self._metadata([d["paper_id"] for d in docs])
        for doc in docs:
            pid, text = doc["paper_id"], doc["text"]
            if text is None or not text.strip():
                self.stat_update("reason.no_text")
                yield self.decisions_file, [self.decision(pid, "dropped", "no_text", extract_reason=doc["reason"])]
                continue
            chars = len(text.strip())
            if chars < c.min_chars:
                self.stat_update("reason.too_short")
                yield self.decisions_file, [self.decision(pid, "dropped", "too_short", score=float(chars),
                                                          chars=chars, min_chars=c.min_chars)]
                continue
            starts = token_starts(tokenizer, text) if tokenizer is not None else None
            spans = chunk_text(text, c.size, c.overlap, c.slack, starts)
            paper = papers.get(pid, {})
            title, title_error = _unicode(paper.get("title"))
            author, author_error = _unicode(paper.get("first_author"))
            submitted: date | None = paper.get("submitted")
            meta = {"title": title, "first_author": author, "year": submitted.year if submitted else None}
            yield self.output, [
                {"chunk_id": f"{pid}#{i}", "paper_id": pid, "index": i, "start": s.start, "end": s.end,
                 "text": text[s.start:s.end], "section": s.section, **meta}
                for i, s in enumerate(spans)]
            oversize = sum(s.units > c.size for s in spans)
            self.stat_update("chunks", value=len(spans))
            self.stat_update("chunks.oversize", value=oversize)
            detail = {"chunks": len(spans), "oversize": oversize, "unit": c.unit,
                      "metadata": "found" if paper else "none"}
            detail |= {k: v for k, v in (("title_error", title_error), ("first_author_error", author_error)) if v}
            yield self.decisions_file, [self.decision(pid, "kept", "chunked", score=float(len(spans)), **detail)]
