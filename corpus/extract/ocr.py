"""Nougat on the pages routed to it, batched across the papers of a window, each page kept in the store.

:class:`OcrRunner` takes documents whose PDF pages were routed (``ExtractedDocument.routes``),
looks each routed page up in the stage's per-item store (:mod:`corpus.run.item_store`, keyed by
the PDF's sha256 or the paper id, the page, the weights' sha256 and the generation parameters'
sha256), sends the rest to one :class:`~corpus.extract.nougat.NougatOCR` (loaded once per process,
rendering ahead on CPU workers, batches across papers) and puts each page in the store the moment
it is transcribed, so a killed run does not redo the pages it finished and ``rebuild`` replays the
original run's store without the model. It re-assembles each document's pages and returns the
per-page rows of ``ocr_pages.parquet``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from corpus.extract.document import ExtractedDocument, assemble, read_bytes
from corpus.extract.nougat import NougatConfig, NougatOCR, PageOCRResult, model_fingerprint
from corpus.run.item_store import ItemStore, request_key
from corpus.run.stage import per_process

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


def model_record(config: NougatConfig) -> dict:
    """What the manifest records about the OCR model: id, weights hash, licence, generation parameters."""
    fingerprint = model_fingerprint(config.model_dir)
    return {"stage": "extract", "role": "ocr", "model_id": fingerprint["model_id"], "sha256": fingerprint["sha256"],
            "license": fingerprint["license"], "parameters": generation_params(config)}


class OcrRunner:
    """Runs Nougat for the routed pages of a window of documents, or takes them from ``store``.

    ``config`` None: routed pages are counted, not transcribed.
    """

    def __init__(self, config: NougatConfig | None, store: ItemStore, storage_options: dict | None = None):
        self.config = config
        self.store = store
        self.storage_options = storage_options or {}
        self._ocr: NougatOCR | None = None
        self.model_sha256 = model_fingerprint(config.model_dir)["sha256"] if config else None
        self.params = params_sha256(config) if config else None

    def page_key(self, pdf: str, page: int) -> str:
        """The store key of one page: the PDF (sha256, else paper id), the page, the weights, the parameters."""
        return request_key(kind="nougat-page", pdf=pdf, page=page, model_sha256=self.model_sha256, params_sha256=self.params)

    def _model(self) -> NougatOCR:
        """The model, loaded once per worker process (every shard the process runs shares it)."""
        if self._ocr is None:
            key = "nougat:" + json.dumps(dataclasses.asdict(self.config), sort_keys=True, default=str)
            self._ocr = per_process(key, lambda: NougatOCR(self.config))
        return self._ocr

    def apply(self, items: list[tuple[str, ExtractedDocument]]) -> tuple[list[dict], Counter]:
        """OCR the routed pages of ``(paper_id, document)`` items in place; return OCR_PAGE rows and counters.

        Raises :class:`~corpus.run.item_store.ReplayMiss` when the store is replay-only and a page is not in it.
        """
        stats: Counter = Counter()
        routed = [(pid, doc) for pid, doc in items if any(r.use_ocr for r in doc.routes)]
        for _, doc in items:
            stats["pages"] += len(doc.routes)
            stats["pages.routed"] += sum(r.use_ocr for r in doc.routes)
            stats.update(f"routed.{r.reason}" for r in doc.routes if r.use_ocr)
        if self.config is None or not routed:
            return [], stats
        keys = {(i, r.page): self.page_key(doc.input_sha256 or pid, r.page)
                for i, (pid, doc) in enumerate(routed) for r in doc.routes if r.use_ocr}
        stored, _ = self.store.lookup(keys.values(), what="OCR page")
        todo = [where for where, key in keys.items() if key not in stored]
        for res in self._run(routed, todo) if todo else ():
            stored[keys[res.key]] = self.store.put(keys[res.key], _page_value(res))  # kept the moment it is transcribed
        stats["pages.model"] += len(todo)
        stats["pages.replayed"] += len(keys) - len(todo)
        rows = []
        for i, (pid, doc) in enumerate(routed):
            by_page = {page: _page_result((j, page), stored[key]) for (j, page), key in keys.items() if j == i}
            assemble(doc, by_page)
            for page, res in sorted(by_page.items()):
                stats[f"ocr.{res.status}"] += 1
                rows.append({
                    "paper_id": pid, "page": page, "pdf_sha256": doc.input_sha256,
                    "model_sha256": self.model_sha256, "params_sha256": self.params,
                    "status": res.status, "reason": res.reason, "text": res.text, "tokens": int(res.tokens),
                    "retried": bool(res.retried), "flags": list(res.flags),
                })
        return rows, stats

    def _run(self, routed: list[tuple[str, ExtractedDocument]], todo: list[tuple[int, int]]) -> Iterator[PageOCRResult]:
        """Render and transcribe pages, yielding each result as the model gives it; PDFs behind URLs
        are copied to a temporary folder first."""
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
            yield from self._model().ocr_pages(requests)


def _page_value(res: PageOCRResult) -> dict:
    """What the store keeps of one transcribed page."""
    return {"text": res.text, "status": res.status, "reason": res.reason, "tokens": int(res.tokens),
            "retried": bool(res.retried), "flags": list(res.flags)}


def _page_result(key, value: dict) -> PageOCRResult:
    return PageOCRResult(key, value["text"], value["status"], value["reason"], value["tokens"], value["retried"],
                         tuple(value["flags"]))
