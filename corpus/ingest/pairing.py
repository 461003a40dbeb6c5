"""Which PDF and which LaTeX source are one paper, when their file names do not say so.

Files are joined by the arXiv id in their names first (``Ingest.prepare``). What is left over is
paired here, reading as little as possible:

* **The arXiv stamp.** arXiv prints ``arXiv:2201.01234v2 [astro-ph.SR] 4 Jan 2022`` (old style
  ``arXiv:astro-ph/0701001v2 26 Jan 2007``) up the left margin of page 1 of every PDF it serves.
  :func:`first_page` reads page 1's text of a PDF whose name holds no id, and
  :func:`corpus.arxiv_ids.find_arxiv_stamp` finds the stamp in it: the PDF is then that arXiv paper.
* **The title.** A source's ``\\title{...}`` (:func:`source_title`, from the ``.tex`` file with the
  ``\\documentclass``, else any ``.tex`` file of the bundle) is looked for at the top of page 1 of
  each unpaired PDF (:func:`pair_by_title`). Both sides are reduced to lower-case letters and
  digits (:func:`title_key`: accents, spaces, punctuation, math delimiters and command names go), so
  line breaks, hyphenation and small-caps do not matter; a title pairs with a PDF when at least 90%
  of its characters appear in order in one stretch of page 1 a little longer than the title. Two
  files that both carry an arXiv id (different ones) are never paired by title.
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

from corpus.archives import ArchiveError, unpack_source
from corpus.files import SourceError, open_input
from corpus.ingest.sources import SourceFile

PAGE_CHARS = 6000  # of page 1's text: the title is at the top, after at most a journal header
MIN_TITLE_CHARS = 16  # shorter titles ("Introduction", "Erratum") pair nothing by title
COVERAGE = 0.9  # share of the title's characters that must be found, in order
GRAM = 8  # characters per shingle of the candidate search


@dataclass(frozen=True)
class FirstPage:
    """Page 1 of a PDF: its text (the first ``PAGE_CHARS``) and the PDF metadata's title."""

    text: str
    metadata_title: str


def first_page(url: str, storage_options: dict | None = None) -> FirstPage | None:
    """Page 1's text and metadata title of the PDF at ``url``; ``None`` when it cannot be read
    (extraction records the problem later). Only page 1 is extracted."""
    import pymupdf

    try:
        with open_input(url, storage_options) as f:
            doc = pymupdf.open(stream=f.read(), filetype="pdf")
        with doc:
            text = doc[0].get_text()[:PAGE_CHARS] if doc.page_count else ""
            return FirstPage(text, ((doc.metadata or {}).get("title") or "").strip())
    except Exception:  # noqa: BLE001 - a corrupt PDF is extract's business, not pairing's
        return None


# ------------------------------------------------------------------------------------ source titles

_COMMENT = re.compile(r"(?<!\\)%[^\n]*")
_TITLE = re.compile(r"\\title\s*(?:\[[^\]]*\]\s*)?\{")
_DOCUMENTCLASS = re.compile(r"\\document(?:class|style)\b")
_DROPPED_WITH_ARGUMENT = re.compile(r"\\(?:footnote|thanks|tnoteref|altaffilmark|label|footnotemark)\*?\s*(?:\[[^\]]*\])?\s*\{")


def _group(text: str, start: int) -> str | None:
    """The text of the brace group that starts just after ``start`` (its ``{`` is at ``start - 1``)."""
    depth, i = 1, start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        depth += (c == "{") - (c == "}")
        if depth == 0:
            return text[start:i]
        i += 1
    return None


def _title_in(tex: str) -> str | None:
    m = _TITLE.search(tex)
    return _group(tex, m.end()) if m else None


def _tex_title(folder: Path) -> str | None:
    """The ``\\title`` of the ``.tex`` files under ``folder``: files with ``\\documentclass`` first."""
    texts = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in (".tex", ".ltx") and p.is_file() and not p.is_symlink():
            texts.append(_COMMENT.sub("", p.read_bytes()[:2_000_000].decode("utf-8", "replace")))
    texts.sort(key=lambda t: _DOCUMENTCLASS.search(t) is None)
    for tex in texts:
        title = _title_in(tex)
        if title and title_key(title, latex=True):
            return title
    return None


def source_title(sf: SourceFile, storage_options: dict | None = None) -> str | None:
    """The LaTeX ``\\title`` of a source (folder, tar, gzipped or plain TeX), or ``None``. Bundles
    are unpacked into a temporary folder with :func:`corpus.archives.unpack_source` (its limits)."""
    if sf.is_dir:
        return _tex_title(Path(sf.url))
    try:
        with tempfile.TemporaryDirectory(prefix="sagecorpus-title-") as tmp, open_input(sf.url, storage_options) as f:
            unpack_source(f, tmp, name=sf.name)
            return _tex_title(Path(tmp))
    except (ArchiveError, SourceError, OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------ matching


def title_key(text: str, latex: bool = False) -> str:
    """``text`` as lower-case ASCII letters and digits only. With ``latex``, footnotes and labels
    go with their arguments and command names are dropped (their arguments kept)."""
    if latex:
        while m := _DROPPED_WITH_ARGUMENT.search(text):
            inner = _group(text, m.end())
            text = text[: m.start()] + ("" if inner is None else text[m.end() + len(inner) + 1:])
        text = re.sub(r"\\[A-Za-z@]+\*?|\\.", " ", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]", "", text)


def title_coverage(title: str, page: str) -> float:
    """Share of ``title``'s characters found in order in one stretch of ``page`` (both keys)."""
    if not title:
        return 0.0
    anchor = SequenceMatcher(None, title, page, autojunk=False).find_longest_match(0, len(title), 0, len(page))
    if anchor.size == 0:
        return 0.0
    slack = len(title) // 4
    lo = max(0, anchor.b - anchor.a - slack)
    window = page[lo: anchor.b - anchor.a + len(title) + slack]
    blocks = SequenceMatcher(None, title, window, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks) / len(title)


def _grams(key: str) -> set[str]:
    return {key[i:i + GRAM] for i in range(len(key) - GRAM + 1)}


def pair_by_title(titles: dict[str, str], pages: dict[str, str], ids: dict[str, str | None]) -> list[tuple[str, str, float]]:
    """Pairs ``(pdf, source, coverage)`` of PDFs (``pages``: name -> page-1 text) and sources
    (``titles``: name -> LaTeX title) that are one paper; each file is in at most one pair.

    ``ids`` gives each name's arXiv id (or None): two files with ids are never paired. The best
    pairs are taken first: highest coverage, then the longest title (an erratum's page quotes the
    original title, but its own is longer), then by name, so the result is deterministic.
    """
    keys = {s: k for s, t in titles.items() if len(k := title_key(t, latex=True)) >= MIN_TITLE_CHARS}
    index: dict[str, list[str]] = {}
    for src, key in sorted(keys.items()):
        for g in _grams(key):
            index.setdefault(g, []).append(src)
    candidates = []
    for pdf, text in sorted(pages.items()):
        page = title_key(text)
        hits = Counter(src for g in _grams(page) for src in index.get(g, ()))
        for src, n in hits.items():
            if ids.get(pdf) and ids.get(src):
                continue
            if n >= len(_grams(keys[src])) / 3 and (cov := title_coverage(keys[src], page)) >= COVERAGE:
                candidates.append((-cov, -len(keys[src]), pdf, src))
    pairs, used = [], set()
    for neg_cov, _, pdf, src in sorted(candidates):
        if pdf not in used and src not in used:
            used |= {pdf, src}
            pairs.append((pdf, src, -neg_cov))
    return pairs
