"""The text layer of a PDF, page by page, with PyMuPDF.

``extract_pdf(path)`` returns one :class:`PdfPage` per page: the page's text in reading order
(two-column layouts read left column, then right column), with ligatures expanded, words hyphenated at
line ends rejoined, and running headers, footers and page numbers removed; plus measured signals that
tell whether the page's text layer is usable or the page must go to OCR (``needs_ocr``):

* ``empty`` - no usable text and no image (``chars < config.empty_chars``);
* ``image_only`` - little or no text over a page mostly covered by images (a scan without OCR layer);
* ``garbled`` - the text layer is not language (broken font encoding, replacement glyphs), measured by
  :func:`corpus.extract.text_quality.garbled_score`;

and, not routing by themselves, ``scanned`` (a text layer over a full-page image: an old OCR layer) and
``math_dense`` (many math glyphs: dense equations, possibly "glyph soup"), with the numbers behind
them (``image_coverage``, ``math_glyph_fraction``) so a router can make its own call.

Bad input raises :class:`PdfError` naming the file and a short ``reason``: ``not_pdf``, ``corrupt``,
``encrypted``, ``zero_pages``, ``timeout``. A page that MuPDF cannot read is not fatal: it comes back
flagged ``error`` with ``needs_ocr`` set (only a file whose every page fails is ``corrupt``).

Time limit: ``config.time_limit_s`` is checked between pages, and, when called in the main thread of
a POSIX process (as a worker process of a pool is), also enforced by ``SIGALRM``: Python runs the
handler as soon as the current MuPDF call returns, so a single pathological page can overrun the
limit by its own parse time, but the file cannot continue past it. Outside the main thread only the
between-page check applies. Either way the result is ``PdfError(reason="timeout")``.

Pure per-item logic: nothing here knows about datasets, executors or progress bars.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pymupdf

from corpus.extract.text_quality import text_signals

EXTRACTOR = "pymupdf"

_LIGATURES = str.maketrans(
    {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"}
)
# MuPDF flags: no TEXT_PRESERVE_LIGATURES (MuPDF expands them), no TEXT_DEHYPHENATE (we decide per
# word), images kept as blocks so their area can be measured without a second pass over the page.
_TEXT_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP | pymupdf.TEXT_PRESERVE_IMAGES
_LIGATURE_CHARS = re.compile("[\ufb00-\ufb06]")
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"[ \t\u00a0]+")
_PAGE_NUMBER = re.compile(r"^\s*(?:page\s+)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:/|of)\s*\d{1,4})?\s*$", re.I)


class PdfError(Exception):
    """A PDF that cannot be extracted. ``reason`` is short and machine-readable, ``path`` names the file."""

    REASONS = ("not_pdf", "corrupt", "encrypted", "zero_pages", "timeout", "unreadable")

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path = path
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):  # survives pickling, so a worker process can hand it back as a result
        return (type(self), (self.path, self.reason, self.detail))


@dataclass
class PdfExtractConfig:
    """How :func:`extract_pdf` reads a PDF and when it sends a page to OCR."""

    garbled_threshold: float = 0.5
    """A page whose garbled score is at least this needs OCR. Born-digital fixture pages with 300+
    characters score <= 0.28 (prose <= 0.08); the same pages with letters permuted or shifted (a broken
    font encoding) score 0.8-1.0 (see corpus/extract/text_quality.py)."""
    empty_chars: int = 20
    """A page with fewer non-space characters than this has no usable text layer."""
    image_only_coverage: float = 0.5
    """A page with (almost) no text whose images cover at least this fraction of it is ``image_only``."""
    image_only_chars: int = 200
    """"Almost no text" for ``image_only``: fewer non-space characters than this."""
    scanned_coverage: float = 0.85
    """A page with text over images covering at least this fraction is flagged ``scanned``."""
    math_dense_fraction: float = 0.2
    """Flag ``math_dense`` at this fraction of math glyphs (born-digital math pages reach ~0.1)."""
    time_limit_s: float | None = 120.0
    """Per-file limit (seconds); ``None`` for none. See the module docstring for how it is enforced."""
    remove_headers: bool = True
    """Remove running headers/footers (repeated margin lines) and page numbers."""
    margin_fraction: float = 0.12
    """Top and bottom bands (fraction of page height) where headers, footers and page numbers live."""
    header_min_pages: int = 3
    """A margin block counts as running header/footer when (digits ignored) it repeats on this many pages
    (or on every page of a document shorter than this, if that is at least 2 pages)."""
    reading_order: bool = True
    """Order text blocks by columns (left column, then right) instead of the PDF's content order."""
    dehyphenate: bool = True
    """Rejoin words hyphenated at line ends (keeping the hyphen where the document writes the
    compound with one elsewhere, e.g. ``two-\\ncolumn`` when ``two-column`` occurs inline)."""


