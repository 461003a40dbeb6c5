"""Decontamination: keep benchmark questions out of the training corpus, by text and by source.

**By text.** Each benchmark question becomes word sequences — its normalised words
(:func:`corpus.curate.text.words`) followed by the words of its correct option, or, when the file has
no answers, one sequence per option plus one with all options in order. A document overlaps a question
when it contains any 13 consecutive words of one of its sequences; a sequence shorter than 13 words
(but with at least 8) must appear whole. Matching is vectorised (hashes of every n-gram of the document
against a sorted array) and every hash hit is confirmed on the words themselves, so a match is never
a hash collision. The match records the question id and the overlapping n-gram.

**By source.** The reference recipe kept every Annual Review of Astronomy and Astrophysics paper out
(AstroMLab-1's questions were written from them, and paraphrase them: no shared 13-gram, so this is
the only protection): :class:`SourceExclusion` drops papers by journal reference pattern, DOI (or DOI
prefix), arXiv id (any id the paper is known by), or the journal's own words in the document's front
matter (copyright line, running head, DOI), so a review without a metadata row is caught too.

Question files: JSON (an array of objects), JSONL, CSV (a header row; a UTF-8 byte-order mark, as
spreadsheet exports write, is dropped) or Parquet with ``question``, ``A``..``D`` and an optional
``answer`` (a letter); column names are matched without regard to case or surrounding spaces. The
id is ``id``, else ``index``, else the row number. Both layouts in
``shared/fixtures/qa/`` (AstroMLab-1: ``index``, no answers; Astro-QA: ``id``, ``answer``) load.
A row without the text it is matched by (see :func:`load_questions`) is skipped and reported, never
fatal to the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corpus.arxiv_ids import find_arxiv_stamp, is_content_id, normalise_id
from corpus.curate import text as T

OPTIONS = ("A", "B", "C", "D")


class QuestionFileError(ValueError):
    """A question file cannot be read; the message names the file, the row and the problem."""


class ContaminationConfigError(ValueError):
    """The decontamination index would match nothing (no usable questions): a misconfiguration."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    options: dict[str, str]
    answer: str | None = None
    source: str = ""


def _rows(path: Path, skipped: list[str]) -> list:
    """The rows of a question file; a JSONL line that is not JSON is left out with a line in ``skipped``."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".jsonl", ".csv", ".parquet"):
        raise QuestionFileError(f"{path}: unknown question file type {suffix!r} (use .json, .jsonl, .csv or .parquet)")
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first key
        if suffix == ".csv":
            import csv
            import io

            return list(csv.DictReader(io.StringIO(text, newline="")))
        if suffix == ".jsonl":
            rows = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        skipped.append(f"{path}:{n}: not valid JSON: {e}")
                        rows.append(None)  # keeps the row numbers of the lines after it
            return rows
        else:
            data = json.loads(text)
            if isinstance(data, dict):
                lists = [v for v in data.values() if isinstance(v, list)]
                if len(lists) != 1:
                    raise QuestionFileError(f"{path}: expected a JSON array of questions")
                data = lists[0]
            if not isinstance(data, list):
                raise QuestionFileError(f"{path}: expected a JSON array of questions, got {type(data).__name__}")
            return data
    except QuestionFileError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise QuestionFileError(f"{path}: cannot read questions: {e}") from e
    except Exception as e:  # noqa: BLE001 - e.g. pyarrow errors on a corrupt Parquet file
        raise QuestionFileError(f"{path}: cannot read questions: {e}") from e


def _text(value) -> str:
    """A cell as text: strings stripped, numbers written out, anything else (None, lists) empty."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def _question(row, n: int, path: Path, seen: set[str]) -> Question | str:
    """Row ``n`` as a :class:`Question`, or why it cannot be used."""
    if not isinstance(row, Mapping):
        return "not an object"
    row = {str(k).strip().lower(): v for k, v in row.items()}  # 'Question', ' A ' -> 'question', 'a'
    question = _text(row.get("question"))
    if not question:
        return "no question text"
    options = {k: _text(row.get(k.lower())) for k in OPTIONS}
    qid = next((row[k] for k in ("id", "index") if row.get(k) not in (None, "")), None)  # a CSV's blank cell is ""
    qid = str(qid) if qid is not None else f"{path.stem}:{n}"
    if qid in seen:
        return f"question id {qid!r} appears twice"
    answer = row.get("answer")
    if answer is not None and str(answer).strip():
        answer = str(answer).strip().upper().rstrip(".)")
        if answer not in OPTIONS:
            return f"(id {qid}) answer {row.get('answer')!r} is not one of A-D"
        if not options[answer]:
            return f"(id {qid}) no text in column {answer!r}, its answer"
    else:
        answer = None
        if not any(options.values()):
            return f"(id {qid}) no text in any of the columns {list(OPTIONS)}"
    seen.add(qid)
    return Question(qid, question, options, answer, str(path))


