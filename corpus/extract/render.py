"""Render PDF pages to images at an OCR model's input size, ahead of the model.

Pure functions (``render_page``, ``render_scale``, ``rasterize_pages``) plus ``PrefetchRenderer``,
which renders pages in worker *processes* while the model runs: MuPDF is not thread-safe, so pages
are never rendered from two threads of one process. Results come back in request order, and at
most ``prefetch`` pages are in flight, so memory stays bounded however many papers are queued.

A page that cannot be rendered (missing file, broken PDF, page out of range) gives a
``RenderError`` naming the file, the page and the problem; it is returned in the page's slot, not
raised, so one bad PDF never stops a run.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pymupdf

__all__ = [
    "PrefetchRenderer",
    "RenderError",
    "page_count",
    "rasterize_pages",
    "render_page",
    "render_scale",
]

R = TypeVar("R")


@dataclass(frozen=True)
class RenderError:
    """A page that could not be rendered; ``str()`` is a message naming file, page and problem."""

    pdf_path: str
    page_index: int
    problem: str

    def __str__(self) -> str:
        return f"{self.pdf_path}: page {self.page_index + 1}: {self.problem}"


def render_scale(page_width: float, page_height: float, size: tuple[int, int], oversample: float = 1.0) -> float:
    """Zoom factor (pixels per PDF point) so the rendered page covers ``size`` = (height, width).

    The page is rendered just large enough that both sides reach the model's input size (the
    image processor then crops margins, shrinks and pads); ``oversample`` > 1 renders finer, which
    keeps small print legible after the margin crop at the cost of render time.
    """
    if page_width <= 0 or page_height <= 0:
        raise ValueError(f"page has no area ({page_width} x {page_height} pt)")
    height, width = size
    return max(height / page_height, width / page_width) * oversample


def render_page(pdf_path: str | Path, page_index: int, size: tuple[int, int], oversample: float = 1.0) -> np.ndarray:
    """Render one page (0-based ``page_index``) to an RGB ``uint8`` array of shape (H, W, 3).

    Raises ``RenderFailed`` (a ``ValueError``) whose message names the file, page and problem.
    """
    try:
        with pymupdf.open(str(pdf_path)) as doc:
            if not 0 <= page_index < doc.page_count:
                raise RenderFailed(RenderError(str(pdf_path), page_index, f"page out of range (the PDF has {doc.page_count} pages)"))
            page = doc[page_index]
            zoom = render_scale(page.rect.width, page.rect.height, size, oversample)
            pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csRGB, alpha=False)
            return np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, 3).copy()
    except RenderFailed:
        raise
    except Exception as exc:  # MuPDF raises its own types for broken files; name them in the message
        raise RenderFailed(RenderError(str(pdf_path), page_index, f"{type(exc).__name__}: {exc}")) from exc


class RenderFailed(ValueError):
    """Raised by ``render_page``; ``.error`` is the ``RenderError`` to record."""

    def __init__(self, error: RenderError):
        super().__init__(str(error))
        self.error = error


def page_count(pdf_path: str | Path) -> int:
    """Number of pages; raises ``ValueError`` naming the file when it cannot be opened as a PDF."""
    try:
        with pymupdf.open(str(pdf_path)) as doc:
            return doc.page_count
    except Exception as exc:
        raise ValueError(f"{pdf_path}: cannot open as PDF: {type(exc).__name__}: {exc}") from exc


def rasterize_pages(src: str | Path, dst: str | Path, pages: Iterable[int], dpi: int = 150) -> list[int]:
    """Copy ``src`` to ``dst`` with the given 0-based pages replaced by an image of themselves.

    The replaced pages keep their size but have no text layer (a scan). Returns the replaced page
    indices, sorted. Used to build image-only test and benchmark inputs from born-digital PDFs.
    """
    replaced = sorted(set(pages))
    with pymupdf.open(str(src)) as doc:
        out = pymupdf.open()
        for i, page in enumerate(doc):
            if i in replaced:
                pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False)
                new = out.new_page(width=page.rect.width, height=page.rect.height)
                new.insert_image(new.rect, pixmap=pix)
            else:
                out.insert_pdf(doc, from_page=i, to_page=i)
        bad = [i for i in replaced if i >= doc.page_count or i < 0]
        if bad:
            raise ValueError(f"{src}: pages {bad} out of range (the PDF has {doc.page_count} pages)")
        out.save(str(dst), garbage=3, deflate=True)
        out.close()
    return replaced


def _render_job(pdf_path: str, page_index: int, size: tuple[int, int], oversample: float) -> np.ndarray | RenderError:
    try:
        return render_page(pdf_path, page_index, size, oversample)
    except RenderFailed as exc:
        return exc.error


class PrefetchRenderer:
    """Render pages ahead of their consumer, in worker processes, returning results in order.

    ``workers=0`` renders in the calling thread (no prefetch; for notebooks and tests). With
    ``workers >= 1`` a spawn-started process pool renders up to ``prefetch`` pages ahead of the
    one being consumed. Use as a context manager, or call ``close()``.
    """

    def __init__(self, size: tuple[int, int], workers: int = 2, prefetch: int = 16, oversample: float = 1.0):
        if workers < 0 or prefetch < 1:
            raise ValueError(f"need workers >= 0 and prefetch >= 1, got workers={workers}, prefetch={prefetch}")
        self.size = (int(size[0]), int(size[1]))
        self.workers = workers
        self.prefetch = prefetch
        self.oversample = oversample
        self._pool: ProcessPoolExecutor | None = None
        if workers:
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def map(
        self, requests: Iterable[R], where: Callable[[R], tuple[str | Path, int]]
    ) -> Iterator[tuple[R, np.ndarray | RenderError]]:
        """Yield ``(request, image or RenderError)`` in request order.

        ``where(request)`` gives the (pdf_path, 0-based page_index) to render for a request.
        """
        if self._pool is None:
            for req in requests:
                path, index = where(req)
                yield req, _render_job(str(path), index, self.size, self.oversample)
            return
        pending: deque[tuple[R, Future[Any]]] = deque()
        it = iter(requests)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.prefetch:
                try:
                    req = next(it)
                except StopIteration:
                    exhausted = True
                    break
                path, index = where(req)
                pending.append((req, self._pool.submit(_render_job, str(path), index, self.size, self.oversample)))
            if not pending:
                return
            req, fut = pending.popleft()
            yield req, fut.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> PrefetchRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