@dataclass
class PdfPage:
    """One page's text layer and the signals that route it."""

    page: int
    """1-based page number"""
    text: str
    chars: int
    """non-space characters of ``text``"""
    garbled: float
    """0..1, 1 = empty or unusable (see text_quality.garbled_score)"""
    flags: list[str] = field(default_factory=list)
    """e.g. empty, image_only, garbled, scanned, math_dense, header_removed, page_number_removed, error"""
    needs_ocr: bool = False
    reason: str | None = None
    """why ``needs_ocr`` (the first routing flag), else None"""
    image_coverage: float = 0.0
    """fraction of the page area covered by images (0..1)"""
    math_glyph_fraction: float = 0.0
    nonword_fraction: float = 0.0
    bad_char_fraction: float = 0.0


@dataclass
class PdfResult:
    path: str
    n_pages: int
    pages: list[PdfPage]
    metadata: dict[str, str]
    """non-empty PDF metadata fields: title, author, subject, keywords, creator, producer, ..."""
    first_line: str | None
    """first non-empty line of the extracted text (a title guess when metadata has none)"""

    @property
    def text(self) -> str:
        return join_pages(self.pages)[0]

    def pages_needing_ocr(self) -> list[int]:
        return [p.page for p in self.pages if p.needs_ocr]


def join_pages(pages: Sequence[PdfPage], sep: str = "\n\n") -> tuple[str, list[tuple[int, int]]]:
    """The document text and each page's ``[start, end)`` offsets into it (empty pages get start == end)."""
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    pos = 0
    for i, p in enumerate(pages):
        if i and parts and p.text:
            parts.append(sep)
            pos += len(sep)
        parts.append(p.text)
        offsets.append((pos, pos + len(p.text)))
        pos += len(p.text)
    return "".join(parts), offsets


def page_rows(result: PdfResult, extractor: str = EXTRACTOR) -> tuple[str, list[dict]]:
    """Document text plus ``pages`` rows in the shape of ``schemas.tables.PAGE``."""
    text, offsets = join_pages(result.pages)
    rows = [
        {
            "page": p.page, "extractor": extractor, "start": s, "end": e, "chars": p.chars,
            "garbled": p.garbled, "reason": p.reason, "flags": list(p.flags),
        }
        for p, (s, e) in zip(result.pages, offsets)
    ]
    return text, rows


# ----------------------------------------------------------------------------------------------------
# opening


def _open(source: str | Path | bytes, name: str) -> pymupdf.Document:
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:1024])
    else:
        try:
            with open(source, "rb") as fh:
                head = fh.read(1024)
        except OSError as e:
            raise PdfError(name, "unreadable", e.strerror or str(e)) from e
    if not head:
        raise PdfError(name, "not_pdf", "empty file")
    if b"%PDF-" not in head:
        raise PdfError(name, "not_pdf", f"no %PDF- header; starts with {head[:16]!r}")
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            doc = pymupdf.open(stream=bytes(source), filetype="pdf")
        else:
            doc = pymupdf.open(str(source), filetype="pdf")
    except Exception as e:  # MuPDF raises FileDataError / RuntimeError with its own message
        raise PdfError(name, "corrupt", str(e)) from e
    if doc.needs_pass:
        doc.close()
        raise PdfError(name, "encrypted", "a password is needed to open it")
    if doc.page_count == 0:
        doc.close()
        raise PdfError(name, "zero_pages", "the document has no pages")
    return doc


# ----------------------------------------------------------------------------------------------------
# layout


@dataclass
class _Block:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str