def load_questions(path: str | os.PathLike, skipped: list[str] | None = None) -> list[Question]:
    """Questions from a JSON/JSONL/Parquet file (see module docstring).

    Only the text a question is matched by must be there: the question and, with an answer key,
    the correct option (without one, at least one option). A row that lacks it, is not JSON or
    repeats an id is left out, with one line saying why appended to ``skipped`` when given.
    Raises :class:`QuestionFileError` for a file that cannot be read or has no usable row.
    """
    path = Path(path)
    skipped = skipped if skipped is not None else []
    before = len(skipped)
    rows = _rows(path, skipped)
    out, seen = [], set()
    for n, row in enumerate(rows, 1):
        if row is None:  # a JSONL line already reported
            continue
        q = _question(row, n, path, seen)
        if isinstance(q, str):
            skipped.append(f"{path}: row {n} {q}")
        else:
            out.append(q)
    if not out:
        why = "; ".join(skipped[before:before + 3])
        raise QuestionFileError(f"{path}: no questions" + (f" usable ({len(rows)} rows; {why})" if rows else ""))
    return out


def question_sequences(q: Question) -> list[str]:
    """The texts whose n-grams mark contamination by ``q`` (question + correct option, or + each/all)."""
    if q.answer is not None:
        return [f"{q.question} {q.options[q.answer]}"]
    return [f"{q.question} {q.options[k]}" for k in OPTIONS] + [" ".join([q.question, *q.options.values()])]


@dataclass(frozen=True)
class Match:
    """A document overlaps a question: its id, the overlapping words, their word offset in the doc."""

    question_id: str
    ngram: str
    position: int

    def detail(self) -> dict:
        return {"question_id": self.question_id, "ngram": self.ngram, "word_offset": self.position}


class NgramIndex:
    """Benchmark n-grams, for :meth:`find_overlap` over documents.

    ``n`` is the n-gram size (13); sequences of ``min_words`` to ``n - 1`` words are matched whole.
    Shorter questions are left out (listed in ``skipped``). An index with no n-grams raises
    :class:`ContaminationConfigError`.
    """

    def __init__(self, questions: Iterable[Question], n: int = 13, min_words: int = 8):
        if not 1 <= min_words <= n:
            raise ValueError(f"need 1 <= min_words ({min_words}) <= n ({n})")
        self.n, self.min_words = n, min_words
        self.skipped: list[str] = []
        self.n_questions = 0
        entries: dict[int, dict[int, list[tuple[str, tuple[bytes, ...]]]]] = {}
        for q in questions:
            self.n_questions += 1
            used = False
            for seq in question_sequences(q):
                ws = T.words(seq)
                if len(ws) < min_words:
                    continue
                length = min(n, len(ws))
                hashes = T.ngram_hashes(T.word_hashes(ws), length)
                table = entries.setdefault(length, {})
                for pos, h in enumerate(hashes.tolist()):
                    item = (q.id, tuple(ws[pos : pos + length]))
                    bucket = table.setdefault(h, [])
                    if item not in bucket:
                        bucket.append(item)
                used = True
            if not used:
                self.skipped.append(q.id)
        if not entries:
            raise ContaminationConfigError(
                f"none of the {self.n_questions} benchmark questions has {min_words} or more words: "
                "the decontamination index would match nothing")
        self._tables = entries
        self._keys = {length: np.array(sorted(t), dtype=np.uint64) for length, t in entries.items()}

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def find_all(self, text: str) -> list[Match]:
        """Every (question, position) overlap in ``text``, by position."""
        ws = T.words(text)
        wh = T.word_hashes(ws)
        found: list[Match] = []
        for length, keys in self._keys.items():
            if len(ws) < length:
                continue
            hashes = T.ngram_hashes(wh, length)
            hit_pos = np.flatnonzero(np.isin(hashes, keys, assume_unique=False))
            table = self._tables[length]
            for pos in hit_pos.tolist():
                gram = tuple(ws[pos : pos + length])
                for qid, words in table.get(int(hashes[pos]), ()):
                    if words == gram:
                        found.append(Match(qid, b" ".join(gram).decode("utf-8", "replace"), pos))
        found.sort(key=lambda m: (m.position, m.question_id))
        return found

    def find_overlap(self, text: str) -> Match | None:
        """The first overlap in ``text`` (lowest word offset), or ``None``."""
        matches = self.find_all(text)
        return matches[0] if matches else None

    def check(self, text: str) -> tuple[bool, str | None, dict]:
        """``(keep, reason, detail)``: ``reason="benchmark_overlap"`` with the question id and n-gram."""
        matches = self.find_all(text)
        if not matches:
            return True, None, {}
        detail = matches[0].detail()
        detail["n_questions"] = len({m.question_id for m in matches})
        return False, "benchmark_overlap", detail


