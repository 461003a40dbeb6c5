"""One paper's files in, one document out: LaTeX source when it converts, else the PDF text layer.

:func:`extract_paper` is the per-paper logic that the ``extract`` stage runs over a corpus and
``sagecorpus text`` runs on one file. It knows nothing of datasets or executors; it reads the files
(local paths or fsspec URLs, tar members included), and never raises for a bad paper: the result
says which extractor produced the text and why, or why there is none.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path


from corpus.extract.latex import LatexConfig, LatexError, convert_source
from corpus.extract.nougat import NougatConfig
from corpus.extract.pdf import PdfError, PdfExtractConfig, PdfPage, extract_pdf
from corpus.extract.routing import (
    Policy,
    RouteDecision,
    document_extractor,
    document_pages,
    merge_pages,
    route_pages,
)
from corpus.archives import ArchiveError, ArchiveLimits, unpack_source
from corpus.files import is_url, open_input

#: source kinds that hold LaTeX
LATEX_KINDS = ("tar", "gzip_tex", "tex", "folder")


@dataclass
class ExtractOptions:
    """How one paper is extracted (the stage's config carries the same fields)."""

    prefer: str = "latex"
    """``latex``: use the source when it converts, else the PDF; ``pdf``: the PDF when there is one."""
    min_latex_chars: int = 500
    """LaTeX output shorter than this (a stub, a cover letter) falls back to the PDF."""
    latex: LatexConfig = field(default_factory=LatexConfig)
    pdf: PdfExtractConfig = field(default_factory=PdfExtractConfig)
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    storage_options: dict = field(default_factory=dict)
    ocr_policy: Policy = "auto"
    """which PDF pages go to Nougat: never, auto (empty, garbled, scanned, glyph soup) or always"""
    nougat: NougatConfig | None = None
    """the model; None routes and records pages without running it (they keep their text layer)"""
    tex_file_folder: bool = False
    """A local ``.tex`` source is read in its folder, as TeX would: the ``\\input`` files, ``.bbl``
    beside it are used, the file itself is the main file (``sagecorpus text main.tex``). Off for the
    extract stage, whose single-file sources may share a folder with other papers' files."""


@dataclass
class ExtractedDocument:
    """The text of one paper and where each part of it came from."""

    text: str | None
    extractor: str  # latex, pdf or none
    reason: str
    n_pages: int = 0
    pages: list[dict] = field(default_factory=list)  # rows of schemas.PAGE
    input_sha256: str | None = None
    notes: list[str] = field(default_factory=list)  # fallbacks, refused members, converter remarks
    latex_files: list[str] = field(default_factory=list)
    pdf: str | None = None  # the PDF the pages came from
    pdf_pages: list[PdfPage] = field(default_factory=list)  # its text layer, page by page
    routes: list[RouteDecision] = field(default_factory=list)  # which pages go to OCR, and why
    base_reason: str = ""  # why the PDF path was taken (before OCR)

    @property
    def failed(self) -> bool:
        return self.text is None


def read_bytes(url: str, storage_options: dict | None = None) -> bytes:
    """The bytes of one input file (a missing file, a FIFO or a folder raises ``SourceError``)."""
    with open_input(url, storage_options) as f:
        return f.read()


def extract_latex(source: str, kind: str, options: ExtractOptions) -> tuple[str, list[str], list[str]]:
    """Unpack a source bundle safely into a temporary folder and convert it.

    Returns (text, files used, notes); raises ``LatexError`` or ``ArchiveError``. With
    ``options.tex_file_folder`` a local ``.tex`` file is converted where it lies, in its folder.
    """
    if kind == "tex" and options.tex_file_folder and not is_url(source) and Path(source).is_file():
        text, tree = convert_source(source, options.latex)
        return text, tree.files_used, tree.problems
    with tempfile.TemporaryDirectory(prefix="sagecorpus-src-") as tmp:
        if kind == "folder" and Path(source).is_dir():
            unpacked = unpack_source(source, tmp, options.limits)
        else:
            name = source.rsplit("/", 1)[-1]
            unpacked = unpack_source(read_bytes(source, options.storage_options), tmp, options.limits, name=name)
        notes = [f"refused member {m.name}: {m.reason}" for m in unpacked.refused]
        if unpacked.kind not in LATEX_KINDS:
            raise LatexError(source, "not_latex", f"source is {unpacked.kind}")
        text, tree = convert_source(unpacked.dest, options.latex)
        return text, tree.files_used, notes + tree.problems


def extract_paper(
    source: str | None = None, source_kind: str | None = None, pdf: str | None = None,
    pdf_sha256: str | None = None, source_sha256: str | None = None, options: ExtractOptions | None = None,
) -> ExtractedDocument:
    """Extract one paper from its LaTeX source and/or PDF (paths or fsspec URLs)."""
    options = options or ExtractOptions()
    notes: list[str] = []
    fallback = "no_latex_source" if source is None else f"source_is_{source_kind}"
    use_latex = source is not None and source_kind in LATEX_KINDS and (options.prefer == "latex" or pdf is None)
    if use_latex:
        try:
            text, files, latex_notes = extract_latex(source, source_kind, options)
            notes += latex_notes
            if len(text) >= options.min_latex_chars or pdf is None:
                return ExtractedDocument(text, "latex", "latex_source", input_sha256=source_sha256,
                                         notes=notes, latex_files=files)
            fallback = "latex_too_short"
            notes.append(f"latex output has {len(text)} characters (< {options.min_latex_chars}); used the PDF")
        except (LatexError, ArchiveError) as e:
            fallback = f"latex_failed:{e.reason}"
            notes.append(f"latex conversion failed, used the PDF: {e}")
        except OSError as e:
            fallback = "latex_unreadable"
            notes.append(f"latex source unreadable, used the PDF: {source}: {e}")
    elif source is not None and source_kind in LATEX_KINDS:
        fallback = "pdf_preferred"
    if pdf is None:
        reason = fallback if source is not None else "no_files"
        return ExtractedDocument(None, "none", reason, notes=notes)
    try:
        data = read_bytes(pdf, options.storage_options)
        result = extract_pdf(data, options.pdf, name=pdf)
    except PdfError as e:
        notes.append(str(e))
        return ExtractedDocument(None, "none", f"pdf_failed:{e.reason}", input_sha256=pdf_sha256, notes=notes)
    except OSError as e:
        notes.append(f"{pdf}: unreadable: {e}")
        return ExtractedDocument(None, "none", "pdf_unreadable", input_sha256=pdf_sha256, notes=notes)
    doc = ExtractedDocument(None, "none", fallback, n_pages=result.n_pages, input_sha256=pdf_sha256, notes=notes,
                            pdf=pdf, pdf_pages=result.pages, base_reason=fallback)
    doc.routes = route_pages(result.pages, options.ocr_policy, options.pdf.routing)
    return assemble(doc, {})


def assemble(doc: ExtractedDocument, ocr_by_page: dict) -> ExtractedDocument:
    """Set a PDF document's text and page rows from its text layer, routes and OCR results.

    Pages routed to OCR with no result yet keep their text layer, recorded as a fallback.
    """
    merged = merge_pages(doc.pdf_pages, doc.routes, ocr_by_page)
    text, doc.pages = document_pages(merged)
    doc.extractor, why = document_extractor(merged)
    doc.text = text if doc.extractor != "none" else None
    doc.reason = doc.base_reason if doc.extractor == "pdf" else f"{doc.base_reason}; {why}"
    return doc