def _order_blocks(blocks: list[_Block], width: float) -> list[_Block]:
    """Reading order: full-width blocks split the page into bands; in each band, left column then right.

    A block belongs to the left column when it ends left of the page's middle (plus a small
    tolerance), to the right column when it starts right of it, else it spans both. Within a column,
    the PDF's own order is kept where it already runs top to bottom (LaTeX writes each column in
    order), so only a layout that is out of order gets reordered.
    """
    if len(blocks) < 2:
        return blocks
    mid = width / 2
    tol = width * 0.03
    kind = []
    for b in blocks:
        if b.x1 <= mid + tol:
            kind.append(0)
        elif b.x0 >= mid - tol:
            kind.append(1)
        else:
            kind.append(2)
    if 0 not in kind or 1 not in kind:  # single column: the PDF's own order
        return blocks
    out: list[_Block] = []
    spans = sorted((b for b, k in zip(blocks, kind) if k == 2), key=lambda b: b.y0)
    cols = [[b for b, k in zip(blocks, kind) if k == c] for c in (0, 1)]
    cuts = [b.y0 for b in spans] + [float("inf")]
    prev = float("-inf")
    si = 0
    for cut in cuts:
        for col in cols:
            band = [b for b in col if prev <= (b.y0 + b.y1) / 2 < cut]
            out.extend(band if _mostly_top_down(band) else sorted(band, key=lambda b: (round(b.y0), b.x0)))
        if si < len(spans):
            out.append(spans[si])
            prev = spans[si].y0
            si += 1
    return out


