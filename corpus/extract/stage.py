"""The ``extract`` stage: ``papers.parquet`` in, one ``Document`` row per paper out.

Per paper, the LaTeX source when present and converted, else the PDF's text layer page by page
(:func:`corpus.extract.document.extract_paper`); the row says which and why. Pages without a usable
text layer are flagged in ``pages`` for OCR. A paper that yields no text still gets its row (text
null, extractor ``none``) and a ``failed`` decision naming the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from corpus.extract.document import ExtractOptions, extract_paper
from corpus.extract.latex import LatexConfig
from corpus.extract.pdf import PdfExtractConfig
from corpus.ingest.archives import ArchiveLimits
from corpus.run.stage import Stage, StageConfig, path_field, register_stage
from schemas import DOCUMENT, PAPER, iter_rows

PAPER_COLUMNS = ["paper_id", "source_path", "source_kind", "source_sha256", "pdf_path", "pdf_sha256"]


class ExtractConfig(StageConfig):
    papers: str = path_field("{out}/papers.parquet", "the papers table written by ingest")
    prefer: Literal["latex", "pdf"] = Field("latex", description="latex: source when it converts, else PDF; pdf: PDF when there is one")
    min_latex_chars: int = Field(500, ge=0, description="LaTeX output shorter than this falls back to the PDF")
    latex: LatexConfig = Field(default_factory=LatexConfig, description="LaTeX conversion options")
    pdf: PdfExtractConfig = Field(default_factory=PdfExtractConfig, description="PDF text-layer options (time limit, OCR flags)")
    limits: ArchiveLimits = Field(default_factory=ArchiveLimits, description="bounds on unpacking one source bundle")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options (never recorded)")


@register_stage
class Extract(Stage):
    name = "extract"
    config_class = ExtractConfig
    description = "Extract each paper's text: LaTeX source when it converts, else the PDF text layer per page."

    def outputs(self):
        return {"documents.parquet": DOCUMENT, **super().outputs()}

    def input_files(self) -> list[str]:
        return [] if self.config.papers.startswith("{out}") else [self.config.papers]

    def options(self) -> ExtractOptions:
        c = self.config
        return ExtractOptions(c.prefer, c.min_latex_chars, c.latex, c.pdf, c.limits, c.storage_options)

    def plan(self) -> list[dict]:
        return list(iter_rows(self.path(self.config.papers), PAPER, columns=PAPER_COLUMNS))

    def process(self, items: list[dict]) -> Iterator[tuple[str, list[dict]]]:
        options = self.options()
        for paper in items:
            doc = extract_paper(
                paper["source_path"], paper["source_kind"], paper["pdf_path"],
                pdf_sha256=paper["pdf_sha256"], source_sha256=paper["source_sha256"], options=options,
            )
            yield "documents.parquet", [{
                "paper_id": paper["paper_id"], "text": doc.text, "extractor": doc.extractor, "reason": doc.reason,
                "n_pages": doc.n_pages, "n_chars": len(doc.text or ""), "pages": doc.pages,
                "input_sha256": doc.input_sha256,
            }]
            ocr_pages = [p["page"] for p in doc.pages if p["reason"]]
            yield "decisions/extract.parquet", [self.decision(
                paper["paper_id"], "failed" if doc.failed else "kept",
                doc.reason if doc.failed else f"{doc.extractor}:{doc.reason}",
                score=float(len(doc.text or "")), notes=doc.notes[:20], pages_flagged_for_ocr=ocr_pages,
                latex_files=doc.latex_files,
            )]
            yield "stats", [{f"extractor.{doc.extractor}": 1, "pages": doc.n_pages, "pages.flagged_for_ocr": len(ocr_pages)}]
