"""Nougat on the pages routed to it, batched across the papers of a window, replayed on rebuild.

:class:`OcrRunner` takes documents whose PDF pages were routed (``ExtractedDocument.routes``),
looks each routed page up in the stored results of an earlier run (``ocr_pages.parquet``, keyed by
the PDF's sha256, the page, the weights' fingerprint and the generation parameters), sends the rest
to one :class:`~corpus.extract.nougat.NougatOCR` (loaded once per process, rendering ahead on CPU
workers, batches across papers), and re-assembles each document's pages. It returns the per-page
rows to store, so a later ``rebuild`` replays them instead of running the model.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from pathlib import Path

from corpus.extract.document import ExtractedDocument, assemble, read_bytes
from corpus.extract.nougat import NougatConfig, NougatOCR, PageOCRResult, model_fingerprint
from schemas import OCR_PAGE, iter_rows

# fields of NougatConfig that change what the model writes (not where or how fast it runs)
OUTPUT_FIELDS = (
    "max_new_tokens", "num_beams", "render_oversample", "retry_no_repeat_ngram_size", "retry_repetition_penalty",
    "loop_max_score", "loop_tail_repeats", "postprocess", "fix_markdown", "clean", "min_text_chars", "dtype",
)


def params_sha256(config: NougatConfig) -> str:
    params = {k: getattr(config, k) for k in OUTPUT_FIELDS}
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def generation_params(config: NougatConfig) -> dict:
    return {k: getattr(config, k) for k in OUTPUT_FIELDS} | {"batch_size": config.batch_size, "device": config.device}


class OcrRunner:
    """Runs (or replays) Nougat for the routed pages of a window of documents."""

    def __init__(self, config: NougatConfig | None, replay: list[str | Path] = (), storage_options: dict | None = None):
        self.config = config
        self.storage_options = storage_options or {}
        self._ocr: NougatOCR | None = None
        self.fingerprint = model_fingerprint(config.model_dir) if config else None
        self.params = params_sha256(config) if config else None
        self.cache: dict[tuple[str, int], dict] = {}
        for path in replay:
            if Path(path).exists():
                for row in iter_rows(path, OCR_PAGE):
                    if row["model_sha256"] == self.fingerprint["sha256"] and row["params_sha256"] == self.params:
                        self.cache[(row["pdf_sha256"] or row["paper_id"], row["page"])] = row

    def model_record(self) -> dict | None:
        """What the manifest records about the model: id, weights hash, licence, generation parameters."""
        if self.config is None:
            return None
        return {"stage": "extract", "role": "ocr", "model_id": self.fingerprint["model_id"],
                "sha256": self.fingerprint["sha256"], "license": self.fingerprint["license"],
                "parameters": generation_params(self.config)}

    def _model(self) -> NougatOCR:
        if self._ocr is None:
            self._ocr = NougatOCR(self.config)
        return self._ocr

    def apply(self, items: list[tuple[str, ExtractedDocument]]) -> tuple[list[dict], Counter]:
        """OCR the routed pages of ``(paper_id, document)`` items in place; return OCR_PAGE rows and counters."""
        stats: Counter = Counter()
        routed = [(pid, doc) for pid, doc in items if any(r.use_ocr for r in doc.routes)]
        for _, doc in items:
            stats["pages"] += len(doc.routes)
            stats["pages.routed"] += sum(r.use_ocr for r in doc.routes)
            stats.update(f"routed.{r.reason}" for r in doc.routes if r.use_ocr)
        if self.config is None or not routed:
            return [], stats
        results: dict[tuple[int, int], PageOCRResult] = {}
        todo = []
        for i, (pid, doc) in enumerate(routed):
            for r in doc.routes:
                if not r.use_ocr:
                    continue
                row = self.cache.get((doc.input_sha256 or pid, r.page))
                if row is not None:
                    results[(i, r.page)] = PageOCRResult((i, r.page), row["text"], row["status"], row["reason"],
                                                         row["tokens"], row["retried"], tuple(row["flags"]))
                    stats["pages.replayed"] += 1
                else:
                    todo.append((i, r.page))
        if todo:
            results.update(self._run(routed, todo))
            stats["pages.model"] += len(todo)
        rows = []
        for i, (pid, doc) in enumerate(routed):
            by_page = {page: res for (j, page), res in results.items() if j == i}
            assemble(doc, by_page)
            for page, res in sorted(by_page.items()):
                stats[f"ocr.{res.status}"] += 1
                rows.append({
                    "paper_id": pid, "page": page, "pdf_sha256": doc.input_sha256,
                    "model_sha256": self.fingerprint["sha256"], "params_sha256": self.params,
                    "status": res.status, "reason": res.reason, "text": res.text, "tokens": int(res.tokens),
                    "retried": bool(res.retried), "flags": list(res.flags),
                })
        return rows, stats

    def _run(self, routed: list[tuple[str, ExtractedDocument]], todo: list[tuple[int, int]]) -> dict:
        """Render and transcribe pages; PDFs behind URLs are copied to a temporary folder first."""
        from corpus.extract.nougat import PageRequest

        with tempfile.TemporaryDirectory(prefix="sagecorpus-ocr-") as tmp:
            local: dict[int, str] = {}
            for i, _ in sorted(set(todo)):
                if i in local:
                    continue
                pdf = routed[i][1].pdf
                if Path(pdf).is_file():
                    local[i] = pdf
                else:
                    path = Path(tmp) / f"{i}.pdf"
                    path.write_bytes(read_bytes(pdf, self.storage_options))
                    local[i] = str(path)
            requests = [PageRequest(local[i], page - 1, (i, page)) for i, page in todo]
            return {res.key: res for res in self._model().ocr_pages(requests)}