def _mostly_top_down(blocks: list[_Block]) -> bool:
    """Whether the PDF's own order of these blocks (one column) already runs down the page.

    Equations and figure labels jump up and down a little (sub/superscripts, stacked fractions); a
    stream written in another order (a column's blocks drawn bottom first) jumps up a lot.
    """
    ups = sum(1 for a, b in zip(blocks, blocks[1:]) if b.y1 < a.y0 - 2)
    return ups <= max(1, len(blocks) // 5)


def _block_text(raw: str) -> str:
    """Lines of a block joined by newlines, whitespace normalised (hyphen breaks resolved later)."""
    if "  " in raw or "\t" in raw or "\xa0" in raw:
        raw = _SPACES.sub(" ", raw)
    lines = [ln.strip() for ln in raw.split("\n")]
    return "\n".join(ln for ln in lines if ln)


def _margin_key(text: str) -> str:
    return _DIGITS.sub("#", " ".join(text.lower().split()))


@dataclass
class _RawPage:
    number: int
    width: float
    height: float
    blocks: list[_Block]
    image_coverage: float
    error: str | None = None


def _read_page(page: pymupdf.Page) -> _RawPage:
    # text coordinates are those of the unrotated page, origin at the cropbox's top left: a landscape
    # (/Rotate 90) page keeps its running head at the top of the cropbox, not of page.rect
    w, h = max(page.cropbox.width, 1.0), max(page.cropbox.height, 1.0)
    tp = page.get_textpage(flags=_TEXT_FLAGS)
    blocks: list[_Block] = []
    img_area = 0.0
    for x0, y0, x1, y1, txt, _no, btype in tp.extractBLOCKS():
        if btype == 1:
            cx0, cy0 = max(x0, 0.0), max(y0, 0.0)
            cx1, cy1 = min(x1, w), min(y1, h)
            if cx1 > cx0 and cy1 > cy0:
                img_area += (cx1 - cx0) * (cy1 - cy0)
            continue
        t = _block_text(txt)
        if t:
            blocks.append(_Block(x0, y0, x1, y1, t))
    return _RawPage(page.number + 1, w, h, blocks, min(1.0, img_area / (w * h)))


def _strip_margins(pages: list[_RawPage], cfg: PdfExtractConfig) -> dict[int, list[str]]:
    """Remove running headers/footers and page numbers in place; returns the flags per page."""
    flags: dict[int, list[str]] = {p.number: [] for p in pages}
    if not cfg.remove_headers:
        return flags

    def in_margin(p: _RawPage, b: _Block) -> bool:
        band = cfg.margin_fraction * p.height
        return b.y1 <= band or b.y0 >= p.height - band

    counts: Counter[str] = Counter()
    for p in pages:
        counts.update({_margin_key(b.text) for b in p.blocks if in_margin(p, b)})
    n = len(pages)
    need = cfg.header_min_pages if n >= cfg.header_min_pages else max(2, n)
    for p in pages:
        keep = []
        for b in p.blocks:
            if in_margin(p, b):
                if _PAGE_NUMBER.match(b.text):
                    flags[p.number].append("page_number_removed")
                    continue
                if n >= 2 and counts[_margin_key(b.text)] >= need:
                    flags[p.number].append("header_removed")
                    continue
            keep.append(b)
        p.blocks = keep
    return {k: sorted(set(v)) for k, v in flags.items()}


_PUNCT = "\"'“”‘’`.,;:!?()[]{}<>«»–—/*"
_TRAILING_WORD = re.compile(r"[^\W\d_]+$")
_LEADING_WORD = re.compile(r"[^\W\d_]+")


def _dehyphenate(texts: list[str]) -> list[str]:
    """Resolve ``left-\nright`` line breaks, using the document itself as the dictionary.

    Joined (``left`` + ``right``) when the joined word occurs elsewhere in the document; hyphen kept
    (``left-right``) when the compound is written with a hyphen elsewhere; otherwise joined when
    ``right`` starts lower-case (``cal-\nculating``) and hyphen kept when it starts upper-case
    (``non-\nGaussian``), unless both halves are upper-case (``LEG-\nWORK``).
    """
    if not any("-\n" in t for t in texts):
        return texts
    words: set[str] = set()
    compounds: set[tuple[str, str]] = set()
    for t in texts:
        for tok in t.lower().split():
            tok = tok.strip(_PUNCT)
            words.add(tok)
            if "-" in tok:
                parts = tok.split("-")
                compounds.update(zip(parts, parts[1:]))

    def decide(left: str, right: str) -> bool:
        """True: join without the hyphen."""
        ll, rl = left.lower(), right.lower()
        if ll + rl in words:
            return True
        if (ll, rl) in compounds:
            return False
        return right[0].islower() or (left.isupper() and right.isupper())

    out = []
    for t in texts:
        pieces = t.split("-\n")
        if len(pieces) == 1:
            out.append(t)
            continue
        buf = [pieces[0]]
        for nxt in pieces[1:]:
            prev = buf[-1]
            lm = _TRAILING_WORD.search(prev[-64:])
            rm = _LEADING_WORD.match(nxt)
            if lm is None or rm is None:  # "1-\n2", "x -\n": not a hyphenated word, keep as it was
                buf.append("-\n" + nxt)
            elif decide(lm.group(0), rm.group(0)):
                buf.append(nxt)
            else:
                buf.append("-" + nxt)
        out.append("".join(buf))
    return out


def _flow(text: str) -> str:
    """Join the remaining line breaks inside a block into spaces (blocks stay separated by blank lines)."""
    return "\n\n".join(" ".join(b.split("\n")) for b in text.split("\n\n"))


# ----------------------------------------------------------------------------------------------------
# the entry point


class _Alarm:
    """SIGALRM-based hard limit, active only in the main thread of a POSIX process."""

    def __init__(self, seconds: float | None, name: str):
        self.seconds = seconds
        self.name = name
        self.active = False
        self.armed = False

    def _handler(self, signum, frame):
        if self.armed:  # never raise while the alarm is being disarmed
            raise PdfError(self.name, "timeout", f"time limit {self.seconds:g}s exceeded")

    def __enter__(self):
        if (
            self.seconds
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0  # never clobber a caller's timer
        ):
            self.active = True
            self.armed = True
            self.previous = signal.signal(signal.SIGALRM, self._handler)
            try:
                signal.setitimer(signal.ITIMER_REAL, self.seconds)
            except BaseException:  # a tiny limit can fire before __enter__ returns: restore, re-raise
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc):
        self.armed = False
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
        return False