def load_index(paths: Sequence[str | os.PathLike], n: int = 13, min_words: int = 8,
               skipped: list[str] | None = None) -> NgramIndex:
    """An :class:`NgramIndex` over every question of these files (ids prefixed by the file stem when
    two files share an id); rows left out are reported in ``skipped`` (see :func:`load_questions`)."""
    questions: list[Question] = []
    ids: set[str] = set()
    for p in paths:
        for q in load_questions(p, skipped):
            if q.id in ids:
                q = Question(f"{Path(p).stem}:{q.id}", q.question, q.options, q.answer, q.source)
            ids.add(q.id)
            questions.append(q)
    if not questions:
        raise ContaminationConfigError("no benchmark question files given")
    return NgramIndex(questions, n, min_words)


# ------------------------------------------------------------------------------------------ by source

ARAA_JOURNAL_REF = (
    r"\bARA\s*&\s*A\b",
    r"\bann(?:u(?:al)?)?\.?\s*rev(?:iew)?s?\.?\s*(?:of\s+)?astron(?:omy)?\.?\s*(?:(?:and|&)\s*)?astrophys",
)
ARAA_DOI_PREFIXES = ("10.1146/annurev-astro", "10.1146/annurev.astro", "10.1146/annurev.aa")
#: What an Annual Review prints on its own first page and running heads, and a paper citing one does
#: not: its copyright line, the journal name followed by the year (citations put the year before the
#: journal, or the volume after it), its DOI, the publisher's web address.
ARAA_TEXT = (
    r"(?:copyright|©|\(c\))\s*(?:©\s*)?(?:19|20)\d\d\s+by\s+annual\s+reviews",
    r"\bannu(?:al)?\.?\s*rev(?:iew)?\.?\s*(?:of\s+)?astron(?:omy)?\.?\s*(?:and\s+|&\s*)?astrophys(?:ics)?\.?\s*(?:19|20)\d\d\b",
    r"\b10\.1146/annurev[-.](?:astro|aa)\b",
    r"\bwww\.annualreviews\.org\b",
)
FRONT_CHARS = 5000  # the front matter searched: the first page, and at least this many characters

_ARXIV_VERSION = re.compile(r"v\d+$")
_DOI_URL = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:)", re.IGNORECASE)
ARXIV_DOI_PREFIX = "10.48550/arxiv."  # arXiv's own DOIs: 10.48550/arXiv.2201.01234


def front_matter(text: str, pages: Sequence[Mapping] | None = None) -> str:
    """The start of a document where a paper says what it is: its first page (PDF documents), and at
    least the first ``FRONT_CHARS`` characters; never the reference list of a long paper."""
    first_page_end = pages[0]["end"] if pages else 0
    return text[: max(FRONT_CHARS, first_page_end)]


def normalize_arxiv_id(arxiv_id: str) -> str:
    """The canonical id without version (``astro-ph0701001v2``, ``arXiv:0704.0001v1`` -> ``astro-ph/0701001``,
    ``0704.0001``), through the ingest's parser; anything it cannot read is only stripped of a version."""
    try:
        return normalise_id(arxiv_id.strip())
    except ValueError:
        s = arxiv_id.strip()
        return _ARXIV_VERSION.sub("", s[6:] if s.lower().startswith("arxiv:") else s)


def normalize_doi(doi: str) -> str:
    return _DOI_URL.sub("", doi.strip()).lower()


