"""Read arXiv metadata in the Kaggle/Cornell snapshot format (``arxiv-metadata-oai-snapshot.json``).

The snapshot is JSON Lines, one object per paper::

    {"id": "0704.0009", "authors": "...", "title": "...", "categories": "astro-ph",
     "license": null, "doi": "10.1086/518646", "journal-ref": "Astrophys.J.663:1149-1173,2007",
     "abstract": "...", "versions": [{"version": "v1", "created": "Mon, 2 Apr 2007 19:41:34 GMT"}],
     "update_date": "...", "authors_parsed": [["Surname", "Given", ""], ...]}

``categories`` is a space-separated string, primary category first. unarXive records, which wrap
the same object in a ``metadata`` key, are read too.

:func:`read_metadata` streams the file (plain, ``.gz``, ``.bz2``, ``.xz``, ``.zst`` or ``.zip``;
local path or any fsspec URL) line by line and yields a :class:`MetadataRecord` for each paper that
passes a :class:`MetadataFilter`, and a :class:`MetadataError` (file, line number, reason) for each
line it cannot read; it never raises for one bad line. Pass it a ``filtered_out`` dict to learn which
ids the filter excluded and why (``"category"`` or ``"date"``): one short entry per id, no record kept.

Duplicates: the snapshot may list an id twice. One row per id is kept: the one with the most
versions, then the latest last-version date, then the later line. See ``dedup`` on
:func:`read_metadata` for how this stays memory-bounded.

Only lines that pass the category filter are validated in full; a line whose JSON is broken is
always reported, a well-formed record of another category is skipped without further checks.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import fsspec

from corpus.arxiv_ids import parse_arxiv_id, version_number

DEFAULT_CATEGORIES = ("astro-ph*", "gr-qc")


@dataclass
class MetadataFilter:
    """Which papers to keep.

    Attributes:
        categories: glob patterns matched case-sensitively against arXiv categories
            (``astro-ph*`` matches ``astro-ph`` and ``astro-ph.GA``). Empty list: keep every category.
        since: keep papers whose first version (v1) was submitted on or after this date.
        until: keep papers whose first version was submitted on or before this date (inclusive).
        include_cross_lists: when False, only the primary (first) category is matched; when True, a
            paper matches if any of its categories does.
    """

    categories: list[str] = field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    since: date | None = None
    until: date | None = None
    include_cross_lists: bool = True

    def matches_categories(self, categories: list[str]) -> bool:
        """True if the categories (primary first) pass the category patterns."""
        if not self.categories:
            return True
        candidates = categories if self.include_cross_lists else categories[:1]
        return any(fnmatch.fnmatchcase(c, pat) for c in candidates for pat in self.categories)

    def matches_date(self, submitted: date) -> bool:
        """True if a first-version date lies in ``[since, until]``."""
        return (self.since is None or submitted >= self.since) and (self.until is None or submitted <= self.until)


@dataclass(slots=True)
class MetadataRecord:
    """One paper at its latest version. Field names follow the ``paper`` table (schemas/tables.py).

    ``line`` is the 1-based line of the snapshot the record came from; ``comments`` is the author
    comment (page counts, journal status), kept for filters that want it.
    """

    paper_id: str
    version: str
    title: str | None
    authors: str | None
    first_author: str | None
    abstract: str | None
    categories: list[str]
    license: str | None
    doi: str | None
    journal_ref: str | None
    submitted: date
    updated: date
    versions: list[str]
    comments: str | None = None
    line: int = 0

    @property
    def primary_category(self) -> str | None:
        return self.categories[0] if self.categories else None

    def paper_row(self) -> dict[str, Any]:
        """The record as a ``paper`` table row, file columns empty (the ingest stage fills them)."""
        return {
            "paper_id": self.paper_id, "version": self.version, "title": self.title,
            "authors": self.authors, "first_author": self.first_author, "abstract": self.abstract,
            "categories": list(self.categories), "license": self.license, "doi": self.doi,
            "journal_ref": self.journal_ref, "submitted": self.submitted, "updated": self.updated,
            "versions": list(self.versions), "has_metadata": True,
            "source_path": None, "source_kind": None, "source_sha256": None,
            "pdf_path": None, "pdf_sha256": None, "flags": [],
        }


@dataclass(frozen=True, slots=True)
class MetadataError:
    """A line that could not be read: ``path`` (as given), 1-based ``line``, and why."""

    path: str
    line: int
    reason: str

    @property
    def item_id(self) -> str:
        """``'<path>:<line>'``, the ``item_id`` of a ``decision`` row."""
        return f"{self.path}:{self.line}"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class MetadataStats:
    """Counters filled in by :func:`read_metadata` as it reads (pass one in to get them)."""

    lines: int = 0
    blank: int = 0
    errors: int = 0
    parsed: int = 0
    matched: int = 0
    duplicates: int = 0
    yielded: int = 0


class RecordError(ValueError):
    """A metadata object that is valid JSON but not a usable arXiv record."""


_WS = re.compile(r"\s+")


def _clean(value: Any, field_name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"field {field_name!r} is {type(value).__name__}, expected a string")
    value = " ".join(value.split())
    return value or None


def _date(created: Any, what: str) -> date:
    if not isinstance(created, str):
        raise RecordError(f"{what} has no 'created' date")
    try:
        return parsedate_to_datetime(created).date()
    except (TypeError, ValueError) as e:
        raise RecordError(f"{what} has an unreadable date {created!r}") from e


def _first_author(obj: dict[str, Any], authors: str | None) -> str | None:
    parsed = obj.get("authors_parsed")
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], list) and parsed[0]:
        surname = parsed[0][0]
        if isinstance(surname, str) and surname.strip():
            return _WS.sub(" ", surname).strip()
    if not authors:
        return None
    # "C. Bal\'azs, E. L. Berger and P. M. Nadolsky" -> last word of the first name.
    first = re.split(r",| and ", authors, maxsplit=1)[0]
    first = re.sub(r"\(.*?\)", " ", first).split()
    return first[-1] if first else None


def parse_record(obj: Any, *, line: int = 0) -> MetadataRecord:
    """Turn one snapshot object (or an unarXive record with a ``metadata`` key) into a
    :class:`MetadataRecord` at its latest version. Raises :class:`RecordError` when it is not one."""
    obj = _unwrap(obj)
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, found {type(obj).__name__}")
    raw_id = obj.get("id")
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise RecordError("no 'id'")
    parsed = parse_arxiv_id(raw_id)
    if parsed is None:
        raise RecordError(f"'id' {raw_id!r} is not an arXiv identifier")
    paper_id = parsed[0]
    cats = obj.get("categories")
    if not isinstance(cats, str) or not cats.split():
        raise RecordError("no 'categories'")
    versions = obj.get("versions")
    if not isinstance(versions, list) or not versions:
        raise RecordError("no 'versions'")
    dated: list[tuple[int, str, date]] = []
    for v in versions:
        if not isinstance(v, dict) or not isinstance(v.get("version"), str):
            raise RecordError(f"malformed entry in 'versions': {v!r}"[:200])
        try:
            n = version_number(v["version"])
        except ValueError as e:
            raise RecordError(str(e)) from e
        dated.append((n, v["version"], _date(v.get("created"), f"version {v['version']}")))
    dated.sort()
    authors = _clean(obj.get("authors"), "authors")
    return MetadataRecord(
        paper_id=paper_id,
        version=dated[-1][1],
        title=_clean(obj.get("title"), "title"),
        authors=authors,
        first_author=_first_author(obj, authors),
        abstract=_clean(obj.get("abstract"), "abstract"),
        categories=list(dict.fromkeys(cats.split())),
        license=_clean(obj.get("license"), "license"),
        doi=_clean(obj.get("doi"), "doi"),
        journal_ref=_clean(obj.get("journal-ref"), "journal-ref"),
        submitted=dated[0][2],
        updated=dated[-1][2],
        versions=[v for _, v, _ in dated],
        comments=_clean(obj.get("comments"), "comments"),
        line=line,
    )


def _may_match(obj: Any, flt: MetadataFilter) -> bool:
    """Cheap category pre-check before the full parse: False only for a well-formed category
    string that fails the filter (such records are skipped without being validated further)."""
    obj = _unwrap(obj)
    cats = obj.get("categories") if isinstance(obj, dict) else None
    if not isinstance(cats, str) or not cats.split():
        return True  # let parse_record report what is wrong
    return flt.matches_categories(cats.split())


def _unwrap(obj: Any) -> Any:
    """The snapshot object itself (unarXive wraps it in a ``metadata`` key)."""
    if isinstance(obj, dict) and "id" not in obj and isinstance(obj.get("metadata"), dict):
        return obj["metadata"]
    return obj


def _raw_paper_id(obj: Any) -> str | None:
    """The canonical arXiv id of a snapshot object, without validating the rest of it."""
    raw = obj.get("id") if isinstance(obj, dict) else None
    parsed = parse_arxiv_id(raw) if isinstance(raw, str) else None
    return parsed[0] if parsed else None


def _rank(rec: MetadataRecord) -> tuple[int, date, int]:
    """Which of two rows for one id wins: most versions, then latest update, then later line."""
    return (version_number(rec.version), rec.updated, rec.line)


def _lines(path: str, storage_options: dict[str, Any] | None) -> Iterator[tuple[int, bytes]]:
    with fsspec.open(path, "rb", compression="infer", **(storage_options or {})) as f:
        for n, raw in enumerate(f, start=1):
            yield n, raw


def _parse_lines(
    path: str, flt: MetadataFilter, storage_options: dict[str, Any] | None, stats: MetadataStats,
    only_lines: set[int] | None = None, filtered_out: dict[str, str] | None = None,
) -> Iterator[MetadataRecord | MetadataError]:
    last = max(only_lines, default=0) if only_lines is not None else 0
    for n, raw in _lines(path, storage_options):
        if only_lines is not None:  # second pass: parse only the winning lines
            if n > last:
                return
            if n in only_lines:
                try:
                    yield parse_record(json.loads(raw), line=n)
                except (ValueError, RecordError) as e:  # the file changed between the passes
                    yield MetadataError(path, n, f"line changed between the two passes: {e}")
            continue
        stats.lines = n
        if not raw.strip():
            stats.blank += 1
            continue
        try:
            obj = json.loads(raw)
            if not _may_match(obj, flt):
                stats.parsed += 1
                pid = _raw_paper_id(_unwrap(obj))
                if filtered_out is not None and pid is not None:
                    filtered_out.setdefault(pid, "category")
                continue
            rec = parse_record(obj, line=n)
        except UnicodeDecodeError as e:
            stats.errors += 1
            yield MetadataError(path, n, f"not UTF-8: {e.reason} at byte {e.start}")
            continue
        except json.JSONDecodeError as e:
            stats.errors += 1
            yield MetadataError(path, n, f"invalid JSON: {e.msg} (column {e.colno})")
            continue
        except RecordError as e:
            stats.errors += 1
            yield MetadataError(path, n, str(e))
            continue
        stats.parsed += 1
        if flt.matches_categories(rec.categories) and flt.matches_date(rec.submitted):
            stats.matched += 1
            yield rec
        elif filtered_out is not None:
            filtered_out.setdefault(rec.paper_id, "category" if not flt.matches_categories(rec.categories) else "date")


def read_metadata(
    path: str,
    flt: MetadataFilter | None = None,
    *,
    dedup: Literal["two_pass", "memory", "none"] = "two_pass",
    storage_options: dict[str, Any] | None = None,
    stats: MetadataStats | None = None,
    filtered_out: dict[str, str] | None = None,
) -> Iterator[MetadataRecord | MetadataError]:
    """Stream a metadata snapshot, yielding matching records and per-line errors.

    Args:
        path: local path or fsspec URL; compression is inferred from the extension.
        flt: which papers to keep (default: ``astro-ph*`` and ``gr-qc``, cross-lists included).
        dedup: how to keep one row per id.

            * ``"two_pass"`` (default): the first pass keeps only ``id -> (rank, line number)`` for
              matching rows (tens of bytes each) and yields errors; the second pass re-reads the
              file and parses only the winning lines. Memory stays small for any file size; the
              file is read twice (for a remote URL that means downloading it twice; copy it
              locally first or use ``"memory"``).
            * ``"memory"``: keeps the winning :class:`MetadataRecord` of every *matching* id in a
              dict and yields them at the end (one read; memory grows with the matching rows,
              about 2-3 KB each, ~1 GB for all of astro-ph).
            * ``"none"``: yields every matching row as it is read; duplicates pass through.

            Records are yielded in file order of the line that won (``"memory"``: order of first
            appearance); errors come before records in the deduplicating modes.
        storage_options: passed to fsspec (credentials are never recorded or logged).
        stats: optional counters, updated as the file is read.
        filtered_out: optional dict, filled as the file is read with ``paper id -> "category"`` or
            ``"date"`` for every well-formed row the filter excluded (the first reason seen per id).
            An id may also be yielded when another of its rows matches.

    Yields:
        :class:`MetadataRecord` for each kept paper and :class:`MetadataError` for each bad line.
    """
    flt = flt or MetadataFilter()
    stats = stats if stats is not None else MetadataStats()
    path = str(path)
    if dedup == "none":
        for item in _parse_lines(path, flt, storage_options, stats, filtered_out=filtered_out):
            if isinstance(item, MetadataRecord):
                stats.yielded += 1
            yield item
        return
    if dedup not in ("two_pass", "memory"):
        raise ValueError(f"dedup must be 'two_pass', 'memory' or 'none', not {dedup!r}")
    best: dict[str, Any] = {}
    for item in _parse_lines(path, flt, storage_options, stats, filtered_out=filtered_out):
        if isinstance(item, MetadataError):
            yield item
            continue
        prev = best.get(item.paper_id)
        if prev is not None:
            stats.duplicates += 1
            prev_rank = prev if dedup == "two_pass" else _rank(prev)
            if _rank(item) <= prev_rank:
                continue
        best[item.paper_id] = _rank(item) if dedup == "two_pass" else item
    if dedup == "memory":
        for rec in best.values():
            stats.yielded += 1
            yield rec
        return
    winners = {rank[2] for rank in best.values()}
    del best
    for item in _parse_lines(path, flt, storage_options, MetadataStats(), only_lines=winners):
        if isinstance(item, MetadataRecord):
            stats.yielded += 1
        else:
            stats.errors += 1
        yield item