def extract_pdf(
    source: str | Path | bytes,
    config: PdfExtractConfig | None = None,
    *,
    name: str | None = None,
    pages: Iterable[int] | None = None,
) -> PdfResult:
    """Extract the text layer of a PDF page by page; raises :class:`PdfError` for a bad file.

    ``source`` is a path or the file's bytes (then ``name`` names it in errors; default ``<bytes>``).
    ``pages`` restricts extraction to these 1-based page numbers (running headers are still detected
    on the pages read, so give a range of at least a few pages).
    """
    cfg = config or PdfExtractConfig()
    label = name or (str(source) if not isinstance(source, (bytes, bytearray, memoryview)) else "<bytes>")
    start = time.monotonic()
    with _Alarm(cfg.time_limit_s, label):
        doc = _open(source, label)
        try:
            wanted = range(1, doc.page_count + 1) if pages is None else sorted(set(pages))
            raw: list[_RawPage] = []
            for number in wanted:
                if not 1 <= number <= doc.page_count:
                    raise ValueError(f"{label}: page {number} out of range 1..{doc.page_count}")
                if cfg.time_limit_s is not None and time.monotonic() - start > cfg.time_limit_s:
                    raise PdfError(label, "timeout", f"time limit {cfg.time_limit_s:g}s exceeded at page {number}")
                try:
                    raw.append(_read_page(doc[number - 1]))
                except PdfError:
                    raise
                except Exception as e:  # one unreadable page is a page-level failure, not a file-level one
                    raw.append(_RawPage(number, 1.0, 1.0, [], 0.0, error=f"{type(e).__name__}: {e}"))
            if raw and all(p.error for p in raw):
                raise PdfError(label, "corrupt", f"no page could be read ({raw[0].error})")
            metadata = {k: str(v).strip() for k, v in (doc.metadata or {}).items() if v and str(v).strip()}
            n_pages = doc.page_count
        finally:
            doc.close()

        margin_flags = _strip_margins(raw, cfg)
        texts = []
        for p in raw:
            blocks = _order_blocks(p.blocks, p.width) if cfg.reading_order else p.blocks
            text = "\n\n".join(b.text for b in blocks)
            if _LIGATURE_CHARS.search(text):  # MuPDF expands most; fonts mapping to U+FB0x keep them
                text = text.translate(_LIGATURES)
            texts.append(text)
        if cfg.dehyphenate:
            _join_page_hyphens(texts, [p.number for p in raw])
            texts = _dehyphenate(texts)
        texts = [_flow(t) for t in texts]
        out = [_page(p, t, margin_flags[p.number], cfg) for p, t in zip(raw, texts)]

    first_line = next((ln.strip() for p in out for ln in p.text.split("\n") if ln.strip()), None)
    return PdfResult(label, n_pages, out, metadata, first_line)


def _join_page_hyphens(texts: list[str], numbers: list[int]) -> None:
    """A word hyphenated across a page break moves whole onto the earlier page (offsets stay per page)."""
    for i in range(len(texts) - 1):
        if numbers[i + 1] != numbers[i] + 1:
            continue
        a, b = texts[i], texts[i + 1]
        m = re.search(r"[^\W\d_]-$", a)
        n = re.match(r"[a-zß-ÿ][^\W\d_]*[.,;:]?", b)
        if m and n:
            texts[i] = a + "\n" + n.group(0)  # becomes "-\n" + fragment: dehyphenated like a line break
            texts[i + 1] = b[n.end() :].lstrip()


def _page(p: _RawPage, text: str, margin_flags: list[str], cfg: PdfExtractConfig) -> PdfPage:
    if p.error:
        return PdfPage(p.number, "", 0, 1.0, ["error"], True, f"error: {p.error}")
    s = text_signals(text)
    flags: list[str] = []
    if s.chars < cfg.empty_chars:
        flags.append("image_only" if p.image_coverage >= cfg.image_only_coverage else "empty")
    elif s.chars < cfg.image_only_chars and p.image_coverage >= cfg.image_only_coverage:
        flags.append("image_only")
    elif s.garbled >= cfg.garbled_threshold:
        flags.append("garbled")
    routing = flags[0] if flags else None
    if s.chars and p.image_coverage >= cfg.scanned_coverage:
        flags.append("scanned")
    if s.math_glyph_fraction >= cfg.math_dense_fraction:
        flags.append("math_dense")
    flags.extend(margin_flags)
    return PdfPage(
        page=p.number, text=text, chars=s.chars, garbled=round(s.garbled, 4), flags=flags,
        needs_ocr=routing is not None, reason=routing, image_coverage=round(p.image_coverage, 4),
        math_glyph_fraction=round(s.math_glyph_fraction, 4), nonword_fraction=round(s.nonword_fraction, 4),
        bad_char_fraction=round(s.bad_char_fraction, 4),
    )
