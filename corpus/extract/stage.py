"""The ``extract`` stage: ``papers.parquet`` in, one ``Document`` row per paper out.

Per paper, the LaTeX source when present and converted, else the PDF's text layer page by page
(:func:`corpus.extract.document.extract_paper`); the row says which and why. Pages without a usable
text layer are flagged in ``pages`` for OCR. A paper that yields no text still gets its row (text
null, extractor ``none``) and a ``failed`` decision naming the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, model_validator

from corpus.extract.document import ExtractedDocument, ExtractOptions, extract_paper
from corpus.extract.latex import LatexConfig
from corpus.extract.nougat import NougatConfig
from corpus.extract.ocr import OUTPUT_FIELDS, OcrRunner, model_record
from corpus.extract.pdf import PdfExtractConfig
from corpus.archives import ArchiveLimits
from corpus.run.stage import OUT, Stage, StageConfig, how_field, path_field, register_stage
from schemas import DOCUMENT, OCR_PAGE, PAPER, iter_rows

PAPER_COLUMNS = ["paper_id", "source_path", "source_kind", "source_sha256", "pdf_path", "pdf_sha256"]


class ExtractConfig(StageConfig):
    papers: str = path_field(f"{OUT}/papers.parquet", "the papers table written by ingest")
    prefer: Literal["latex", "pdf"] = Field("latex", description="latex: source when it converts, else PDF; pdf: PDF when there is one")
    min_latex_chars: int = Field(500, ge=0, description="LaTeX output shorter than this falls back to the PDF")
    latex: LatexConfig = Field(default_factory=LatexConfig, description="LaTeX conversion options")
    pdf: PdfExtractConfig = Field(default_factory=PdfExtractConfig, description="PDF text-layer options (time limit, citations, OCR routing thresholds in pdf.routing)")
    limits: ArchiveLimits = Field(default_factory=ArchiveLimits, description="bounds on unpacking one source bundle")
    storage_options: dict[str, Any] = how_field(default_factory=dict, description=(
        "fsspec options (credentials, anon, endpoint...) passed to every open of a remote path this step "
        "reads: the papers' PDFs and source bundles, for the text layer and for OCR (s3://arxiv/ also gets "
        "requester_pays=True unless set here); recorded in the manifest only with every value replaced "
        "by <redacted>"))
    ocr_policy: Literal["never", "auto", "always"] = Field(
        "auto", description="PDF pages sent to Nougat: never, auto (empty, garbled, scanned, math glyph soup, bad glyphs) or always")
    ocr_model: str | None = path_field(
        None, "folder of Nougat weights (e.g. facebook/nougat-small saved locally); none: routed pages are recorded, not OCRed")
    nougat: dict[str, Any] = Field(default_factory=dict, description="Nougat runtime: device, dtype, batch_size, max_new_tokens, ... (corpus.extract.nougat.NougatConfig)")
    ocr_window: int = how_field(64, "papers whose routed pages are batched together for the model", ge=1)

    @model_validator(mode="after")
    def _check_nougat(self):
        NougatConfig(model_dir=self.ocr_model or ".", **self.nougat)  # unknown or invalid settings fail here
        return self


@register_stage
class Extract(Stage):
    name = "extract"
    config_class = ExtractConfig
    description = "Extract each paper's text: LaTeX source when it converts, else the PDF text layer per page."

    def outputs(self):
        ocr = {"ocr_pages.parquet": OCR_PAGE} if self.config.ocr_model else {}
        return {"documents.parquet": DOCUMENT, **ocr, **super().outputs()}

    @property
    def gpus_per_task(self) -> int:  # one GPU per task when Nougat runs on CUDA
        return 1 if self.config.ocr_model and str(self.config.nougat.get("device", "cpu")).startswith("cuda") else 0

    def what_config(self) -> dict:
        """Of the Nougat runtime settings, only those that change what the model writes (not device,
        batch size or render workers) are part of the step's identity."""
        config = super().what_config()
        config["nougat"] = {k: v for k, v in config["nougat"].items() if k in OUTPUT_FIELDS}
        return config

    def requirements(self) -> dict[str, str]:
        """Nougat needs the ``ocr`` extra when a model is configured."""
        if not self.config.ocr_model:
            return {}
        return {"torch": "ocr", "transformers": "ocr", "PIL": "ocr", "Levenshtein": "ocr"}

    def nougat_config(self) -> NougatConfig | None:
        return NougatConfig(model_dir=self.config.ocr_model, **self.config.nougat) if self.config.ocr_model else None

    def models(self) -> list[dict]:
        return [model_record(self.nougat_config())] if self.config.ocr_model else []

    def options(self) -> ExtractOptions:
        c = self.config
        return ExtractOptions(c.prefer, c.min_latex_chars, c.latex, c.pdf, c.limits, c.storage_options,
                              c.ocr_policy, self.nougat_config())

    def plan(self) -> list[dict]:
        return list(iter_rows(self.path(self.config.papers), PAPER, columns=PAPER_COLUMNS))

    def process(self, items: list[dict]) -> Iterator[tuple[str, list[dict]]]:
        """Extract the shard's papers window by window; the routed pages of a window are OCRed together,
        each page kept in the stage's store (``{out}/_store/extract``) as it is done. A rebuild only
        replays the original run's pages: one it did not store stops the run (``ReplayMiss``)."""
        options = self.options()
        with self.store(replay_only=True) as store:
            runner = OcrRunner(self.nougat_config(), store, self.config.storage_options)
            for start in range(0, len(items), self.config.ocr_window):
                window = items[start:start + self.config.ocr_window]
                docs = [(p["paper_id"], self._extract(p, options)) for p in window]
                ocr_rows, ocr_stats = runner.apply(docs)  # batches the routed pages of the whole window
                if self.config.ocr_model:
                    yield "ocr_pages.parquet", ocr_rows
                for name, value in ocr_stats.items():
                    self.stat_update(name, value=value)
                for paper, (_, doc) in zip(window, docs):
                    yield from self._rows(paper, doc)

    @staticmethod
    def _extract(paper: dict, options: ExtractOptions) -> ExtractedDocument:
        try:
            return extract_paper(paper["source_path"], paper["source_kind"], paper["pdf_path"],
                                 pdf_sha256=paper["pdf_sha256"], source_sha256=paper["source_sha256"], options=options)
        except Exception as e:  # a library failure or a bug on one paper must not stop a corpus run
            where = paper["pdf_path"] or paper["source_path"]
            return ExtractedDocument(None, "none", f"error:{type(e).__name__}", notes=[f"{where}: {type(e).__name__}: {e}"])

    def _rows(self, paper: dict, doc) -> Iterator[tuple[str, list[dict]]]:
        yield "documents.parquet", [{
            "paper_id": paper["paper_id"], "text": doc.text, "extractor": doc.extractor, "reason": doc.reason,
            "n_pages": doc.n_pages, "n_chars": len(doc.text or ""), "pages": doc.pages, "input_sha256": doc.input_sha256,
        }]
        routed = [r.page for r in doc.routes if r.use_ocr]
        yield self.decisions_file, [self.decision(
            paper["paper_id"], "failed" if doc.failed else "kept",
            doc.reason if doc.failed else f"{doc.extractor}:{doc.reason}",
            score=float(len(doc.text or "")), notes=doc.notes[:20], pages_routed_to_ocr=routed,
            latex_files=doc.latex_files,
        )]
        self.stat_update(f"extractor.{doc.extractor}")
        for page in doc.pages:  # counted page flags: bad_glyphs_removed:<n>, toc_removed:<n>, ...
            for flag in page["flags"]:
                name, _, n = flag.partition(":")
                if n.isdigit():
                    self.stat_update(f"pages.{name}", value=int(n))