@dataclass(frozen=True)
class SourceExclusion:
    """Drop papers by source. Defaults: the Annual Review of Astronomy and Astrophysics (by journal
    reference and DOI prefix), as the reference recipe did; pass empty tuples to exclude nothing."""

    journal_ref_patterns: tuple[str, ...] = field(
        default=ARAA_JOURNAL_REF, metadata={"help": "case-insensitive regexes searched in journal_ref"})
    doi_prefixes: tuple[str, ...] = field(default=ARAA_DOI_PREFIXES, metadata={"help": "DOI prefixes to exclude"})
    dois: frozenset[str] = field(default=frozenset(), metadata={"help": "DOIs to exclude"})
    arxiv_ids: frozenset[str] = field(default=frozenset(), metadata={"help": "arXiv ids to exclude (any version)"})
    text_patterns: tuple[str, ...] = field(
        default=ARAA_TEXT, metadata={"help": "case-insensitive regexes searched in a document's front matter"})

    def __post_init__(self):
        object.__setattr__(self, "_patterns", _compile(self.journal_ref_patterns, "journal_ref"))
        object.__setattr__(self, "_text_patterns", _compile(self.text_patterns, "text"))
        object.__setattr__(self, "dois", frozenset(normalize_doi(d) for d in self.dois))
        object.__setattr__(self, "arxiv_ids", frozenset(normalize_arxiv_id(a) for a in self.arxiv_ids))
        object.__setattr__(self, "doi_prefixes", tuple(normalize_doi(d) for d in self.doi_prefixes))

    @classmethod
    def from_lists(cls, dois_file: str | os.PathLike | None = None, arxiv_ids_file: str | os.PathLike | None = None,
                   **kwargs) -> SourceExclusion:
        """Read DOIs / arXiv ids from text files, one per line (``#`` comments and blanks ignored)."""
        def read(p):
            if p is None:
                return frozenset()
            try:
                lines = Path(p).read_text(encoding="utf-8").splitlines()
            except OSError as e:
                raise ValueError(f"{p}: cannot read exclusion list: {e}") from e
            return frozenset(ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip())
        return cls(dois=read(dois_file), arxiv_ids=read(arxiv_ids_file), **kwargs)

    def excluded(self, paper: Mapping, front: str = "") -> str | None:
        """The reason ``paper`` is excluded, or None.

        ``paper`` is a ``paper`` row (``paper_id``, ``doi``, ``journal_ref``, ``flags``); ``front`` the
        front matter of its text (:func:`front_matter`). The id lists apply to every id the paper is
        known by (:func:`known_ids`); the journal is recognised by its journal reference, its DOI, or
        its own words in the front matter, so a paper without metadata is caught too.
        """
        arxiv_ids, dois = known_ids(paper, front)
        for a in sorted(arxiv_ids & self.arxiv_ids):
            return f"excluded_arxiv_id:{a}"
        for d in sorted(dois):
            if d in self.dois:
                return f"excluded_doi:{d}"
            for prefix in self.doi_prefixes:
                if d.startswith(prefix):
                    return f"excluded_doi_prefix:{prefix}"
        ref = paper.get("journal_ref")
        if ref:
            for pat in self._patterns:  # type: ignore[attr-defined]
                if pat.search(str(ref)):
                    return f"excluded_journal_ref:{pat.pattern}"
        for pat in self._text_patterns:  # type: ignore[attr-defined]
            if pat.search(front):
                return f"excluded_text:{pat.pattern}"
        return None


def _compile(patterns: Sequence[str], what: str) -> list[re.Pattern]:
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p, re.IGNORECASE))
        except re.error as e:
            raise ValueError(f"SourceExclusion: {what} pattern {p!r} is not a valid regex: {e}") from e
    return compiled


def known_ids(paper: Mapping, front: str = "") -> tuple[set[str], set[str]]:
    """Every arXiv id and DOI a paper is known by: its ``paper_id`` (unless a content hash), the
    ``arxiv_id:`` flags ingest gives a paper without metadata, its DOI, arXiv's stamp in the front
    matter of its text (:func:`corpus.arxiv_ids.find_arxiv_stamp`), and each arXiv id's arXiv DOI
    (``10.48550/arxiv.<id>``) and back."""
    arxiv_ids: set[str] = set()
    pid = paper.get("paper_id")
    if pid and not is_content_id(str(pid)):
        arxiv_ids.add(normalize_arxiv_id(str(pid)))
    arxiv_ids |= {normalize_arxiv_id(f.split(":", 1)[1]) for f in paper.get("flags") or () if f.startswith("arxiv_id:")}
    if stamp := find_arxiv_stamp(front):
        arxiv_ids.add(stamp[0])
    dois = {normalize_doi(str(paper["doi"]))} if paper.get("doi") else set()
    arxiv_ids |= {normalize_arxiv_id(d[len(ARXIV_DOI_PREFIX):]) for d in dois if d.startswith(ARXIV_DOI_PREFIX)}
    dois |= {ARXIV_DOI_PREFIX + a.lower() for a in arxiv_ids}
    return arxiv_ids, dois
