"""Nougat OCR: batched page transcription with the maintained ``transformers`` implementation.

The model is ``VisionEncoderDecoderModel`` + ``NougatProcessor`` loaded from a local folder
(``facebook/nougat-small`` / ``nougat-base`` saved with ``save_pretrained`` or a Hub-cache snapshot);
nothing here downloads. Output keeps Nougat's conventions: Markdown (``.mmd``-style) text with
LaTeX math, and ``[MISSING_PAGE_...]`` markers for pages it cannot read.

``NougatOCR.ocr_pages`` takes page requests from any number of papers, renders them ahead of the
model in worker processes (``corpus.extract.render.PrefetchRenderer``), batches them across papers
and yields one ``PageOCRResult`` per request, in request order. Nougat's known faults are caught
per page and reported as a status, never raised:

* repetition loop (the page hits ``max_new_tokens`` or its text repeats, ``repetition.is_looping``)
  -> retried once with a repetition guard (``no_repeat_ngram_size`` / ``repetition_penalty``);
  ``loop_retried_ok`` if that worked, else ``loop`` with no text (the caller keeps the text layer);
* ``[MISSING_PAGE_...]`` or empty output -> ``missing_page`` / ``empty`` with no text;
* GPU out-of-memory -> the batch is halved (and stays halved) and the run continues; a single page
  that still does not fit is ``oom``; any other model or render error for a page is ``error``.

The weights of the official checkpoints are CC-BY-NC 4.0 (``NOUGAT_LICENSE``); ``model_fingerprint``
(from ``corpus.model_files``, re-exported here) gives the model id, licence and weight hashes for
the run manifest and dataset cards.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from corpus.extract.render import PrefetchRenderer, RenderError
from corpus.model_files import KNOWN_LICENSES, ModelFolderError, model_fingerprint
from corpus.repetition import clean_repetitions, is_looping

__all__ = [
    "NOUGAT_LICENSE",
    "NougatConfig",
    "NougatModelError",
    "NougatOCR",
    "PageOCRResult",
    "PageRequest",
    "model_fingerprint",
]

log = logging.getLogger(__name__)

NOUGAT_LICENSE = KNOWN_LICENSES["facebook/nougat"]
"""Licence of the official facebook/nougat-* weights: record it wherever OCR output is published."""

Status = Literal["ok", "loop", "loop_retried_ok", "missing_page", "empty", "oom", "error"]
OK_STATUSES: frozenset[str] = frozenset({"ok", "loop_retried_ok"})

_MISSING = re.compile(r"\[MISSING_PAGE_[A-Z]+(?::\d+)?\]")


NougatModelError = ModelFolderError
"""The model folder is missing, incomplete or unloadable (raised at construction, not per page)."""


@dataclass
class NougatConfig:
    """How to run Nougat. Every field can come from Python, YAML or the command line."""

    model_dir: str | Path = field(metadata={"help": "folder with config.json, *.safetensors and the processor files"})
    device: str = field(default="cpu", metadata={"help": "'cpu', 'cuda', 'cuda:1', 'mps'"})
    dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32", metadata={"help": "model dtype; bfloat16 (or float16) on GPU, float32 on CPU"}
    )
    batch_size: int = field(default=8, metadata={"help": "pages per model call (halved on out-of-memory)"})
    max_new_tokens: int = field(default=3584, metadata={"help": "token budget per page; a page that reaches it is treated as a loop"})
    num_beams: int = field(default=1, metadata={"help": "beam search width (1 = greedy, as Nougat's own script)"})
    prefetch: int = field(default=2, metadata={"help": "batches rendered ahead of the model"})
    render_workers: int = field(default=2, metadata={"help": "render processes; 0 renders in the calling thread"})
    render_oversample: float = field(default=1.0, metadata={"help": "render at this multiple of the model input size"})
    retry_no_repeat_ngram_size: int = field(default=20, metadata={"help": "repetition guard on retry: ban repeated n-grams of this size (0 = off)"})
    retry_repetition_penalty: float = field(default=1.0, metadata={"help": "repetition guard on retry: penalty > 1 (1.0 = off)"})
    loop_max_score: float = field(default=0.3, metadata={"help": "repetition_score above which output is a loop"})
    loop_tail_repeats: int = field(default=4, metadata={"help": "this many copies of one unit at the end of output is a loop"})
    postprocess: bool = field(default=True, metadata={"help": "apply Nougat's own post-processing (needs nltk and Levenshtein)"})
    fix_markdown: bool = field(default=False, metadata={"help": "Nougat post-processing: also rewrite LaTeX into Markdown"})
    clean: bool = field(default=True, metadata={"help": "apply repetition.clean_repetitions to the page text"})
    min_text_chars: int = field(default=20, metadata={"help": "fewer non-space characters than this is an empty page"})

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.num_beams < 1 or self.prefetch < 1:
            raise ValueError("batch_size, max_new_tokens, num_beams and prefetch must be >= 1")
        if self.render_workers < 0:
            raise ValueError(f"render_workers must be >= 0, got {self.render_workers}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.dtype == "float16" and self.device == "cpu":
            raise ValueError("dtype float16 is not supported on CPU; use float32 or bfloat16")


@dataclass(frozen=True)
class PageRequest:
    """One page to transcribe: ``page_index`` is 0-based; ``key`` is returned unchanged (e.g. 'paper_id#p')."""

    pdf_path: str | Path
    page_index: int
    key: Any


@dataclass(frozen=True)
class PageOCRResult:
    """What Nougat made of one page. ``text`` is None unless ``status`` is 'ok' or 'loop_retried_ok'."""

    key: Any
    text: str | None
    status: Status
    reason: str
    tokens: int = 0
    retried: bool = False
    flags: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


def _oom_types() -> tuple[type[BaseException], ...]:
    import torch

    types: list[type[BaseException]] = []
    for name in ("OutOfMemoryError",):
        if hasattr(torch, name):
            types.append(getattr(torch, name))
    if hasattr(torch, "cuda") and hasattr(torch.cuda, "OutOfMemoryError"):
        types.append(torch.cuda.OutOfMemoryError)
    return tuple(dict.fromkeys(types))


class NougatOCR:
    """A loaded Nougat model that transcribes pages in batches. See the module docstring."""

    def __init__(self, config: NougatConfig):
        try:
            import torch
            from transformers import NougatProcessor, VisionEncoderDecoderModel
        except ImportError as exc:  # optional dependency, checked at construction
            raise NougatModelError(f"Nougat OCR needs torch and transformers: pip install 'sagecorpus[ocr]' ({exc})") from exc
        self.config = config
        model_dir = Path(config.model_dir)
        if not (model_dir / "config.json").is_file():
            raise NougatModelError(
                f"{model_dir}: no config.json; save a Nougat model there first, e.g. "
                "`hf download facebook/nougat-small --local-dir <folder>`"
            )
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise NougatModelError(f"device {config.device!r} requested but CUDA is not available")
        if config.postprocess:
            from transformers.utils import is_levenshtein_available, is_nltk_available

            if not (is_nltk_available() and is_levenshtein_available()):
                raise NougatModelError("Nougat post-processing needs nltk and python-Levenshtein; install them or set postprocess=False")
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.dtype]
        try:
            self.processor = NougatProcessor.from_pretrained(str(model_dir), local_files_only=True)
            self.model = VisionEncoderDecoderModel.from_pretrained(str(model_dir), local_files_only=True, dtype=dtype)
        except Exception as exc:
            raise NougatModelError(f"{model_dir}: cannot load a Nougat model: {type(exc).__name__}: {exc}") from exc
        self.model.to(config.device).eval()
        self._torch = torch
        self._dtype = dtype
        self._oom = _oom_types()
        tok = self.processor.tokenizer
        self._eos = tok.eos_token_id
        banned = {tok.unk_token_id, tok.bos_token_id, tok.pad_token_id} - {None, self._eos}
        self._bad_words = [[t] for t in sorted(banned)]
        size = self.processor.image_processor.size
        self.input_size: tuple[int, int] = (int(size.height), int(size.width)) if hasattr(size, "height") else (int(size["height"]), int(size["width"]))
        self.batch_size = config.batch_size
        self.stats: dict[str, float] = {
            "pages": 0, "model_pages": 0, "retries": 0, "oom_splits": 0,
            "model_seconds": 0.0, "render_wait_seconds": 0.0,
        }

    # ------------------------------------------------------------------ pages
    def ocr_pages(self, requests: Iterable[PageRequest]) -> Iterator[PageOCRResult]:
        """Transcribe pages from any number of PDFs; yields one result per request, in order."""
        cfg = self.config
        renderer = PrefetchRenderer(
            self.input_size,
            workers=cfg.render_workers,
            prefetch=max(1, cfg.prefetch) * cfg.batch_size,
            oversample=cfg.render_oversample,
        )
        try:
            pending: list[tuple[PageRequest, np.ndarray | RenderError]] = []
            n_images = 0
            stream = renderer.map(requests, lambda r: (r.pdf_path, r.page_index))
            while True:
                t0 = time.perf_counter()
                item = next(stream, None)
                self.stats["render_wait_seconds"] += time.perf_counter() - t0
                if item is not None:
                    pending.append(item)
                    n_images += not isinstance(item[1], RenderError)
                if pending and (item is None or n_images >= self.batch_size):
                    yield from self._flush(pending)
                    pending, n_images = [], 0
                if item is None:
                    return
        finally:
            renderer.close()

    def _flush(self, pending: list[tuple[PageRequest, np.ndarray | RenderError]]) -> list[PageOCRResult]:
        rendered = [(req.key, img) for req, img in pending if not isinstance(img, RenderError)]
        model_results = iter(self._run(rendered)) if rendered else iter(())
        out = []
        for req, img in pending:
            if isinstance(img, RenderError):
                self.stats["pages"] += 1
                out.append(PageOCRResult(req.key, None, "error", f"render failed: {img}"))
            else:
                out.append(next(model_results))
        return out

    # ------------------------------------------------------------------ batches
    def _run(self, items: list[tuple[Any, np.ndarray]]) -> list[PageOCRResult]:
        """Run ``items`` in chunks of the current batch size; results in input order."""
        results: list[PageOCRResult] = []
        i = 0
        while i < len(items):
            chunk = items[i : i + self.batch_size]
            results.extend(self._run_chunk(chunk))
            i += len(chunk)
        self.stats["pages"] += len(items)
        return results

    def _run_chunk(self, chunk: list[tuple[Any, np.ndarray]]) -> list[PageOCRResult]:
        try:
            first = self._generate([img for _, img in chunk], guard=False)
        except self._oom as exc:
            self._free_memory()
            if len(chunk) == 1:
                return [PageOCRResult(chunk[0][0], None, "oom", f"out of memory at batch size 1: {exc}")]
            half = max(1, len(chunk) // 2)
            self.batch_size = min(self.batch_size, half)
            self.stats["oom_splits"] += 1
            log.warning("Nougat out of memory at batch %d; continuing with batch %d", len(chunk), half)
            return self._run_chunk(chunk[:half]) + self._run_chunk(chunk[half:])
        except Exception as exc:
            if len(chunk) == 1:
                return [PageOCRResult(chunk[0][0], None, "error", f"model failed: {type(exc).__name__}: {exc}")]
            return [r for one in chunk for r in self._run_chunk([one])]

        results: list[PageOCRResult | None] = []
        to_retry: list[int] = []
        for j, (key, _) in enumerate(chunk):
            raw, n_tok, hit_limit = first[j]
            if hit_limit or self._looping(raw):
                to_retry.append(j)
                results.append(None)
            else:
                results.append(self._finish(key, raw, n_tok, retried=False))
        if to_retry:
            self.stats["retries"] += len(to_retry)
            try:
                second = self._generate([chunk[j][1] for j in to_retry], guard=True)
            except Exception as exc:  # OOM or other on the retry: keep the loop verdict
                self._free_memory()
                second = [None] * len(to_retry)
                retry_error = f"{type(exc).__name__}: {exc}"
            else:
                retry_error = ""
            for j, out in zip(to_retry, second):
                key = chunk[j][0]
                raw1, n1, hit1 = first[j]
                why1 = f"hit max_new_tokens={self.config.max_new_tokens}" if hit1 else "repeated text"
                if out is None:
                    results[j] = PageOCRResult(key, None, "loop", f"repetition loop ({why1}); retry failed: {retry_error}", n1, True)
                    continue
                raw2, n2, hit2 = out
                if hit2 or self._looping(clean_repetitions(raw2)):
                    why2 = "hit max_new_tokens" if hit2 else "repeated text"
                    results[j] = PageOCRResult(
                        key, None, "loop", f"repetition loop ({why1}); still looping after retry with guard ({why2})", n2, True
                    )
                else:
                    results[j] = self._finish(key, raw2, n2, retried=True)
        return [r for r in results if r is not None]

    def _looping(self, text: str) -> bool:
        return is_looping(text, max_score=self.config.loop_max_score, min_tail_repeats=self.config.loop_tail_repeats)

    def _finish(self, key: Any, raw: str, n_tok: int, retried: bool) -> PageOCRResult:
        """Post-process one page's raw output into its final result."""
        cfg = self.config
        text = raw
        if cfg.postprocess and text.strip():
            text = self.processor.post_process_generation(text, fix_markdown=cfg.fix_markdown)
        if cfg.clean:
            text = clean_repetitions(text)
        flags: list[str] = []
        markers = _MISSING.findall(text)
        if markers:
            rest = _MISSING.sub("", text)
            if _visible(rest) < cfg.min_text_chars:
                return PageOCRResult(key, None, "missing_page", f"model output {markers[0]}", n_tok, retried)
            text = re.sub(r"\n{3,}", "\n\n", _MISSING.sub("", text))
            flags.append("ocr_part_missing")
        if _visible(text) < cfg.min_text_chars:
            return PageOCRResult(key, None, "empty", f"model output {_visible(text)} characters (< {cfg.min_text_chars})", n_tok, retried)
        status: Status = "loop_retried_ok" if retried else "ok"
        reason = "retried with repetition guard after a loop" if retried else "nougat"
        return PageOCRResult(key, text.strip(), status, reason, n_tok, retried, tuple(flags))

    def _generate(self, images: list[np.ndarray], guard: bool) -> list[tuple[str, int, bool]]:
        """One model call: (raw text, generated tokens, hit max_new_tokens) per image."""
        torch = self._torch
        cfg = self.config
        pixel_values = self.processor(images=images, return_tensors="pt").pixel_values
        pixel_values = pixel_values.to(cfg.device, self._dtype)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=cfg.max_new_tokens,
            num_beams=cfg.num_beams,
            do_sample=False,
            bad_words_ids=self._bad_words or None,
        )
        if guard:
            if cfg.retry_no_repeat_ngram_size:
                kwargs["no_repeat_ngram_size"] = cfg.retry_no_repeat_ngram_size
            if cfg.retry_repetition_penalty != 1.0:
                kwargs["repetition_penalty"] = cfg.retry_repetition_penalty
        t0 = time.perf_counter()
        with torch.inference_mode():
            sequences = self.model.generate(pixel_values=pixel_values, **kwargs)
        if not isinstance(sequences, torch.Tensor):
            sequences = sequences.sequences
        self.stats["model_seconds"] += time.perf_counter() - t0
        self.stats["model_pages"] += len(images)
        out = []
        tok = self.processor.tokenizer
        for row in sequences.tolist():
            gen = row[1:]  # drop the decoder start token
            if self._eos in gen:
                n = gen.index(self._eos)
                # MBart forces EOS as the last token at the limit: reaching the limit is still a cut-off
                hit = n >= cfg.max_new_tokens - 1 and len(gen) >= cfg.max_new_tokens
                gen = gen[:n]
            else:
                n, hit = len(gen), len(gen) >= cfg.max_new_tokens
            out.append((tok.decode(gen, skip_special_tokens=True), n, hit))
        return out

    def _free_memory(self) -> None:
        if self.config.device.startswith("cuda"):
            self._torch.cuda.empty_cache()


def _visible(text: str) -> int:
    return len(text) - sum(text.count(c) for c in " \t\n\r")
